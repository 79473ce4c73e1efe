// samclipseg studio front-end: live pipeline tuning + one-off picture segmentation.
// Plain ES2020, no dependencies. Server strings are always inserted via textContent.
'use strict';

const $ = (id) => document.getElementById(id);

// ---------- small helpers ----------

// Run fn once the caller has been quiet for `ms`; .cancel() drops a pending call.
function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; };
  return wrapped;
}

// At most one call per `ms`; the latest arguments always get sent (trailing call),
// so the final slider position reaches the server.
function throttle(fn, ms) {
  let last = 0, timer = null, latest = null;
  const fire = () => { timer = null; last = Date.now(); fn(...latest); };
  return (...args) => {
    latest = args;
    if (timer) return;
    const wait = last + ms - Date.now();
    if (wait <= 0) fire(); else timer = setTimeout(fire, wait);
  };
}

// Parse a response body as JSON; error bodies that are not JSON (e.g. a proxy's
// plain-text 413) become {error: text}.
async function readJson(res) {
  const text = await res.text();
  try { return JSON.parse(text); } catch (_) {
    return { error: text.trim() || `HTTP ${res.status}` };
  }
}

function errorText(res, body) {
  return (body && body.error) ? String(body.error) : `HTTP ${res.status}`;
}

function setError(el, message) {
  el.textContent = message || '';
  el.hidden = !message;
}

// Position an outline div over an image; box is in source pixels (w x h).
function placeBox(el, img, box, w, h) {
  if (!box || !w || !h || !img.clientWidth || !img.clientHeight) { el.hidden = true; return; }
  const sx = img.clientWidth / w, sy = img.clientHeight / h;
  el.style.left = `${img.offsetLeft + box[0] * sx}px`;
  el.style.top = `${img.offsetTop + box[1] * sy}px`;
  el.style.width = `${Math.max(1, (box[2] - box[0]) * sx)}px`;
  el.style.height = `${Math.max(1, (box[3] - box[1]) * sy)}px`;
  el.hidden = false;
}

function swatch(color) {
  const s = document.createElement('span');
  s.className = 'swatch';
  s.style.background = color || '#888';
  return s;
}

const fmtBox = (b) => b ? `${Math.round(b[0])},${Math.round(b[1])} – ${Math.round(b[2])},${Math.round(b[3])}` : '';
const fmtMs = (v) => (typeof v === 'number' ? v.toFixed(1) : '–');

// ---------- live: state ----------

const live = {
  state: null,          // last /api/live JSON
  selectedId: null,     // instance id highlighted over the preview
  controlsLoaded: false,
  postError: null,      // last rejected POST; shown until a POST succeeds
  pollError: null,      // server unreachable / GET failed
  postSeq: 0,           // only the newest POST response may rewrite the controls
  dirty: new Set(),     // controls with a local change still waiting in a debounce/throttle
};

const el = {
  preview: $('preview'), highlight: $('highlight'), status: $('status'), error: $('live-error'),
  prompt: $('prompt'), negative: $('negative'),
  threshold: $('threshold'), thresholdValue: $('threshold-value'),
  smoothness: $('smoothness'), smoothnessValue: $('smoothness-value'),
  maxInstances: $('max-instances'), reuse: $('reuse'), async: $('async'), viewAlpha: $('view-alpha'),
  suggest: $('suggest'), chips: $('chips'), body: $('instances-body'),
  inUse: $('prompt-in-use'),
};

// The English the text encoder gets (the element's prompt-in-use), shown
// beside a prompt typed in another script (Chinese is translated).
function showInUse(node, typed, inUse) {
  const other = /[^\x00-\x7f]/.test(typed || '');
  node.hidden = !(other && inUse);
  node.textContent = node.hidden ? '' : `English for the model: ${inUse}`;
}

// ---------- live: talking to the server ----------

// Changes go out one after another: the server applies them in the order
// they arrive, so two in flight could land in the wrong order.
let postChain = Promise.resolve();
function postLive(fields) {
  const seq = ++live.postSeq;
  postChain = postChain.then(() => sendLive(fields, seq));
  return postChain;
}

async function sendLive(fields, seq) {
  try {
    const res = await fetch('/api/live', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(fields),
    });
    const body = await readJson(res);
    if (!res.ok || !body.settings) {
      live.postError = errorText(res, body);
      renderLiveError();
      return;
    }
    live.postError = null;
    renderLive(body);
    if (seq === live.postSeq) applySettings(body.settings);
  } catch (e) {
    live.postError = `request failed: ${e.message}`;
    renderLiveError();
  }
}

