//! A real Triton Inference Server for the remote-backend tests: the
//! `tritonserver` of the nvidia-pytriton wheel in `.venv-triton` (installed by
//! `scripts/setup.sh test`), started on 127.0.0.1 on a free port through
//! `engines/triton_serve.py` (which execs into it, so the child's PID is the
//! server's) and stopped by that PID. Shared by the core's and the element's
//! tests (the element's include this file by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The project root: the element's tests run from plugins/samclipseg.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|a| a.join("engines/triton_serve.py").is_file())
        .map(Path::to_path_buf)
        .expect("project root with engines/triton_serve.py")
}

fn python() -> PathBuf {
    let python = root().join(".venv-triton/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/setup.sh test` (it installs the Triton server)",
        python.display()
    );
    python
}

fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("samclipseg-triton-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a python-backend repository for each bundle into one directory.
pub fn repository(name: &str, bundles: &[&Path]) -> PathBuf {
    let bundles: Vec<(&Path, Option<&str>)> = bundles.iter().map(|b| (*b, None)).collect();
    repository_with_prefixes(name, &bundles)
}

/// As [`repository`], each bundle's models named with its prefix (None: the
/// bundle's name), as `triton_repo.py --prefix` names them.
pub fn repository_with_prefixes(name: &str, bundles: &[(&Path, Option<&str>)]) -> PathBuf {
    let repo = work_dir(name).join("repo");
    for (bundle, prefix) in bundles {
        let mut cmd = Command::new(python());
        cmd.arg(root().join("engines/triton_repo.py"))
            .arg(bundle)
            .arg(&repo)
            .arg("--python-backend")
            .arg("--no-verify");
        if let Some(prefix) = prefix {
            cmd.arg("--prefix").arg(prefix);
        }
        let out = cmd.output().expect("run engines/triton_repo.py");
        assert!(
            out.status.success(),
            "triton_repo.py {} failed:\n{}{}",
            bundle.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    repo
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Triton {
    child: Option<Child>,
    pub port: u16,
    repo: PathBuf,
    tls: Option<(PathBuf, PathBuf)>,
    /// `--model-control-mode=explicit --load-model=*`: models are unloaded
    /// and loaded through the repository API ([`model_control`]).
    explicit: bool,
    work: PathBuf,
    log: PathBuf,
}

impl Triton {
    /// Starts a server on `repo` and waits until its gRPC service is up.
    pub fn start(repo: &Path) -> Triton {
        Triton::start_on(repo, free_port(), None)
    }

    pub fn start_tls(repo: &Path, cert: &Path, key: &Path) -> Triton {
        Triton::start_on(
            repo,
            free_port(),
            Some((cert.to_path_buf(), key.to_path_buf())),
        )
    }

    /// Starts a server with explicit model control (every model loaded at
    /// start); see [`model_control`].
    pub fn start_explicit(repo: &Path) -> Triton {
        Triton::start_with(repo, free_port(), None, true)
    }

    fn start_on(repo: &Path, port: u16, tls: Option<(PathBuf, PathBuf)>) -> Triton {
        Triton::start_with(repo, port, tls, false)
    }

    fn start_with(
        repo: &Path,
        port: u16,
        tls: Option<(PathBuf, PathBuf)>,
        explicit: bool,
    ) -> Triton {
        let work = work_dir(&format!("server-{port}"));
        let mut t = Triton {
            child: None,
            port,
            repo: repo.to_path_buf(),
            tls,
            explicit,
            log: work.join("tritonserver.log"),
            work,
        };
        t.restart();
        t
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "grpcs" } else { "grpc" };
        let host = if self.tls.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        format!("{scheme}://{host}:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server again on the same port (after [`Triton::kill`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let log = std::fs::File::create(&self.log).unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(root().join("engines/triton_serve.py"))
            .arg(&self.repo)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--work")
            .arg(&self.work)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("OMP_NUM_THREADS", "1");
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        if self.explicit {
            cmd.args(["--model-control-mode", "explicit"]);
        }
        let child = cmd.spawn().expect("start tritonserver");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains("Started GRPCInferenceService") {
                break;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                panic!(
                    "tritonserver exited ({status}) before it was ready:\n{}",
                    tail(&text)
                );
            }
            if started.elapsed() > Duration::from_secs(180) {
                self.kill();
                panic!("tritonserver not ready after 180 s:\n{}", tail(&text));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server by its PID (SIGKILL: it goes away as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and returns at once, keeping the process: Triton
    /// unloads its models and drains (answering `NotFound` for them) before
    /// it exits; see [`Triton::running`] and [`Triton::wait_exit`].
    pub fn terminate(&mut self) {
        let child = self.child.as_ref().expect("the server is running");
        // SAFETY: kill(2) on our own child's PID, which wait() has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Whether the server process is still there (it may be draining).
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the process to exit after [`Triton::terminate`] (SIGKILL
    /// after `limit`); then [`Triton::restart`] starts it again.
    pub fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// Stops the server by its PID with SIGTERM, as a service manager would
    /// (it ends its python-backend stubs and frees their shared memory);
    /// SIGKILL after 20 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's PID, which wait() has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// For a server kept in a `static` (never dropped): SIGTERM when the test
    /// process exits, so that no server outlives its tests.
    pub fn stop_at_exit(&self) {
        if let Some(pid) = self.pid() {
            AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
            static REGISTER: std::sync::Once = std::sync::Once::new();
            // SAFETY: registers a plain extern "C" function with no captures.
            REGISTER.call_once(|| unsafe {
                libc::atexit(stop_all_at_exit);
            });
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Triton {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Loads or unloads models of an explicit-control server on `port`, in
/// order, through the gRPC repository API (tritonclient of .venv-triton);
/// `action` is "load" or "unload". A load returns once the model is ready.
pub fn model_control(port: u16, action: &str, models: &[&str]) {
    assert!(action == "load" || action == "unload", "{action}");
    let script = format!(
        "import sys, tritonclient.grpc as g\n\
         c = g.InferenceServerClient('127.0.0.1:{port}')\n\
         for m in sys.argv[1:]:\n    c.{action}_model(m)\n"
    );
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(models)
        .output()
        .expect("run tritonclient");
    assert!(
        out.status.success(),
        "{action} {models:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static AT_EXIT: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn stop_all_at_exit() {
    let pids = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in pids {
        // SAFETY: kill(2) and waitpid(2) on servers this process started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
            let mut status = 0;
            for _ in 0..400 {
                if libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) != 0 {
                    break;
                }
                libc::usleep(50_000);
            }
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
