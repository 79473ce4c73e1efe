//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic`).
//!
//! `ORT_DYLIB_PATH`, when set, is the only candidate: a user who names a library
//! wants that one, not a silent substitute. Otherwise: the copy the project's
//! set-up (`make deps`) puts in `.deps/onnxruntime/`, then the system's.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Where `make deps` puts the library, relative to the source tree this was built from.
const SETUP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/onnxruntime");

const INSTALL_HINT: &str = "install it with `make deps` (it places the onnxruntime wheel's library in .deps/onnxruntime), \
     or `pip install onnxruntime` and set ORT_DYLIB_PATH to its onnxruntime/capi/libonnxruntime.so.1.*";

static ENVIRONMENT: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

struct Loaded {
    path: PathBuf,
    env: ort::environment::Environment,
}

/// The candidate library paths, in the order they are tried.
pub fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    out.extend(libraries_in(Path::new(SETUP_DIR)));
    for dir in [
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
    ] {
        out.extend(libraries_in(Path::new(dir)));
    }
    // Last: let the dynamic linker search LD_LIBRARY_PATH and its cache.
    out.push(PathBuf::from("libonnxruntime.so"));
    out
}

fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut libs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .collect();
    libs.sort();
    libs
}

/// Loads the library once per process and returns the ONNX Runtime environment.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    let loaded = ENVIRONMENT.get_or_init(load);
    match loaded {
        Ok(l) => Ok(&l.env),
        Err(m) => Err(Error::RuntimeLibrary(m.clone())),
    }
}

/// The path of the loaded library, if it loaded.
pub fn library_path() -> Option<&'static Path> {
    ENVIRONMENT.get()?.as_ref().ok().map(|l| l.path.as_path())
}

fn load() -> std::result::Result<Loaded, String> {
    let mut tried = Vec::new();
    for path in candidates() {
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder
                    .with_name("samclipseg")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| format!("{} loaded but failed to start: {e}", path.display()))?;
                log::info!("ONNX Runtime loaded from {}", path.display());
                return Ok(Loaded { path, env });
            }
            Err(e) => tried.push(format!("{}: {e}", path.display())),
        }
    }
    Err(format!("tried {}; {INSTALL_HINT}", tried.join("; ")))
}
