//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic`).
//!
//! `ORT_DYLIB_PATH`, when set, is the only candidate: a user who names a library
//! wants that one, not a silent substitute. Otherwise, in order: only when
//! `SAMCLIPSEG_DEV_ORT=1`, the copy the project's set-up (`make deps`) puts in
//! the source tree's `.deps/onnxruntime/`; an installed plugin's or studio's
//! private copy (`<libdir>/samclipseg/`, found from where the code was loaded:
//! [`crate::installed`]); the system's.
//!
//! No library to be found is [`Error::MissingLibrary`]; a library that is
//! there and does not load or start is [`Error::RuntimeLibrary`], a failure.
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

const INSTALL_HINT: &str = "install samclipseg with `make install` or its Debian package, which bring their own ONNX Runtime \
     (docs/install.md), or install ONNX Runtime system-wide (libonnxruntime.so in /usr/local/lib or /usr/lib), \
     or `pip install onnxruntime` and set ORT_DYLIB_PATH to its onnxruntime/capi/libonnxruntime.so.1.*; \
     in a source tree, `make deps` places it in .deps/onnxruntime, which is searched when SAMCLIPSEG_DEV_ORT=1 \
     (cargo, the Makefile and the project's scripts set it)";

static ENVIRONMENT: OnceLock<std::result::Result<Loaded, LoadFailure>> = OnceLock::new();

struct Loaded {
    path: PathBuf,
    env: ort::environment::Environment,
}

/// The candidate library paths, in the order they are tried, from the
/// environment (`ORT_DYLIB_PATH`, `SAMCLIPSEG_DEV_ORT`) and the installation
/// this code runs from.
pub fn candidates() -> Vec<PathBuf> {
    let private = crate::installed::layout()
        .map(|l| l.private_lib_dirs.as_slice())
        .unwrap_or_default();
    candidates_for(
        std::env::var_os("ORT_DYLIB_PATH"),
        std::env::var_os(DEV_ORT_VAR).is_some_and(|v| v == "1"),
        private,
    )
}

/// [`candidates`] for a given `ORT_DYLIB_PATH`, whether the source tree's
/// copy may be used, and an installation's private library directories.
pub fn candidates_for(
    ort_dylib_path: Option<OsString>,
    dev_tree: bool,
    private_dirs: &[PathBuf],
) -> Vec<PathBuf> {
    if let Some(p) = ort_dylib_path.filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    let mut out = Vec::new();
    if dev_tree {
        out.extend(libraries_in(Path::new(SETUP_DIR)));
    }
    for dir in private_dirs {
        out.extend(libraries_in(dir));
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
        Err(f) => Err(f.error()),
    }
}

/// The path of the loaded library, if it loaded.
pub fn library_path() -> Option<&'static Path> {
    ENVIRONMENT.get()?.as_ref().ok().map(|l| l.path.as_path())
}

/// Why no library loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LoadFailure {
    /// Every candidate was absent, or needs a library that is absent.
    Missing { library: String, hint: String },
    /// A library was there and did not load or start.
    Broken(String),
}

impl LoadFailure {
    fn error(&self) -> Error {
        match self {
            LoadFailure::Missing { library, hint } => Error::MissingLibrary {
                library: library.clone(),
                hint: hint.clone(),
            },
            LoadFailure::Broken(m) => Error::RuntimeLibrary(m.clone()),
        }
    }
}

/// One candidate that did not load.
struct Attempt {
    /// The candidate and why it did not load.
    tried: String,
    /// The library that is absent, where that is why: the candidate itself,
    /// or a library it needs.
    absent: Option<String>,
}

fn load() -> std::result::Result<Loaded, LoadFailure> {
    let mut attempts = Vec::new();
    for path in candidates() {
        match ort::init_from(&path) {
            Ok(builder) => {
                let env = builder
                    .with_name("samclipseg")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| {
                        LoadFailure::Broken(format!(
                            "{} loaded but failed to start: {e}",
                            path.display()
                        ))
                    })?;
                log::info!("ONNX Runtime loaded from {}", path.display());
                return Ok(Loaded { path, env });
            }
            Err(e) => attempts.push(attempt(&path, &e)),
        }
    }
    Err(failure(&attempts))
}

fn attempt(path: &Path, e: &ort::LoadDynamicError) -> Attempt {
    let ort::LoadDynamicError::Dlopen { error, .. } = e else {
        // It opened: a library that is not ONNX Runtime, or not a version ort supports.
        return Attempt {
            tried: format!("{}: {e}", path.display()),
            absent: None,
        };
    };
    // libloading's message is only "dlopen failed"; the reason is its source.
    let reason = std::error::Error::source(error)
        .map(|s| s.to_string())
        .unwrap_or_default();
    // A path (not a bare name for the linker to search) that is not there is
    // absent; otherwise the dynamic linker says which library it did not find.
    let named = path.components().count() > 1;
    let absent = if named && !path.exists() {
        Some(path.display().to_string())
    } else {
        absent_library(&reason).map(str::to_string)
    };
    Attempt {
        tried: format!("{}: {e}: {reason}", path.display()),
        absent,
    }
}

/// What the failed `attempts` mean: ONNX Runtime is missing when every
/// candidate was absent or needs an absent library; a candidate that is there
/// and still did not load is a broken library.
fn failure(attempts: &[Attempt]) -> LoadFailure {
    let tried: Vec<&str> = attempts.iter().map(|a| a.tried.as_str()).collect();
    let hint = format!("tried {}; {INSTALL_HINT}", tried.join("; "));
    let absent: Option<Vec<&str>> = attempts.iter().map(|a| a.absent.as_deref()).collect();
    match absent {
        Some(absent) if !absent.is_empty() => {
            // A library ONNX Runtime needs, where that is what is absent.
            let needed = absent.iter().find(|lib| {
                !Path::new(lib)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            });
            let library = match (needed, absent.as_slice()) {
                (Some(lib), _) => format!("{lib}, which ONNX Runtime needs,"),
                // The one candidate: the library ORT_DYLIB_PATH names.
                (None, [lib]) => format!("the ONNX Runtime library ({lib})"),
                (None, _) => "the ONNX Runtime library (libonnxruntime.so)".into(),
            };
            LoadFailure::Missing { library, hint }
        }
        _ => LoadFailure::Broken(hint),
    }
}

