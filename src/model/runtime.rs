//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic`).
//!
//! `ORT_DYLIB_PATH`, when set, is the only candidate: a user who names a library
//! wants that one, not a silent substitute. Otherwise the system's, and, only
//! when `SAMCLIPSEG_DEV_ORT=1`, first the copy the project's set-up (`make
//! deps`) puts in the source tree's `.deps/onnxruntime/`.
//!
//! That tree's path is baked in at compile time, so an installed plugin must
//! not search it by default: it may be gone, or belong to someone else, and a
//! library there would be loaded into every GStreamer application on the
//! system. Everything that runs from the tree sets the variable: cargo (for
//! `cargo run` and `cargo test`, through `.cargo/config.toml`), the Makefile,
//! `examples/demo.sh` and the GPU scripts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// Where `make deps` puts the library, in the source tree this was built from.
pub const SETUP_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.deps/onnxruntime");

/// Set to `1` to search [`SETUP_DIR`] (development runs from the source tree).
pub const DEV_ORT_VAR: &str = "SAMCLIPSEG_DEV_ORT";

const INSTALL_HINT: &str = "install ONNX Runtime system-wide (libonnxruntime.so in /usr/local/lib or /usr/lib), \
     or `pip install onnxruntime` and set ORT_DYLIB_PATH to its onnxruntime/capi/libonnxruntime.so.1.*; \
     in a source tree, `make deps` places it in .deps/onnxruntime, which is searched when SAMCLIPSEG_DEV_ORT=1 \
     (cargo, the Makefile and the project's scripts set it)";

static ENVIRONMENT: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

struct Loaded {
    path: PathBuf,
    env: ort::environment::Environment,
}

/// The candidate library paths, in the order they are tried, from the
/// environment (`ORT_DYLIB_PATH`, `SAMCLIPSEG_DEV_ORT`).
pub fn candidates() -> Vec<PathBuf> {
    candidates_for(
        std::env::var_os("ORT_DYLIB_PATH"),
        std::env::var_os(DEV_ORT_VAR).is_some_and(|v| v == "1"),
    )
}

/// [`candidates`] for a given `ORT_DYLIB_PATH` and whether the source tree's
/// copy may be used.
pub fn candidates_for(ort_dylib_path: Option<OsString>, dev_tree: bool) -> Vec<PathBuf> {
    if let Some(p) = ort_dylib_path.filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    if dev_tree {
        out.extend(libraries_in(Path::new(SETUP_DIR)));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn in_tree(c: &[PathBuf]) -> bool {
        c.iter().any(|p| p.starts_with(env!("CARGO_MANIFEST_DIR")))
    }

    #[test]
    fn the_source_tree_is_searched_only_when_asked() {
        let without = candidates_for(None, false);
        assert!(!in_tree(&without), "{without:?}");
        assert_eq!(without.last(), Some(&PathBuf::from("libonnxruntime.so")));
        if libraries_in(Path::new(SETUP_DIR)).is_empty() {
            println!("{SETUP_DIR} has no library (no `make deps`): the opt-in case is not checked");
        } else {
            let with = candidates_for(None, true);
            assert!(with[0].starts_with(SETUP_DIR), "{with:?}");
        }
    }

    #[test]
    fn a_named_library_is_the_only_candidate() {
        let named = OsString::from("/opt/ort/libonnxruntime.so.1.23.0");
        assert_eq!(
            candidates_for(Some(named.clone()), true),
            [PathBuf::from(&named)]
        );
        // Empty is unset.
        assert_eq!(
            candidates_for(Some(OsString::new()), false),
            candidates_for(None, false)
        );
    }
}
