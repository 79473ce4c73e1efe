//! The HTTP API the page uses (docs/studio.md). Every refusal
//! is a 4xx with `{"error": "..."}` saying what is wrong.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use samclipseg::Threshold;
use samclipseg::sync::lock;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::bundle_facts::BundleFacts;
use crate::drain::{BODY_TIMED_OUT, drain_unread_bodies};
use crate::picture::{self, Refusal, Store};
use crate::preview::{Preview, Update, UpdateError};
use crate::rules::{self, MAX_FORM_BYTES, MAX_SIDE, MAX_UPLOAD_BYTES};

pub struct AppState {
    pub preview: Arc<Preview>,
    /// The Host names answered (against DNS rebinding).
    hosts: Hosts,
    bundle: PathBuf,
    facts: BundleFacts,
    /// The page, with the limits it checks before sending filled in.
    index: String,
    pictures: Mutex<Store>,
    /// One picture at a time: each runs the model on the two cores the live
    /// pipeline also needs. The permit goes into the blocking task, so a
    /// client that hangs up does not free it before the run ends.
    picture_turn: Arc<tokio::sync::Semaphore>,
    /// Pictures in flight, from the first byte of the upload to the end of
    /// their run: [`PICTURES_IN_FLIGHT`]; one more is refused at once (503),
    /// so that uploads waiting for their turn cannot pile up in memory.
    picture_slots: Arc<tokio::sync::Semaphore>,
    /// One suggestion at a time; a second is refused at once (429), so that
    /// requests cannot pile up on the element the live pipeline runs.
    suggest_turn: Arc<tokio::sync::Semaphore>,
    /// Set when the server stops: open previews end, so that the graceful
    /// shutdown does not wait for them forever.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    pub fn new(
        preview: Arc<Preview>,
        bundle: PathBuf,
        facts: BundleFacts,
        hosts: Hosts,
        results_bytes: u64,
    ) -> AppState {
        AppState {
            index: index_page(preview.max_instances_limit()),
            preview,
            hosts,
            bundle,
            facts,
            pictures: Mutex::new(Store::new(results_bytes)),
            picture_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            picture_slots: Arc::new(tokio::sync::Semaphore::new(PICTURES_IN_FLIGHT)),
            suggest_turn: Arc::new(tokio::sync::Semaphore::new(1)),
            shutdown: tokio::sync::watch::channel(false).0,
        }
    }

    /// Ends the previews; called when a stop signal arrives.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

type Shared = State<Arc<AppState>>;

/// Pictures being uploaded or segmented at once: one running, one arriving.
pub const PICTURES_IN_FLIGHT: usize = 2;

pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!("{}: {}", self.status, self.message);
        }
        (self.status, axum::Json(json!({"error": self.message}))).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            Refusal::Unsupported(m) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            Refusal::Broken(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        }
    }
}

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