// Poll without overlapping: the next request is scheduled only after this one ends.
async function pollLive() {
  try {
    const res = await fetch('/api/live', { cache: 'no-store' });
    const body = await readJson(res);
    if (res.ok && body.settings) {
      live.pollError = null;
      renderLive(body);
      if (!live.controlsLoaded) { live.controlsLoaded = true; applySettings(body.settings); }
    } else {
      live.pollError = errorText(res, body);
      renderLiveError();
    }
  } catch (e) {
    live.pollError = `cannot reach server: ${e.message}`;
    renderLiveError();
  }
  setTimeout(pollLive, 250);
}

// ---------- live: rendering ----------

// Write a server value into a control unless the user is editing it right now
// (focused, or a change of theirs has not been sent yet: an older response must
// not snap a slider back). Checkboxes keep focus after a click but the server's
// value is authoritative for them.
function setControl(input, prop, value) {
  if (live.dirty.has(input)) return;
  if (document.activeElement === input && input.type !== 'checkbox') return;
  input[prop] = value;
}

function applySettings(s) {
  setControl(el.prompt, 'value', s.prompt ?? '');
  setControl(el.negative, 'value', s.negative_prompt ?? '');
  showInUse(el.inUse, `${s.prompt ?? ''}${s.negative_prompt ?? ''}`, s.prompt_in_use);
  if (typeof s.threshold === 'number') setControl(el.threshold, 'value', s.threshold);
  if (typeof s.smoothness === 'number') setControl(el.smoothness, 'value', s.smoothness);
  if (typeof s.max_instances === 'number') setControl(el.maxInstances, 'value', s.max_instances);
  setControl(el.reuse, 'checked', !!s.reuse);
  setControl(el.async, 'checked', !!s.asynchronous);
  setControl(el.viewAlpha, 'checked', s.view === 'alpha');
  showRangeValues();
  picture.adoptLiveThreshold(s.threshold);
}

function showRangeValues() {
  el.thresholdValue.textContent = Number(el.threshold.value).toFixed(2);
  el.smoothnessValue.textContent = String(Math.round(Number(el.smoothness.value)));
}

function renderLive(state) {
  live.state = state;
  renderStatus(state);
  renderInstances(state.frame ? state.frame.instances || [] : []);
  renderLiveHighlight();
  renderLiveError();
}

function renderLiveError() {
  const serverError = live.state && live.state.error;
  setError(el.error, live.postError || live.pollError || serverError || null);
}

function renderStatus(state) {
  const f = state.frame;
  const parts = [];
  if (!f) {
    parts.push('waiting for first frame');
  } else {
    parts.push(`${typeof f.fps === 'number' ? f.fps.toFixed(1) : '–'} frames/s`, f.state || '?');
    const t = f.times;
    if (t) {
      // The last run that encoded or decoded (a reused result costs nothing).
      parts.push(`last run: text ${fmtMs(t.text_ms)} ms`, `image ${fmtMs(t.image_ms)} ms`,
        `decode ${fmtMs(t.decode_ms)} ms`, `post ${fmtMs(t.post_ms)} ms`);
    }
  }
  if (state.bundle) parts.push(`bundle ${state.bundle.name} (${state.bundle.precision})`);
  el.status.textContent = parts.join(' · ');
}

function makeInstanceRow(id) {
  const tr = document.createElement('tr');
  tr.dataset.id = String(id);
  for (let i = 0; i < 5; i++) tr.appendChild(document.createElement('td'));
  return tr;
}

// Update rows in place (keyed by id) rather than rebuilding, so a click that
// straddles a 250 ms refresh still lands on the same <tr>.
function renderInstances(instances) {
  const body = el.body;
  if (instances.length === 0) {
    if (!(body.children.length === 1 && body.firstElementChild.classList.contains('empty'))) {
      body.textContent = '';
      const tr = document.createElement('tr');
      tr.className = 'empty';
      const td = document.createElement('td');
      td.colSpan = 5;
      td.textContent = 'no instances';
      tr.appendChild(td);
      body.appendChild(tr);
    }
    return;
  }
  const existing = new Map();
  for (const tr of Array.from(body.children)) {
    if (tr.dataset.id !== undefined) existing.set(tr.dataset.id, tr); else tr.remove();
  }
  instances.forEach((inst, i) => {
    const key = String(inst.id);
    const tr = existing.get(key) || makeInstanceRow(inst.id);
    existing.delete(key);
    const [cId, cLabel, cScore, cBox, cArea] = tr.children;
    cId.textContent = key;
    cLabel.textContent = '';
    cLabel.append(swatch(inst.color), document.createTextNode(inst.label ?? ''));
    cScore.textContent = Number(inst.score).toFixed(3);
    cBox.textContent = fmtBox(inst.box);
    cArea.textContent = String(Math.round(Number(inst.area) || 0));
    tr.classList.toggle('selected', key === live.selectedId);
    if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
  });
  for (const tr of existing.values()) tr.remove();
}

