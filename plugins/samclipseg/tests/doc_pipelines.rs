//! Every `gst-launch-1.0` pipeline of README.md and docs/*.md, run in-process
//! the way a user on a machine set up by `make demo` / `make test` would run
//! it, so that a copied example never fails.
//!
//! Extraction: a line of a code block (fenced, or indented by four spaces or
//! more) that starts with `gst-launch-1.0` (after an optional `$ `), joined
//! with the lines that follow while it ends in `\`. A `#` outside quotes
//! starts a shell comment and ends the command. gst-launch's own options
//! (`-e`, `-m`, `-q`, `-v`, ...) are dropped: the test always waits for EOS.
//!
//! The user's inputs are replaced by these rules, applied to each element in
//! turn; nothing else is changed (prompts, caps and every other property stay
//! as written):
//!
//! 1. Hardware or network not present here: a pipeline with a `samclipseg`
//!    whose `backend` is `cuda`, `tensorrt` or `remote` (or that names a
//!    `server`), or with a network source (`rtspsrc`, `souphttpsrc`,
//!    `udpsrc`, `srtsrc`, `rtmpsrc`), is only parsed, as written:
//!    `gst::parse::launch` with fatal errors must build it, so every element
//!    and property name and value exists. It is counted and reported, never
//!    skipped silently.
//! 2. A camera (`v4l2src`, `autovideosrc`, `libcamerasrc`) becomes
//!    `videotestsrc num-buffers=10 pattern=ball`; the caps that follow it in
//!    the pipeline decide its format and size, as with the camera.
//! 3. An input file (`filesrc location=X`, or `uri=file://...X` on
//!    `uridecodebin` / `urisourcebin`) becomes a file the test generates first
//!    with a GStreamer pipeline from `videotestsrc`, chosen by X's extension:
//!    `.mp4` / `.mov` (10 frames of 320x240 through `x264enc` and `mp4mux`),
//!    `.mkv` / `.webm` (`vp8enc`, `matroskamux` / `webmmux`), `.jpg` / `.jpeg`
//!    (`jpegenc`) and `.png` (`pngenc`), one picture for the last two. Any
//!    other extension fails the test, naming it.
//! 4. An output file (`location` of `filesink`, `multifilesink`,
//!    `splitmuxsink`) goes to a temporary directory, same file name; a
//!    `filesink`'s file must exist and not be empty after EOS.
//! 5. `samclipseg`'s `bundle` (or its absence: the installed real model) is
//!    the toy bundle, tests/fixtures/toy-shapes-sam3; with `tracker=sam3`, a
//!    bundle with tracker engines, tests/fixtures/tiny-sam3-video.
//! 6. A display sink (`autovideosink`, `xvimagesink`, `ximagesink`,
//!    `glimagesink`, `waylandsink`, `kmssink`, `fbdevsink`, `gtksink`,
//!    `fpsdisplaysink`, `autoaudiosink`) becomes `fakesink`, its properties
//!    dropped.
//! 7. Endless sources end: `imagefreeze`, `videotestsrc` and `audiotestsrc`
//!    without `num-buffers` get `num-buffers=10`.
//! 8. An element that only a newer GStreamer than the one running has
//!    (`objectdetectionoverlay`: 1.24; `segmentationoverlay`, `ioutracker`:
//!    1.28; the GstAnalytics readers) cannot even be parsed: the pipeline is
//!    counted and reported as needing that version, and runs where it exists
//!    (Debian 13's CI root runs the `objectdetectionoverlay` ones).
//!
//! Each pipeline must reach EOS without an error within 60 s; a failure names
//! the document, the line, the pipeline as run and the error. The test fails
//! when it finds no pipeline at all, and prints how many it ran and parsed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gst::prelude::*;

/// Frames of a camera, of a generated clip and of an endless source.
const FRAMES: u32 = 10;
const TIMEOUT: Duration = Duration::from_secs(60);

const CAMERAS: &[&str] = &["v4l2src", "autovideosrc", "libcamerasrc"];
const NETWORK_SOURCES: &[&str] = &["rtspsrc", "souphttpsrc", "udpsrc", "srtsrc", "rtmpsrc"];
const DISPLAY_SINKS: &[&str] = &[
    "autovideosink",
    "xvimagesink",
    "ximagesink",
    "glimagesink",
    "waylandsink",
    "kmssink",
    "fbdevsink",
    "gtksink",
    "fpsdisplaysink",
    "autoaudiosink",
];
const FILE_SINKS: &[&str] = &["filesink", "multifilesink", "splitmuxsink"];
const ENDLESS: &[&str] = &["imagefreeze", "videotestsrc", "audiotestsrc"];
const GPU_BACKENDS: &[&str] = &["cuda", "tensorrt", "remote"];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One `gst-launch-1.0` command found in a document.
#[derive(Debug, Clone)]
struct Found {
    doc: String,
    line: usize,
    command: String,
}