/// The page with its `{{NAME}}` limits filled in: the page checks them too
/// (a picture too large is refused before it is sent).
fn index_page(max_instances: u32) -> String {
    INDEX
        .replace("{{MAX_UPLOAD_BYTES}}", &MAX_UPLOAD_BYTES.to_string())
        .replace("{{MAX_UPLOAD_MB}}", &(MAX_UPLOAD_BYTES >> 20).to_string())
        .replace("{{MAX_SIDE}}", &MAX_SIDE.to_string())
        .replace("{{MAX_INSTANCES}}", &max_instances.to_string())
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|State(s): Shared| async move {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    s.index.clone(),
                )
                    .into_response()
            }),
        )
        .route(
            "/app.js",
            get(|| async { page(SCRIPT, "application/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/live.mjpg", get(mjpeg))
        .route("/api/live/frame.jpg", get(live_frame))
        .route("/api/live", get(live_status).post(live_update))
        .route("/api/suggest", get(suggest))
        .route(
            "/api/image",
            axum::routing::post(post_image).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route("/api/image/{id}/{file}", get(image_file))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page or API route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method (docs/studio.md, \"The HTTP API\")",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            same_site,
        ))
        .layer(axum::middleware::from_fn(answer_rules))
        // Outermost: a refusal above (same_site's too) still lets the client
        // finish sending and read it.
        .layer(axum::middleware::from_fn(drain_unread_bodies))
        .with_state(state)
}

/// The page's Content-Security-Policy: its own script, style, pictures and
/// requests only, and no framing by any site.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Middleware: every answer may not be framed or sniffed, and every error
/// is `{"error": "..."}` (axum's own rejections are plain text).
async fn answer_rules(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let res = next.run(req).await;
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let mut res = if res.status().as_u16() >= 400 && !is_json {
        let (parts, body) = res.into_parts();
        let text = axum::body::to_bytes(body, 64 * 1024)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .unwrap_or_default();
        let message = if text.is_empty() {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_string()
        } else {
            text
        };
        let mut res = ApiError::new(parts.status, message).into_response();
        for (name, value) in parts.headers.iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                res.headers_mut().insert(name.clone(), value.clone());
            }
        }
        res
    } else {
        res
    };
    let h = res.headers_mut();
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-resource-policy",
        header::HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    res
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn live_status(State(s): Shared) -> Response {
    axum::Json(s.preview.status()).into_response()
}

async fn live_update(
    State(s): Shared,
    body: Result<axum::Json<Update>, JsonRejection>,
) -> Result<Response, ApiError> {
    let axum::Json(update) = body.map_err(|e| {
        unreadable_body(
            e.status(),
            e.body_text(),
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the settings are larger than 2 MB",
            ),
            "bad settings",
        )
    })?;
    let preview = s.preview.clone();
    tokio::task::spawn_blocking(move || preview.update(&update))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| match e {
            UpdateError::Invalid(m) => ApiError::bad(m),
            UpdateError::Pipeline(m) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the live pipeline did not restart with these settings: {m}"),
            ),
        })?;
    info!("live settings changed: {:?}", s.preview.settings());
    Ok(axum::Json(s.preview.status()).into_response())
}

async fn live_frame(State(s): Shared) -> Result<Response, ApiError> {
    let frame = s.preview.frames().borrow().clone();
    let jpeg =
        frame.ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no frame yet"))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

const BOUNDARY: &str = "samclipsegframe";

/// The next preview frame, or None when the server stops.
async fn next_frame(
    rx: &mut tokio::sync::watch::Receiver<Option<Bytes>>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    wait: bool,
) -> Option<Bytes> {
    let mut wait = wait;
    loop {
        if *stop.borrow() {
            return None;
        }
        if wait {
            tokio::select! {
                changed = rx.changed() => changed.ok()?,
                _ = stop.changed() => return None,
            }
        }
        if let Some(frame) = rx.borrow_and_update().clone() {
            return Some(frame);
        }
        wait = true;
    }
}

/// The preview as MJPEG (multipart/x-mixed-replace): every browser shows it in
/// an <img> with no script, and each part is one whole frame. Each part ends
/// with the next boundary, so that a browser shows it at once.
async fn mjpeg(State(s): Shared) -> Response {
    let state = (s.preview.frames(), s.shutdown.subscribe(), true);
    let parts = stream::unfold(state, |(mut rx, mut stop, first)| async move {
        let jpeg = next_frame(&mut rx, &mut stop, !first).await?;
        let mut part = Vec::with_capacity(jpeg.len() + 128);
        if first {
            part.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        }
        part.extend_from_slice(
            format!(
                "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            )
            .as_bytes(),
        );
        part.extend_from_slice(&jpeg);
        part.extend_from_slice(format!("\r\n--{BOUNDARY}\r\n").as_bytes());
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(part)),
            (rx, stop, false),
        ))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}

/// The Host names a studio answers to: loopback's when `loopback`, and
/// `names` (a name, or name:port for that port only), lower case.
pub struct Hosts {
    pub loopback: bool,
    pub names: Vec<String>,
}

impl Hosts {
    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        (self.loopback && is_loopback_host(&host))
            || self
                .names
                .iter()
                .any(|n| *n == host || *n == host_name(&host))
    }
}

impl std::fmt::Display for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut all: Vec<&str> = Vec::new();
        if self.loopback {
            all.extend(["127.0.0.1", "localhost", "[::1]"]);
        }
        all.extend(self.names.iter().map(String::as_str));
        write!(f, "{}", all.join(", "))
    }
}