function renderLiveHighlight() {
  const f = live.state && live.state.frame;
  const inst = f && live.selectedId !== null
    ? (f.instances || []).find((x) => String(x.id) === live.selectedId) : null;
  if (!inst) { el.highlight.hidden = true; return; }
  placeBox(el.highlight, el.preview, inst.box, f.width, f.height);
}

// ---------- live: wiring ----------

function wireTextSetting(input, field) {
  const send = () => { live.dirty.delete(input); postLive({ [field]: input.value }); };
  const later = debounce(send, 400);
  input.addEventListener('input', () => { live.dirty.add(input); later(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); later.cancel(); send(); }
  });
  return later;
}

// Sliders send while dragging, throttled; the value is read when the request
// fires, so the trailing request carries the final position.
function wireRange(input, field, parse) {
  const send = throttle(() => { live.dirty.delete(input); postLive({ [field]: parse(input.value) }); }, 150);
  input.addEventListener('input', () => { live.dirty.add(input); showRangeValues(); send(); });
}

function wireLive() {
  const promptDebounce = wireTextSetting(el.prompt, 'prompt');
  wireTextSetting(el.negative, 'negative_prompt');

  wireRange(el.threshold, 'threshold', Number);
  wireRange(el.smoothness, 'smoothness', (v) => Math.round(Number(v)));

  el.maxInstances.addEventListener('change', () => {
    const n = parseInt(el.maxInstances.value, 10);
    if (Number.isNaN(n)) return;
    const clamped = Math.min(Number(el.maxInstances.max), Math.max(0, n));
    el.maxInstances.value = clamped;
    postLive({ max_instances: clamped });
  });

  el.reuse.addEventListener('change', () => postLive({ reuse: el.reuse.checked }));
  el.async.addEventListener('change', () => postLive({ asynchronous: el.async.checked }));
  el.viewAlpha.addEventListener('change', () => postLive({ view: el.viewAlpha.checked ? 'alpha' : 'overlay' }));

  // Row click toggles the highlight; delegation survives row updates.
  el.body.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-id]');
    if (!tr) return;
    live.selectedId = live.selectedId === tr.dataset.id ? null : tr.dataset.id;
    for (const row of el.body.children) row.classList.toggle('selected', row.dataset.id === live.selectedId);
    renderLiveHighlight();
  });

  el.suggest.addEventListener('click', () => suggest(promptDebounce));

  // If the MJPEG stream drops (server restart), reconnect after a second.
  el.preview.addEventListener('error', () => {
    setTimeout(() => { el.preview.src = `/live.mjpg?r=${Date.now()}`; }, 1000);
  });
  el.preview.addEventListener('load', renderLiveHighlight);
  window.addEventListener('resize', () => { renderLiveHighlight(); picture.renderHighlight(); });
}

async function suggest(promptDebounce) {
  el.suggest.disabled = true;
  el.chips.textContent = '';
  const show = (cls, text) => {
    const s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    el.chips.appendChild(s);
  };
  try {
    const res = await fetch('/api/suggest?k=8', { cache: 'no-store' });
    const body = await readJson(res);
    if (!res.ok || !Array.isArray(body.phrases)) { show('error', errorText(res, body)); return; }
    if (body.phrases.length === 0) show('muted', 'no suggestions');
    for (const p of body.phrases) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.textContent = p.phrase;
      b.title = typeof p.score === 'number' ? p.score.toFixed(3) : String(p.score);
      b.addEventListener('click', () => {
        promptDebounce.cancel();
        live.dirty.delete(el.prompt);
        el.prompt.value = p.phrase;
        postLive({ prompt: p.phrase });
      });
      el.chips.appendChild(b);
    }
  } catch (e) {
    show('error', `request failed: ${e.message}`);
  } finally {
    el.suggest.disabled = false;
  }
}

// ---------- picture ----------