/// The `gst-launch-1.0` commands in the code blocks of one Markdown text.
fn extract(doc: &str, text: &str) -> Vec<Found> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut fenced = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            fenced = !fenced;
            i += 1;
            continue;
        }
        let indented = line.starts_with("    ") || line.starts_with('\t');
        let body = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if (fenced || indented) && body.starts_with("gst-launch-1.0") {
            let start = i;
            let mut command = String::new();
            let mut part = body;
            loop {
                let part_trimmed = part.trim_end();
                if let Some(head) = part_trimmed.strip_suffix('\\') {
                    command.push_str(head.trim());
                    command.push(' ');
                    i += 1;
                    if i >= lines.len() {
                        break;
                    }
                    part = lines[i];
                } else {
                    command.push_str(part_trimmed.trim());
                    break;
                }
            }
            found.push(Found {
                doc: doc.to_string(),
                line: start + 1,
                command: command.trim().to_string(),
            });
        }
        i += 1;
    }
    found
}

/// A shell word: as written (quotes kept) and as the shell would pass it.
#[derive(Debug, Clone)]
struct Word {
    raw: String,
    text: String,
}

/// Splits a command into shell words, up to a `#` comment outside quotes.
fn shell_words(command: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = command.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let (mut raw, mut text) = (String::new(), String::new());
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                None if c.is_whitespace() => break,
                None if c == '"' || c == '\'' => quote = Some(c),
                Some(q) if c == q => quote = None,
                None | Some('"') if c == '\\' => {
                    raw.push(c);
                    chars.next();
                    let escaped = chars.next().ok_or("a trailing backslash")?;
                    raw.push(escaped);
                    text.push(escaped);
                    continue;
                }
                _ => text.push(c),
            }
            raw.push(c);
            chars.next();
        }
        if quote.is_some() {
            return Err(format!("an unclosed quote in: {command}"));
        }
        words.push(Word { raw, text });
    }
    Ok(words)
}

/// One element of a pipeline description with its properties, or a word
/// that is not an element (`!`, caps, a pad reference such as `mix.sink_0`).
#[derive(Debug, Clone)]
enum Item {
    Element {
        factory: String,
        props: Vec<(String, Word)>,
    },
    Other(Word),
}

fn is_property(word: &Word) -> Option<(String, Word)> {
    let (key, _) = word.text.split_once('=')?;
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    let value_text = word.text[key.len() + 1..].to_string();
    let value_raw = word.raw[word.raw.find('=').unwrap() + 1..].to_string();
    Some((
        key.to_string(),
        Word {
            raw: value_raw,
            text: value_text,
        },
    ))
}

/// The pipeline description (the words after gst-launch's options) as items.
fn items(words: &[Word]) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for word in words {
        if let Some((key, value)) = is_property(word)
            && let Some(Item::Element { props, .. }) = out.last_mut()
        {
            props.push((key, value));
            continue;
        }
        let t = &word.text;
        let element = t != "!"
            && !t.contains('/')
            && !t.contains('.')
            && !t.contains('=')
            && !t.contains(',')
            && !t.is_empty();
        if element {
            out.push(Item::Element {
                factory: t.clone(),
                props: Vec::new(),
            });
        } else {
            out.push(Item::Other(word.clone()));
        }
    }
    out
}

fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn describe(items: &[Item]) -> String {
    let mut parts = Vec::new();
    for item in items {
        match item {
            Item::Other(word) => parts.push(word.raw.clone()),
            Item::Element { factory, props } => {
                parts.push(factory.clone());
                for (key, value) in props {
                    parts.push(format!("{key}={}", value.raw));
                }
            }
        }
    }
    parts.join(" ")
}

/// Rule 5's bundle for `tracker=sam3`: one with SAM 3's tracker engines.
fn video_bundle(toy_bundle: &Path) -> PathBuf {
    toy_bundle.with_file_name("tiny-sam3-video")
}

fn set(props: &mut Vec<(String, Word)>, key: &str, value: &str) {
    let word = Word {
        raw: quote(value),
        text: value.to_string(),
    };
    match props.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = word,
        None => props.push((key.to_string(), word)),
    }
}