/// Routes whose answers another site may not even ask for: each costs the
/// model's time (suggestions) or a large download (picture results).
fn guarded(path: &str) -> bool {
    path == "/api/suggest" || path.starts_with("/api/image/")
}

/// Refuses requests that another site makes through the user's browser: a
/// page elsewhere may post a form here, load results in `<img>` tags, or
/// rebind its own name to this address and read the preview. Only the allowed
/// host names are answered ([`Hosts`]), and nothing but a plain GET of the
/// page, the preview and the settings is taken from a foreign origin.
async fn same_site(
    State(s): Shared,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !s.hosts.allows(&host) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "this studio answers to {} only, not to the name {host:?} (--allow-host adds names)",
                s.hosts
            ),
        )
        .into_response();
    }
    let foreign = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|o| {
            o.split_once("://")
                .map(|(_, rest)| rest.eq_ignore_ascii_case(&host))
                != Some(true)
        })
        || req
            .headers()
            .get("sec-fetch-site")
            .is_some_and(|v| v == "cross-site" || v == "same-site");
    if foreign && (req.method() != axum::http::Method::GET || guarded(req.uri().path())) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "requests from another site are refused",
        )
        .into_response();
    }
    next.run(req).await
}

fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host);
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Deserialize)]
struct SuggestQuery {
    k: Option<u32>,
}

async fn suggest(
    State(s): Shared,
    q: Result<Query<SuggestQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(format!("bad query: {}", e.body_text())))?;
    let k = q.k.unwrap_or(5);
    if !(1..=50).contains(&k) {
        return Err(ApiError::bad(format!(
            "k={k} is out of range: expected 1 to 50"
        )));
    }
    let Ok(turn) = s.suggest_turn.clone().try_acquire_owned() else {
        return Ok(busy(
            StatusCode::TOO_MANY_REQUESTS,
            "a suggestion is being made already: one at a time, try again in a moment".into(),
            "1",
        ));
    };
    let preview = s.preview.clone();
    let phrases = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        preview.suggest(k)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::CONFLICT, format!("no suggestions: {e}")))?;
    let phrases: Vec<_> = phrases
        .into_iter()
        .map(|(phrase, score)| json!({"phrase": phrase, "score": score}))
        .collect();
    Ok(axum::Json(json!({ "phrases": phrases })).into_response())
}

/// The fields of a picture request, as read from the form.
struct PictureForm {
    image: Option<Bytes>,
    prompt: Option<String>,
    threshold: Option<String>,
    smoothness: Option<String>,
}

async fn read_form(mut form: Multipart) -> Result<PictureForm, ApiError> {
    let mut out = PictureForm {
        image: None,
        prompt: None,
        threshold: None,
        smoothness: None,
    };
    let broken = |e: axum::extract::multipart::MultipartError| {
        unreadable_body(
            e.status(),
            e.body_text(),
            upload_too_large(),
            "cannot read the form",
        )
    };
    while let Some(field) = form.next_field().await.map_err(broken)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => out.image = Some(field.bytes().await.map_err(broken)?),
            "prompt" => out.prompt = Some(field.text().await.map_err(broken)?),
            "threshold" => out.threshold = Some(field.text().await.map_err(broken)?),
            "smoothness" => out.smoothness = Some(field.text().await.map_err(broken)?),
            other => return Err(ApiError::bad(format!("unknown form field {other:?}"))),
        }
    }
    Ok(out)
}

/// A body axum could not read: above its limit (`too_large`), stalled (408,
/// see `drain`), or malformed (400, `what: ...`).
fn unreadable_body(status: StatusCode, text: String, too_large: ApiError, what: &str) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        too_large
    } else if text.contains(BODY_TIMED_OUT) {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, BODY_TIMED_OUT)
    } else {
        ApiError::bad(format!("{what}: {text}"))
    }
}

/// Refused at once because the server is busy with the one(s) allowed:
/// try again after `retry_after` seconds.
fn busy(status: StatusCode, message: String, retry_after: &'static str) -> Response {
    let mut res = ApiError::new(status, message).into_response();
    res.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(retry_after),
    );
    res
}

/// An upload above the limit, by its Content-Length or as it streams in.
fn upload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the upload is larger than {} MB", MAX_UPLOAD_BYTES >> 20),
    )
}