const picture = (() => {
  const p = {
    form: $('picture-form'), file: $('picture-file'), prompt: $('picture-prompt'),
    threshold: $('picture-threshold'), thresholdValue: $('picture-threshold-value'),
    smoothness: $('picture-smoothness'), smoothnessValue: $('picture-smoothness-value'),
    run: $('picture-run'), status: $('picture-status'), error: $('picture-error'),
    wrap: $('picture-wrap'), img: $('picture-result'), highlight: $('picture-highlight'),
    labels: $('picture-labels'), inUse: $('picture-in-use'),
    downloads: [['cutout', $('download-cutout')], ['mask', $('download-mask')], ['json', $('download-json')]],
  };
  let result = null, selectedId = null, thresholdTouched = false;

  function showValues() {
    p.thresholdValue.textContent = Number(p.threshold.value).toFixed(2);
    p.smoothnessValue.textContent = String(Math.round(Number(p.smoothness.value)));
  }

  // Default the picture threshold to the live one until the user moves it.
  function adoptLiveThreshold(t) {
    if (thresholdTouched || typeof t !== 'number') return;
    p.threshold.value = t;
    showValues();
  }

  function renderHighlight() {
    const inst = result && selectedId !== null
      ? result.instances.find((x) => String(x.id) === selectedId) : null;
    if (!inst) { p.highlight.hidden = true; return; }
    placeBox(p.highlight, p.img, inst.box, result.width, result.height);
  }

  function clearResult() {
    result = null;
    selectedId = null;
    p.wrap.hidden = true;
    p.highlight.hidden = true;
    p.labels.textContent = '';
    showInUse(p.inUse, '', '');
    for (const [, a] of p.downloads) { a.hidden = true; a.removeAttribute('href'); }
  }

  function showResult(r) {
    result = { ...r, instances: Array.isArray(r.instances) ? r.instances : [] };
    selectedId = null;
    p.img.src = r.annotated;
    p.wrap.hidden = false;
    p.highlight.hidden = true;
    p.labels.textContent = '';
    showInUse(p.inUse, r.prompt, r.prompt_in_use);
    if (result.instances.length === 0) {
      const s = document.createElement('span');
      s.className = 'muted';
      s.textContent = 'no instances';
      p.labels.appendChild(s);
    }
    for (const inst of result.instances) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'label';
      b.dataset.id = String(inst.id);
      b.append(swatch(inst.color), document.createTextNode(`${inst.label} ${Number(inst.score).toFixed(2)}`));
      p.labels.appendChild(b);
    }
    for (const [key, a] of p.downloads) {
      if (r[key]) { a.href = r[key]; a.hidden = false; }
    }
  }

  async function submit(e) {
    e.preventDefault();
    const file = p.file.files && p.file.files[0];
    if (!file) { setError(p.error, 'choose a JPG or PNG first'); return; }
    // The server's limit (in the page it served): a picture above it is
    // refused here, before megabytes go out for a 413.
    const maxBytes = Number(p.file.dataset.maxBytes);
    if (file.size > maxBytes) {
      clearResult();
      setError(p.error, `the picture is ${(file.size / 1048576).toFixed(1)} MB; at most ${Math.floor(maxBytes / 1048576)} MB (not sent)`);
      return;
    }
    const data = new FormData();
    data.append('image', file, file.name);
    data.append('prompt', p.prompt.value);
    data.append('threshold', String(Number(p.threshold.value)));
    data.append('smoothness', String(Math.round(Number(p.smoothness.value))));
    p.run.disabled = true;
    p.status.textContent = 'working…';
    try {
      const res = await fetch('/api/image', { method: 'POST', body: data });
      const body = await readJson(res);
      if (!res.ok || !body.annotated) {
        clearResult();
        setError(p.error, errorText(res, body));
        return;
      }
      setError(p.error, null);
      showResult(body);
    } catch (err) {
      clearResult();
      setError(p.error, `request failed: ${err.message}`);
    } finally {
      p.run.disabled = false;
      p.status.textContent = '';
    }
  }

  function wire() {
    p.threshold.addEventListener('input', () => { thresholdTouched = true; showValues(); });
    p.smoothness.addEventListener('input', showValues);
    p.form.addEventListener('submit', submit);
    p.img.addEventListener('load', renderHighlight);
    p.labels.addEventListener('click', (e) => {
      const b = e.target.closest('button.label');
      if (!b) return;
      selectedId = selectedId === b.dataset.id ? null : b.dataset.id;
      for (const x of p.labels.querySelectorAll('button.label')) {
        x.classList.toggle('selected', x.dataset.id === selectedId);
      }
      renderHighlight();
    });
    showValues();
  }

  return { wire, adoptLiveThreshold, renderHighlight };
})();

// ---------- start ----------

showRangeValues();
wireLive();
picture.wire();
pollLive();