/// The library that the dynamic linker did not find, from its message
/// (`dlerror`): `NAME: cannot open shared object file: No such file or
/// directory`, also inside a longer message. None for any other failure, such
/// as a library that is there but is not a valid one, or lacks a symbol.
pub(crate) fn absent_library(dlerror: &str) -> Option<&str> {
    let (before, _) = dlerror.split_once(": cannot open shared object file")?;
    let name = before
        .rsplit(|c: char| c.is_whitespace() || c == '(' || c == '`')
        .next()?;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_tree(c: &[PathBuf]) -> bool {
        c.iter().any(|p| p.starts_with(env!("CARGO_MANIFEST_DIR")))
    }

    #[test]
    fn the_source_tree_is_searched_only_when_asked() {
        let without = candidates_for(None, false, &[]);
        assert!(!in_tree(&without), "{without:?}");
        assert_eq!(without.last(), Some(&PathBuf::from("libonnxruntime.so")));
        if libraries_in(Path::new(SETUP_DIR)).is_empty() {
            println!("{SETUP_DIR} has no library (no `make deps`): the opt-in case is not checked");
        } else {
            let with = candidates_for(None, true, &[]);
            assert!(with[0].starts_with(SETUP_DIR), "{with:?}");
        }
    }

    #[test]
    fn an_installation_s_private_copy_comes_before_the_system_s() {
        let dir =
            std::env::temp_dir().join(format!("samclipseg-private-ort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lib = dir.join("libonnxruntime.so.1.24.1");
        std::fs::write(&lib, b"").unwrap();
        std::fs::write(dir.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        let private = [dir.join("absent"), dir.clone()];
        let c = candidates_for(None, false, &private);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c[0], lib, "{c:?}");
        assert_eq!(c.iter().filter(|p| p.starts_with(&dir)).count(), 1, "{c:?}");
        // The developer's opt-in still comes first; a named library stays the only one.
        if !libraries_in(Path::new(SETUP_DIR)).is_empty() {
            let c = candidates_for(None, true, &private);
            assert!(c[0].starts_with(SETUP_DIR), "{c:?}");
        }
        let named = OsString::from("/opt/ort/libonnxruntime.so.1");
        assert_eq!(
            candidates_for(Some(named.clone()), false, &private),
            [PathBuf::from(named)]
        );
    }

    #[test]
    fn a_named_library_is_the_only_candidate() {
        let named = OsString::from("/opt/ort/libonnxruntime.so.1.23.0");
        assert_eq!(
            candidates_for(Some(named.clone()), true, &[]),
            [PathBuf::from(&named)]
        );
        // Empty is unset.
        assert_eq!(
            candidates_for(Some(OsString::new()), false, &[]),
            candidates_for(None, false, &[])
        );
    }

    fn absent(tried: &str, absent: Option<&str>) -> Attempt {
        Attempt {
            tried: tried.into(),
            absent: absent.map(str::to_string),
        }
    }

    #[test]
    fn the_linker_names_the_absent_library() {
        let m = "Failed to load library libonnxruntime_providers_cuda.so with error: \
                 libcublasLt.so.12: cannot open shared object file: No such file or directory";
        assert_eq!(absent_library(m), Some("libcublasLt.so.12"));
        assert_eq!(
            absent_library(
                "/opt/ort/libonnxruntime.so: cannot open shared object file: No such file or directory"
            ),
            Some("/opt/ort/libonnxruntime.so")
        );
        // There, but not loadable: not an absence.
        assert_eq!(
            absent_library("libfoo.so: undefined symbol: cudnnGetVersion"),
            None
        );
        assert_eq!(absent_library("/tmp/x.so: invalid ELF header"), None);
        assert_eq!(absent_library("/tmp/x.so: file too short"), None);
    }

    #[test]
    fn onnx_runtime_is_missing_only_when_no_candidate_is_there() {
        let gone = absent("libonnxruntime.so: ...", Some("libonnxruntime.so"));
        match failure(&[gone]) {
            LoadFailure::Missing { library, hint } => {
                assert!(library.contains("libonnxruntime.so"), "{library}");
                assert!(hint.contains("tried libonnxruntime.so") && hint.contains("make deps"));
            }
            other => panic!("{other:?}"),
        }
        // A library ONNX Runtime needs is named as the missing one.
        let dep = absent(
            "/usr/lib/libonnxruntime.so.1: ...",
            Some("libopenvino.so.2500"),
        );
        let gone = absent("libonnxruntime.so: ...", Some("libonnxruntime.so"));
        match failure(&[dep, gone]) {
            LoadFailure::Missing { library, .. } => {
                assert!(library.starts_with("libopenvino.so.2500"), "{library}")
            }
            other => panic!("{other:?}"),
        }
        // One candidate there but broken makes it a failure.
        let broken = absent("/usr/lib/libonnxruntime.so.1: invalid ELF header", None);
        let gone = absent("libonnxruntime.so: ...", Some("libonnxruntime.so"));
        assert!(matches!(
            failure(&[broken, gone]),
            LoadFailure::Broken(m) if m.contains("invalid ELF header")
        ));
        assert!(matches!(failure(&[]), LoadFailure::Broken(_)));
    }
}
