//! Where an installed samclipseg keeps its own files, found from where its
//! code was loaded: no path is baked in at build time, so a staged install
//! (`make install DESTDIR=...`), the Debian package and a tree moved
//! elsewhere all work. `make install` lays out, for a `libdir` of
//! `PREFIX/lib/<multiarch>` (Debian) or `PREFIX/lib`:
//!
//! ```text
//! <libdir>/gstreamer-1.0/libgstsamclipseg.so   the plugin
//! <libdir>/samclipseg/                          its private ONNX Runtime
//! PREFIX/bin/samclipseg-studio                  the studio
//! PREFIX/share/samclipseg/toy-shapes-sam3/      the default bundle
//! ```
//!
//! Code that is not in that layout (the plugin or a program run from a build
//! tree, test binaries) has no [`Layout`], and nothing here changes how it
//! finds things.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The name of the private library directory (beside `gstreamer-1.0`) and of
/// the data directory under `PREFIX/share`.
pub const NAME: &str = "samclipseg";

/// The bundle `make install` puts in the data directory.
pub const TOY_BUNDLE: &str = "toy-shapes-sam3";

/// An installation, as seen from one of its binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `PREFIX`, where it could be told; `None` for a plugin directory that
    /// is not `<prefix>/lib[/<multiarch>]/gstreamer-1.0`.
    pub prefix: Option<PathBuf>,
    /// Where the private ONNX Runtime may be, in the order to try.
    pub private_lib_dirs: Vec<PathBuf>,
}

impl Layout {
    /// `PREFIX/share/samclipseg`.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.prefix.as_ref().map(|p| p.join("share").join(NAME))
    }

    /// The installed toy bundle's directory (whether or not it is there).
    pub fn toy_bundle(&self) -> Option<PathBuf> {
        self.data_dir().map(|d| d.join(TOY_BUNDLE))
    }
}

/// The layout of the installation that the code in `object` (a shared
/// object, or an executable) belongs to, from the path alone.
///
/// - `<dir>/gstreamer-1.0/<plugin>.so`: the private directory is
///   `<dir>/samclipseg`; `PREFIX` is `<dir>` less its `lib`, `lib64` or
///   `lib/<multiarch>`.
/// - `PREFIX/bin/<program>`: the private directory is looked for in
///   `PREFIX/lib/<multiarch>`, `PREFIX/lib64`, `PREFIX/lib`.
/// - anywhere else: not installed.
pub fn layout_for(object: &Path) -> Option<Layout> {
    let dir = object.parent()?;
    match dir.file_name().and_then(OsStr::to_str)? {
        "gstreamer-1.0" => {
            let libdir = dir.parent()?;
            Some(Layout {
                prefix: prefix_of_libdir(libdir),
                private_lib_dirs: vec![libdir.join(NAME)],
            })
        }
        "bin" => {
            let prefix = dir.parent()?;
            let lib = prefix.join("lib");
            let mut libdirs: Vec<PathBuf> = MULTIARCH.iter().map(|m| lib.join(m)).collect();
            libdirs.extend([prefix.join("lib64"), lib]);
            Some(Layout {
                prefix: Some(prefix.to_path_buf()),
                private_lib_dirs: libdirs.into_iter().map(|d| d.join(NAME)).collect(),
            })
        }
        _ => None,
    }
}

/// `PREFIX` for a library directory `PREFIX/lib`, `PREFIX/lib64`, `PREFIX/lib32`
/// or `PREFIX/lib/<multiarch>`.
fn prefix_of_libdir(libdir: &Path) -> Option<PathBuf> {
    let is_lib = |p: &Path| {
        p.file_name()
            .and_then(OsStr::to_str)
            .is_some_and(|n| matches!(n, "lib" | "lib64" | "lib32"))
    };
    if is_lib(libdir) {
        return libdir.parent().map(Path::to_path_buf);
    }
    let parent = libdir.parent()?;
    if parent.file_name() == Some(OsStr::new("lib")) {
        parent.parent().map(Path::to_path_buf)
    } else {
        None
    }
}

/// Debian's multiarch directory name for this build's target, where it has one.
const MULTIARCH: Option<&str> = if cfg!(not(all(target_os = "linux", target_env = "gnu"))) {
    None
} else if cfg!(target_arch = "x86_64") {
    Some("x86_64-linux-gnu")
} else if cfg!(target_arch = "aarch64") {
    Some("aarch64-linux-gnu")
} else if cfg!(target_arch = "x86") {
    Some("i386-linux-gnu")
} else if cfg!(target_arch = "riscv64") {
    Some("riscv64-linux-gnu")
} else {
    None
};