async fn post_image(
    State(s): Shared,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    // Refused before a byte of it is read (the rest is drained, see
    // `drain`); a body without a length is cut at the limit as it streams.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return Err(upload_too_large());
    }
    let Ok(slot) = s.picture_slots.clone().try_acquire_owned() else {
        return Ok(busy(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{PICTURES_IN_FLIGHT} pictures are being sent or segmented already: try again when one is done"
            ),
            "5",
        ));
    };
    let form = form.map_err(|e| {
        ApiError::bad(format!(
            "expected a multipart/form-data body with fields image, prompt, threshold, smoothness: {}",
            e.body_text()
        ))
    })?;
    let form = read_form(form).await?;
    let prompt = form.prompt.unwrap_or_default().trim().to_string();
    if prompt.is_empty() {
        return Err(ApiError::bad(
            "the prompt is empty: say what to segment, e.g. \"red circle\"",
        ));
    }
    rules::check_prompt(&prompt, "prompt").map_err(ApiError::bad)?;
    let threshold = match form.threshold.as_deref().map(str::trim) {
        None | Some("") => Threshold::Bundle,
        Some(t) => t
            .parse::<f32>()
            .map_err(|_| ApiError::bad(format!("threshold {t:?} is not a number")))
            .and_then(|t| rules::check_threshold(t).map_err(ApiError::bad))?,
    };
    let smoothness = match form.smoothness.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(t) => t
            .parse::<u32>()
            .map_err(|_| ApiError::bad(format!("smoothness {t:?} is not a whole number")))?,
    };
    rules::check_smoothness(smoothness).map_err(ApiError::bad)?;
    let bytes = form
        .image
        .ok_or_else(|| ApiError::bad("no image field: attach a JPG or PNG as `image`"))?;

    let turn = s
        .picture_turn
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let bundle = s.bundle.clone();
    let p = prompt.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let _slot = slot;
        let pic = picture::decode(&bytes).map_err(ApiError::from)?;
        picture::segment(&bundle, &bytes, pic, &p, threshold, smoothness)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (width, height) = (outcome.width, outcome.height);
    let instances = outcome.instances.clone();
    let id = lock(&s.pictures).keep(outcome);
    // A picture's buffers, and the results it pushed out, go back to the
    // system: the allocator keeps freed memory otherwise.
    crate::heap::give_memory_back();
    info!(
        "picture {id}: {width}x{height}, {prompt:?}: {} instance(s)",
        instances.len()
    );
    let link = |f: &str| format!("/api/image/{id}/{f}");
    Ok(axum::Json(json!({
        "id": id.to_string(),
        "width": width,
        "height": height,
        "prompt": prompt,
        "prompt_in_use": samclipseg::prompt::syntax::PromptSet::parse(&prompt, "").in_use(),
        "threshold": s.facts.threshold(threshold),
        "smoothness": smoothness,
        "instances": instances,
        "annotated": link("annotated.png"),
        "cutout": link("cutout.png"),
        "mask": link("mask.png"),
        "json": link("instances.json"),
    }))
    .into_response())
}

async fn image_file(
    State(s): Shared,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no picture result {id} (only the last few are kept)"),
        )
    };
    let n: u64 = id.parse().map_err(|_| gone())?;
    // Each body shares the kept bytes: a download copies nothing.
    let outcome = lock(&s.pictures).get(n).ok_or_else(gone)?;
    let (kind, body) = match file.as_str() {
        "annotated.png" => ("image/png", outcome.annotated_png.clone()),
        "cutout.png" => ("image/png", outcome.cutout_png.clone()),
        "mask.png" => ("image/png", outcome.mask_png.clone()),
        "instances.json" => ("application/json", outcome.instances_json.clone()),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no file {other:?}: annotated.png, cutout.png, mask.png or instances.json"),
            ));
        }
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_gets_every_limit() {
        let page = index_page(1024);
        assert!(!page.contains("{{"), "a limit left unfilled");
        assert!(page.contains(&format!("data-max-bytes=\"{MAX_UPLOAD_BYTES}\"")));
        assert!(page.contains("max=\"1024\""));
    }
}