fn get<'a>(props: &'a [(String, Word)], key: &str) -> Option<&'a str> {
    props
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.text.as_str())
}

/// Rule 8: elements of a newer GStreamer, with the version that brought them.
const NEWER_ELEMENTS: &[(&str, (u32, u32))] = &[
    ("objectdetectionoverlay", (1, 24)),
    ("segmentationoverlay", (1, 28)),
    ("ioutracker", (1, 28)),
];

/// What the test does with one pipeline.
#[derive(Debug)]
enum Plan {
    /// Rule 8: needs a newer GStreamer (the reason says which).
    TooNew { description: String, why: String },
    /// Rule 1: parsed as written (options dropped), with the reason.
    ParseOnly { description: String, why: String },
    /// Run with the user's inputs replaced; `inputs` are the files to
    /// generate first and `outputs` the filesink files to check.
    Run {
        description: String,
        inputs: Vec<PathBuf>,
        outputs: Vec<PathBuf>,
    },
}

/// Applies the rules of the module comment to one command.
fn plan(command: &str, toy_bundle: &Path, dir: &Path) -> Result<Plan, String> {
    let words = shell_words(command)?;
    let mut rest = words.iter().skip_while(|w| w.text != "gst-launch-1.0");
    rest.next().ok_or("no gst-launch-1.0")?;
    let words: Vec<Word> = rest
        .skip_while(|w| w.text.starts_with('-'))
        .cloned()
        .collect();
    if words.is_empty() {
        return Err("an empty pipeline".into());
    }
    let mut items = items(&words);

    let (major, minor, _, _) = gst::version();
    for item in &items {
        if let Item::Element { factory, .. } = item
            && let Some((_, (m, n))) = NEWER_ELEMENTS.iter().find(|(f, _)| f == factory)
            && (major, minor) < (*m, *n)
        {
            return Ok(Plan::TooNew {
                description: describe(&items),
                why: format!("{factory} needs GStreamer {m}.{n}, this is {major}.{minor}"),
            });
        }
    }

    let mut hardware = Vec::new();
    for item in &items {
        if let Item::Element { factory, props } = item {
            if factory == "samclipseg" {
                if let Some(backend) = get(props, "backend")
                    && GPU_BACKENDS.contains(&backend)
                {
                    hardware.push(format!("backend={backend}"));
                }
                if get(props, "server").is_some_and(|s| !s.is_empty()) {
                    hardware.push("a server".to_string());
                }
            }
            if NETWORK_SOURCES.contains(&factory.as_str()) {
                hardware.push(format!("the network source {factory}"));
            }
        }
    }
    if !hardware.is_empty() {
        hardware.dedup();
        return Ok(Plan::ParseOnly {
            description: describe(&items),
            why: hardware.join(", "),
        });
    }

    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    let generated = |name: &str| -> Result<PathBuf, String> {
        let file = Path::new(name)
            .file_name()
            .ok_or_else(|| format!("no file name in {name}"))?;
        let path = dir.join("in").join(file);
        input_pipeline(&path)?;
        Ok(path)
    };
    for item in &mut items {
        let Item::Element { factory, props } = item else {
            continue;
        };
        let f = factory.as_str();
        if CAMERAS.contains(&f) {
            *factory = "videotestsrc".into();
            props.clear();
            set(props, "num-buffers", &FRAMES.to_string());
            set(props, "pattern", "ball");
        } else if f == "filesrc" {
            let location = get(props, "location").ok_or("filesrc without location")?;
            let path = generated(location)?;
            set(props, "location", path.to_str().unwrap());
            inputs.push(path);
        } else if f == "uridecodebin" || f == "urisourcebin" {
            let uri = get(props, "uri").ok_or_else(|| format!("{f} without uri"))?;
            let name = uri
                .strip_prefix("file://")
                .ok_or_else(|| format!("{f} uri={uri}: no rule for a URI other than file://"))?;
            let path = generated(name)?;
            set(props, "uri", &format!("file://{}", path.display()));
            inputs.push(path);
        } else if FILE_SINKS.contains(&f) {
            let location = get(props, "location").ok_or_else(|| format!("{f} without location"))?;
            let name = Path::new(location)
                .file_name()
                .ok_or_else(|| format!("no file name in {location}"))?;
            let path = dir.join("out").join(name);
            set(props, "location", path.to_str().unwrap());
            if f == "filesink" {
                outputs.push(path);
            }
        } else if f == "samclipseg" {
            let bundle = if get(props, "tracker") == Some("sam3") {
                video_bundle(toy_bundle)
            } else {
                toy_bundle.to_path_buf()
            };
            set(props, "bundle", bundle.to_str().unwrap());
        } else if DISPLAY_SINKS.contains(&f) {
            *factory = "fakesink".into();
            props.clear();
        }
        if ENDLESS.contains(&factory.as_str()) && get(props, "num-buffers").is_none() {
            set(props, "num-buffers", &FRAMES.to_string());
        }
    }
    Ok(Plan::Run {
        description: describe(&items),
        inputs,
        outputs,
    })
}

