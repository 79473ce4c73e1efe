//! Runs the real `samclipseg-studio` binary on a free port and talks to it
//! over HTTP, as the page does.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_samclipseg-studio");

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn toy() -> PathBuf {
    repo().join("tests/fixtures/toy-shapes-sam3")
}

/// The toy shapes scene (112 px): red circle (id 1), blue square (2), green
/// triangle (3), white square (4); `golden/scene-ids.png` is its truth.
pub fn scene() -> PathBuf {
    toy().join("golden/scene.png")
}

pub fn scene_truth(id: u8) -> Vec<bool> {
    let ids = image::open(toy().join("golden/scene-ids.png"))
        .unwrap()
        .to_luma8();
    ids.pixels().map(|p| p.0[0] == id).collect()
}

pub fn iou(a: &[bool], b: &[bool]) -> f64 {
    assert_eq!(a.len(), b.len());
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

pub struct Studio {
    child: Child,
    pub url: String,
    pub port: u16,
    log: PathBuf,
}

fn log_path(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("studio-logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}-{}.log", std::process::id()))
}

fn spawn(args: &[&str], log: &Path) -> Child {
    spawn_limited(args, log, None)
}

/// Spawns the studio, under `ulimit -n N` when `open_files` says N.
fn spawn_limited(args: &[&str], log: &Path, open_files: Option<u32>) -> Child {
    let mut command = match open_files {
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    command
        .args(args)
        .env("SAMCLIPSEG_DEV_ORT", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("samclipseg-studio starts")
}

impl Studio {
    /// Starts the studio on a free port of 127.0.0.1 with the toy bundle and
    /// `source`, and waits for the address it prints.
    pub fn start(tag: &str, source: &Path, extra: &[&str]) -> Studio {
        Studio::start_limited(tag, source, extra, None)
    }

    /// [`Studio::start`], under `ulimit -n N` when `open_files` says N.
    pub fn start_limited(
        tag: &str,
        source: &Path,
        extra: &[&str],
        open_files: Option<u32>,
    ) -> Studio {
        let log = log_path(tag);
        let source = source.display().to_string();
        let mut args = vec!["--port", "0", "--source", source.as_str()];
        args.extend_from_slice(extra);
        let mut child = spawn_limited(&args, &log, open_files);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().trim_end_matches('/').to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the studio printed no address within 60 s; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Studio {
            child,
            url,
            port,
            log,
        }
    }

    /// The studio's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A line of /proc/PID/status in kB (VmRSS: resident now, VmHWM: its peak).
    pub fn memory_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        let mut r = agent().get(&format!("{}{path}", self.url)).call().unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_vec().unwrap())
    }

    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        json_answer(&mut agent().get(&format!("{}{path}", self.url)).call().unwrap())
    }

    pub fn post_json(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let mut r = agent()
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap();
        json_answer(&mut r)
    }

    /// POST /api/image with these form fields; `image` is (file name, bytes).
    pub fn post_image(
        &self,
        image: Option<(&str, &[u8])>,
        fields: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let boundary = "studio-test-boundary-7d1f";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        if let Some((file, bytes)) = image {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let mut r = agent()
            .post(&format!("{}/api/image", self.url))
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .send(&body[..])
            .unwrap();
        json_answer(&mut r)
    }

    /// Polls GET /api/live until `pred` holds for its JSON.
    pub fn wait_live(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, v) = self.get_json("/api/live");
            assert_eq!(status, 200);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "waited 30 s for {what}; last /api/live: {v}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Studio {
    /// Sends SIGTERM and waits for the exit (None after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The status line of a raw HTTP/1.1 request (`head`: the request line
    /// and headers, without the blank line), for headers a client library
    /// sets itself (Host).
    pub fn raw_status(&self, head: &str, body: &str) -> String {
        self.raw(head, body)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The whole answer (status line, headers, body) of a raw request, as text.
    pub fn raw(&self, head: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let length = if body.is_empty() {
            String::new()
        } else {
            format!("\r\nContent-Length: {}", body.len())
        };
        s.write_all(format!("{head}{length}\r\nConnection: close\r\n\r\n{body}").as_bytes())
            .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the studio with `args` and expects it to exit on its own.
pub fn run_to_exit(tag: &str, args: &[&str]) -> (ExitStatus, String) {
    let log = log_path(tag);
    let mut child = spawn(args, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(&log).unwrap_or_default());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the studio did not exit within 60 s with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An answer's status and JSON body (Null when the body is not JSON).
fn json_answer(r: &mut ureq::http::Response<ureq::Body>) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_vec().unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// An HTTP client that returns 4xx and 5xx answers instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// The instances of a frame or picture JSON.
pub fn instances(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["instances"].as_array().cloned().unwrap_or_default()
}

pub fn labels(v: &serde_json::Value) -> Vec<String> {
    instances(v)
        .iter()
        .map(|i| i["label"].as_str().unwrap_or_default().to_string())
        .collect()
}