/// The installation this code runs from, if it is one (computed once).
pub fn layout() -> Option<&'static Layout> {
    static LAYOUT: OnceLock<Option<Layout>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| own_object().and_then(|o| layout_for(&o)))
        .as_ref()
}

/// The file this code was loaded from: the plugin's shared object when
/// GStreamer loaded it, else the program.
fn own_object() -> Option<PathBuf> {
    let object = containing_shared_object().or_else(|| std::env::current_exe().ok())?;
    // Through symbolic links (a plugin linked into a plugin directory) to
    // where its installation really is.
    Some(object.canonicalize().unwrap_or(object))
}

/// The shared object holding this function, or `None` when it is the
/// program itself (glibc then names `argv[0]`, which may not be a path).
fn containing_shared_object() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: Dl_info is pointers and integers, for which zero is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = containing_shared_object as *const libc::c_void;
    // SAFETY: dladdr only reads the address and writes into `info`; on
    // success `dli_fname` is a C string owned by the dynamic linker that
    // lives as long as the object, which holds this very function.
    let found = unsafe { libc::dladdr(here, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: as above, a valid NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(OsStr::from_bytes(name.to_bytes()));
    let file = path.file_name()?.to_str()?;
    (file.ends_with(".so") || file.contains(".so.")).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(path: &str) -> Option<Layout> {
        layout_for(Path::new(path))
    }

    #[test]
    fn a_plugin_in_a_multiarch_plugin_directory() {
        let l = layout("/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstsamclipseg.so").unwrap();
        assert_eq!(l.prefix, Some(PathBuf::from("/usr")));
        assert_eq!(
            l.private_lib_dirs,
            [PathBuf::from("/usr/lib/x86_64-linux-gnu/samclipseg")]
        );
        assert_eq!(
            l.toy_bundle(),
            Some(PathBuf::from("/usr/share/samclipseg/toy-shapes-sam3"))
        );
    }

    #[test]
    fn a_plugin_under_lib_or_lib64() {
        let l = layout("/opt/s/lib/gstreamer-1.0/libgstsamclipseg.so").unwrap();
        assert_eq!(l.prefix, Some(PathBuf::from("/opt/s")));
        assert_eq!(l.private_lib_dirs, [PathBuf::from("/opt/s/lib/samclipseg")]);
        let l = layout("/opt/s/lib64/gstreamer-1.0/libgstsamclipseg.so").unwrap();
        assert_eq!(l.prefix, Some(PathBuf::from("/opt/s")));
    }

    #[test]
    fn a_plugin_directory_without_a_prefix_still_has_its_private_directory() {
        let l = layout("/home/u/.local/share/gstreamer-1.0/plugins/libgstsamclipseg.so");
        assert_eq!(l, None, "the directory is plugins/, not gstreamer-1.0/");
        let l = layout("/srv/plugins/gstreamer-1.0/libgstsamclipseg.so").unwrap();
        assert_eq!(l.prefix, None);
        assert_eq!(l.data_dir(), None);
        assert_eq!(
            l.private_lib_dirs,
            [PathBuf::from("/srv/plugins/samclipseg")]
        );
    }

    #[test]
    fn a_program_in_bin() {
        let l = layout("/usr/local/bin/samclipseg-studio").unwrap();
        assert_eq!(l.prefix, Some(PathBuf::from("/usr/local")));
        let dirs = &l.private_lib_dirs;
        assert_eq!(
            dirs.last(),
            Some(&PathBuf::from("/usr/local/lib/samclipseg"))
        );
        assert!(dirs.contains(&PathBuf::from("/usr/local/lib64/samclipseg")));
        if cfg!(all(
            target_os = "linux",
            target_env = "gnu",
            target_arch = "x86_64"
        )) {
            assert_eq!(
                dirs[0],
                PathBuf::from("/usr/local/lib/x86_64-linux-gnu/samclipseg")
            );
        }
    }

    #[test]
    fn a_build_tree_is_not_an_installation() {
        assert_eq!(
            layout("/src/samclipseg/target/release/libgstsamclipseg.so"),
            None
        );
        assert_eq!(
            layout("/src/samclipseg/target/release/samclipseg-studio"),
            None
        );
        assert_eq!(
            layout("/src/samclipseg/target/debug/deps/runtime-0123abcd"),
            None
        );
        assert_eq!(layout("libgstsamclipseg.so"), None);
    }

    #[test]
    fn this_test_program_is_not_installed() {
        // The unit-test binary lives in target/<profile>/deps.
        assert_eq!(super::layout(), None);
        let exe = own_object().unwrap();
        assert!(exe.is_absolute() && exe.exists(), "{}", exe.display());
    }
}