/// The pipeline that generates an input file, chosen by its extension.
fn input_pipeline(path: &Path) -> Result<String, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let clip = format!(
        "videotestsrc num-buffers={FRAMES} pattern=ball \
         ! video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert"
    );
    let picture = "videotestsrc num-buffers=1 pattern=smpte \
                   ! video/x-raw,width=320,height=240 ! videoconvert";
    let tail = match ext.as_str() {
        "mp4" | "mov" => format!("{clip} ! x264enc ! mp4mux"),
        "mkv" => format!("{clip} ! vp8enc deadline=1 ! matroskamux"),
        "webm" => format!("{clip} ! vp8enc deadline=1 ! webmmux"),
        "jpg" | "jpeg" => format!("{picture} ! jpegenc"),
        "png" => format!("{picture} ! pngenc"),
        _ => {
            return Err(format!(
                "no rule to generate the input file {} (extension {ext:?})",
                path.display()
            ));
        }
    };
    Ok(format!(
        "{tail} ! filesink location={}",
        quote(path.to_str().unwrap())
    ))
}

/// Runs a description to EOS; the error names what went wrong.
fn run(description: &str) -> Result<Duration, String> {
    let start = Instant::now();
    let pipeline = gst::parse::launch_full(description, None, gst::ParseFlags::FATAL_ERRORS)
        .map_err(|e| format!("does not parse: {e}"))?;
    let bus = pipeline.bus().unwrap();
    let result = (|| {
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            // The element's own error, if it posted one, says more.
            let detail = bus
                .timed_pop_filtered(gst::ClockTime::from_seconds(2), &[gst::MessageType::Error])
                .map(|m| message_text(&m))
                .unwrap_or_default();
            return Err(format!("does not start ({e}) {detail}"));
        }
        let deadline = start + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no EOS within {} s", TIMEOUT.as_secs()));
            }
            let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(left.as_nanos() as u64),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            ) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Eos(_) => return Ok(start.elapsed()),
                _ => return Err(message_text(&msg)),
            }
        }
    })();
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

fn message_text(msg: &gst::Message) -> String {
    match msg.view() {
        gst::MessageView::Error(err) => format!(
            "error from {}: {} ({})",
            msg.src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default(),
            err.error(),
            err.debug().map(|d| d.to_string()).unwrap_or_default()
        ),
        _ => format!("{msg:?}"),
    }
}

