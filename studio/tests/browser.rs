//! The page in headless Chromium (Debian's chromium and chromium-driver,
//! which `make test` installs), driven over WebDriver: type a prompt, watch
//! the table and the preview, move the threshold, upload a picture, download
//! its cut-out, and see a picture above the upload limit refused before it
//! is sent. Screenshots go to target/tmp/studio-screens/.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const ENTER: &str = "\u{E007}";
const END: &str = "\u{E010}";

struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: `make test` installs Debian's chromium and chromium-driver \
                 (bash scripts/setup.sh test)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut r) = agent().get(&format!("{}/status", driver.url)).call()
                && let Ok(v) = r.body_mut().read_json::<Value>()
                && v["value"]["ready"] == true
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver not ready in 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Session {
    base: String,
}

impl Session {
    fn new(driver: &Driver, downloads: &Path, profile: &Path) -> Session {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let v = send(&format!("{}/session", driver.url), "POST", Some(&caps));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"));
        let s = Session {
            base: format!("{}/session/{id}", driver.url),
        };
        s.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Browser.setDownloadBehavior",
                   "params": {"behavior": "allow", "downloadPath": downloads.display().to_string()}}),
        );
        s
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (method == "POST").then_some(body);
        send(&format!("{}{path}", self.base), method, body.as_ref())
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    fn clear(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}));
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), json!({}));
    }

    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd("GET", "/screenshot", json!({}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("studio-screens");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Polls `probe` (a script returning a value or null) until `ok` holds.
    fn wait(&self, what: &str, probe: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(probe, json!([]));
            if ok(&v) {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot("timeout.png");
                panic!("waited 30 s in the page for {what}; last: {v}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = agent().delete(&self.base).call();
    }
}

fn send(url: &str, method: &str, body: Option<&Value>) -> Value {
    let a = agent();
    let mut r = match (method, body) {
        ("POST", Some(b)) => a.post(url).send_json(b).unwrap(),
        ("DELETE", _) => a.delete(url).call().unwrap(),
        _ => a.get(url).call().unwrap(),
    };
    let v: Value = r.body_mut().read_json().unwrap();
    assert!(
        v["value"]["error"].is_null(),
        "WebDriver {method} {url}: {}",
        v["value"]
    );
    v["value"].clone()
}

/// The instance table's rows: [id, label, score] each.
const ROWS: &str = "return [...document.querySelectorAll('#instances-body tr[data-id]')]
    .map(r => [...r.cells].map(c => c.textContent.trim()));";

fn rows(v: &Value) -> Vec<(String, f64)> {
    v.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r[1].as_str().unwrap_or_default().to_string(),
                        r[2].as_str().unwrap_or_default().parse().unwrap_or(-1.0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_page_segments_the_live_picture_and_uploads() {
    let studio = Studio::start("browser", &scene(), &[]);
    let tmp =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("browser-{}", std::process::id()));
    let (downloads, profile) = (tmp.join("downloads"), tmp.join("profile"));
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::create_dir_all(&profile).unwrap();
    let driver = Driver::start();
    let page = Session::new(&driver, &downloads, &profile);
    page.goto(&format!("{}/", studio.url));
    page.wait("the red circle in the table", ROWS, |v| {
        rows(v).iter().any(|(l, _)| l == "red circle")
    });

    // Type a prompt: the table lists the square with a score.
    page.clear("#prompt");
    page.type_into("#prompt", &format!("blue square{ENTER}"));
    let v = page.wait("the blue square in the table", ROWS, |v| {
        let r = rows(v);
        r.len() == 1 && r[0].0 == "blue square" && r[0].1 > 0.0
    });
    eprintln!("table: {v}");

    // The preview has the mask's colour where the square is: the square's
    // own pixel blended with its phrase's colour, as the element draws it.
    let live = studio.wait_live("the square's frames", |v| {
        labels(&v["frame"]) == ["blue square"]
    });
    let square = &instances(&live["frame"])[0];
    let b: Vec<f64> = (0..4).map(|k| square["box"][k].as_f64().unwrap()).collect();
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    std::thread::sleep(Duration::from_millis(500));
    let seen = page.js(
        "const img = document.getElementById('preview');
         const c = document.createElement('canvas');
         c.width = img.naturalWidth; c.height = img.naturalHeight;
         const g = c.getContext('2d'); g.drawImage(img, 0, 0);
         return [...g.getImageData(arguments[0], arguments[1], 1, 1).data].slice(0, 3)
             .concat([img.naturalWidth, img.naturalHeight]);",
        json!([cx.round(), cy.round()]),
    );
    let seen: Vec<i64> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(&seen[3..], [640, 360], "the preview's size");
    let s = 360.0 / 112.0;
    let raw = image::open(scene())
        .unwrap()
        .to_rgb8()
        .get_pixel(((cx - 140.0) / s) as u32, (cy / s) as u32)
        .0;
    let colour = u32::from_str_radix(
        square["color"].as_str().unwrap().trim_start_matches('#'),
        16,
    )
    .unwrap();
    let colour = [(colour >> 16) as u8, (colour >> 8) as u8, colour as u8];
    let expected: Vec<i64> = (0..3)
        .map(|c| (raw[c] as i64 * 146 + colour[c] as i64 * 110) >> 8)
        .collect();
    for c in 0..3 {
        assert!(
            (seen[c] - expected[c]).abs() <= 40,
            "preview pixel {:?} at the square's centre, expected about {expected:?} \
             (square {raw:?} under mask colour {colour:?})",
            &seen[..3]
        );
    }
    assert!(
        (seen[0] - raw[0] as i64) > 60,
        "the mask colour shows: {:?} vs the bare square {raw:?}",
        &seen[..3]
    );
    page.screenshot("live.png");

    // The same in Chinese: the table lists the square as typed, and the
    // English for the model shows under the prompt.
    page.clear("#prompt");
    page.type_into("#prompt", &format!("蓝色正方形{ENTER}"));
    page.wait("the square as typed in Chinese", ROWS, |v| {
        let r = rows(v);
        r.len() == 1 && r[0].0 == "蓝色正方形"
    });
    page.wait(
        "the English beside it",
        "const p = document.getElementById('prompt-in-use');
         return p && !p.hidden ? p.textContent : null;",
        |v| v.as_str().is_some_and(|t| t.contains("blue square")),
    );
    page.screenshot("live-chinese.png");

    // Move the threshold slider up: the weaker instances leave the table.
    page.clear("#prompt");
    page.type_into("#prompt", &format!("shape{ENTER}"));
    page.wait("three or more shapes", ROWS, |v| {
        let r = rows(v);
        r.len() >= 3 && r.iter().any(|(_, s)| *s < 0.9)
    });
    page.type_into("#threshold", END);
    let v = page.wait("only instances above 0.9", ROWS, |v| {
        let r = rows(v);
        !r.is_empty() && r.len() <= 2 && r.iter().all(|(_, s)| *s >= 0.9)
    });
    eprintln!("after the slider: {v}");
    let (_, live) = studio.get_json("/api/live");
    assert!(
        (live["settings"]["threshold"].as_f64().unwrap() - 0.9).abs() < 1e-6,
        "{live}"
    );

    // Upload a picture, get its labels, download the cut-out.
    page.type_into(
        "#picture-file",
        &scene().canonicalize().unwrap().display().to_string(),
    );
    page.type_into("#picture-prompt", "red circle");
    // The picture's slider follows the live one (0.9 now): set it as a user would.
    page.js(
        "const t = document.getElementById('picture-threshold');
         t.value = '0.5'; t.dispatchEvent(new Event('input', {bubbles: true}));",
        json!([]),
    );
    page.click("#picture-run");
    page.wait(
        "the picture's label",
        "const b = document.querySelector('#picture-labels button.label');
         const img = document.getElementById('picture-result');
         return b && img && img.complete ? [b.textContent, img.naturalWidth] : null;",
        |v| v[0].as_str().is_some_and(|t| t.contains("red circle")) && v[1] == 112,
    );
    page.js(
        "document.getElementById('picture-section').scrollIntoView();",
        json!([]),
    );
    page.screenshot("picture.png");
    page.click("#download-cutout");
    let cutout = downloads.join("cutout.png");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cutout.exists() {
        assert!(
            Instant::now() < deadline,
            "no cutout.png in {}",
            downloads.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let cut = image::open(&cutout).unwrap().to_rgba8();
    assert_eq!(cut.dimensions(), (112, 112));
    let kept: Vec<bool> = cut.pixels().map(|p| p.0[3] == 255).collect();
    let score = iou(&kept, &scene_truth(1));
    assert!(
        score >= 0.8,
        "the downloaded cut-out's alpha vs the red circle: IoU {score:.3}"
    );

    // A file above the server's limit is refused in the page, not sent.
    let big = tmp.join("big.png");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(21 * 1024 * 1024)
        .unwrap();
    const POSTS: &str = "return performance.getEntriesByType('resource')
        .filter(e => new URL(e.name).pathname === '/api/image').length;";
    let posts = page.js(POSTS, json!([]));
    page.type_into("#picture-file", &big.display().to_string());
    page.click("#picture-run");
    let v = page.wait(
        "the page's refusal of a 21 MB file",
        "const e = document.getElementById('picture-error');
         return e.hidden ? null : e.textContent;",
        |v| v.is_string(),
    );
    let message = v.as_str().unwrap();
    assert!(
        message.contains("at most 20 MB") && message.contains("not sent"),
        "{message}"
    );
    assert_eq!(page.js(POSTS, json!([])), posts, "the file went out");
    let _ = std::fs::remove_dir_all(&tmp);
}