fn documents() -> Vec<(String, String)> {
    let root = repo_root();
    let mut docs = vec![("README.md".to_string(), root.join("README.md"))];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    for path in more {
        let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
        docs.push((name, path));
    }
    docs.into_iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

/// Printed whatever the test harness captures.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn every_documented_pipeline_runs() {
    common::init();
    let toy = common::toy_bundle();
    let toy = std::fs::canonicalize(&toy).unwrap_or(toy);
    let found: Vec<Found> = documents()
        .iter()
        .flat_map(|(name, text)| extract(name, text))
        .collect();
    assert!(
        !found.is_empty(),
        "no gst-launch-1.0 pipeline found in README.md and docs/*.md: the extraction is broken"
    );

    let dir = std::env::temp_dir().join(format!("samclipseg-doc-pipelines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();

    let (mut ran, mut parsed, mut too_new) = (0, 0, 0);
    let mut failures = Vec::new();
    for f in &found {
        let at = format!("{}:{}", f.doc, f.line);
        let plan = match plan(&f.command, &toy, &dir) {
            Ok(plan) => plan,
            Err(e) => {
                failures.push(format!("{at}: {e}\n  command: {}", f.command));
                continue;
            }
        };
        match plan {
            Plan::TooNew { description, why } => {
                too_new += 1;
                report(&format!("{at}: not run (rule 8: {why}): {description}"));
            }
            Plan::ParseOnly { description, why } => {
                match gst::parse::launch_full(&description, None, gst::ParseFlags::FATAL_ERRORS) {
                    Ok(pipeline) => {
                        parsed += 1;
                        report(&format!("{at}: parsed only (rule 1: {why}): {description}"));
                        drop(pipeline);
                    }
                    Err(e) => failures.push(format!(
                        "{at}: does not parse: {e}\n  command: {}\n  as parsed: {description}",
                        f.command
                    )),
                }
            }
            Plan::Run {
                description,
                inputs,
                outputs,
            } => {
                let mut failed = None;
                for input in &inputs {
                    if input.exists() {
                        continue;
                    }
                    let generator = input_pipeline(input).unwrap();
                    if let Err(e) = run(&generator) {
                        failed = Some(format!(
                            "generating the input {} failed: {e}\n  generator: {generator}",
                            input.display()
                        ));
                        break;
                    }
                }
                if failed.is_none() {
                    match run(&description) {
                        Ok(took) => {
                            for out in &outputs {
                                let len = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
                                if len == 0 {
                                    failed = Some(format!(
                                        "reached EOS but wrote nothing to {}",
                                        out.display()
                                    ));
                                }
                            }
                            if failed.is_none() {
                                ran += 1;
                                report(&format!(
                                    "{at}: ran in {:.1} s: {description}",
                                    took.as_secs_f64()
                                ));
                            }
                        }
                        Err(e) => failed = Some(e),
                    }
                }
                if let Some(e) = failed {
                    failures.push(format!(
                        "{at}: {e}\n  command: {}\n  as run: {description}",
                        f.command
                    ));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report(&format!(
        "doc pipelines: {} found, {ran} ran to EOS, {parsed} parsed only (hardware or network \
         not present), {too_new} not run (a newer GStreamer's elements), {} failed",
        found.len(),
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "{} documented pipeline(s) fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The extraction and the rules on a document made up for the purpose.
#[test]
fn extraction_and_rules() {
    let doc = "Text `gst-launch-1.0 fake` in prose is not a pipeline.\n\
               \n    gst-launch-1.0 -e v4l2src device=/dev/video1 ! videoconvert \\\n\
               \x20       ! samclipseg prompt=\"red car; -toy car\" ! autovideosink sync=false\n\
               \n```sh\n$ gst-launch-1.0 filesrc location=/data/in.png ! pngdec ! fakesink # a comment\n```\n\
               \n    gst-launch-1.0 videotestsrc ! samclipseg backend=remote server=grpc://h:8001 ! fakesink\n";
    let found = extract("made-up.md", doc);
    let lines: Vec<usize> = found.iter().map(|f| f.line).collect();
    assert_eq!(lines, [3, 7, 10], "{found:#?}");
    assert_eq!(
        found[0].command,
        "gst-launch-1.0 -e v4l2src device=/dev/video1 ! videoconvert ! samclipseg \
         prompt=\"red car; -toy car\" ! autovideosink sync=false"
    );

    let dir = Path::new("/nonexistent-samclipseg-doc-test");
    let toy = Path::new("/toy");
    match plan(&found[0].command, toy, dir).unwrap() {
        Plan::Run { description, .. } => assert_eq!(
            description,
            "videotestsrc num-buffers=\"10\" pattern=\"ball\" ! videoconvert ! samclipseg \
             prompt=\"red car; -toy car\" bundle=\"/toy\" ! fakesink"
        ),
        other => panic!("{other:?}"),
    }
    match plan(&found[2].command, toy, dir).unwrap() {
        Plan::ParseOnly { description, why } => {
            assert_eq!(why, "backend=remote, a server");
            assert!(description.starts_with("videotestsrc ! samclipseg backend=remote"));
        }
        other => panic!("{other:?}"),
    }
    // Rule 8: run only where GStreamer has the element.
    let overlay = "gst-launch-1.0 videotestsrc ! samclipseg prompt=cat ! objectdetectionoverlay \
                   ! fakesink";
    let (major, minor, _, _) = gst::version();
    match plan(overlay, toy, dir).unwrap() {
        Plan::TooNew { why, .. } if (major, minor) < (1, 24) => assert_eq!(
            why,
            format!("objectdetectionoverlay needs GStreamer 1.24, this is {major}.{minor}")
        ),
        Plan::Run { .. } if (major, minor) >= (1, 24) => {}
        other => panic!("{major}.{minor}: {other:?}"),
    }
    assert!(input_pipeline(Path::new("x.avi")).is_err());
    assert!(
        input_pipeline(Path::new("x.jpg"))
            .unwrap()
            .contains("jpegenc")
    );
}
