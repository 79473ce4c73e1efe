//! `make install DESTDIR=... PREFIX=/usr` lays out the plugin, its private
//! ONNX Runtime, the studio and the toy bundle where docs/install.md says, and
//! the staged plugin, run from there by gst-launch-1.0 with none of the
//! project's variables set, finds its ONNX Runtime and its default bundle
//! beside itself (src/installed.rs) and masks the toy scene's red circle.
//! tests/debian/package.sh does the same with the Debian package in a Debian
//! root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TREE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The plugin's shared object that cargo built with this test, beside it in
/// `<target>/<profile>/deps/` (the library is compiled once, as rlib and
/// cdylib).
fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let so = exe.parent().unwrap().join("libgstsamclipseg.so");
    assert!(so.is_file(), "cargo did not build {}", so.display());
    so
}

fn output(cmd: &mut Command) -> (String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn system_pluginsdir() -> String {
    let (dir, _) =
        output(Command::new("pkg-config").args(["--variable=pluginsdir", "gstreamer-1.0"]));
    dir.trim().to_string()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A gst tool on the staged plugin only: no project variable, a registry of
/// its own, and a home without a SAM 3 bundle.
fn gst_tool(tool: &str, stage: &Path, pluginsdir: &Path) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env_remove("SAMCLIPSEG_DEV_ORT")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", stage.join("home"))
        .env("GST_PLUGIN_PATH", pluginsdir)
        .env("GST_REGISTRY", stage.join("registry.bin"));
    cmd
}

#[test]
fn make_install_lays_out_a_plugin_that_finds_its_own_files() {
    let stage = std::env::temp_dir().join(format!("samclipseg-install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage);
    let root = stage.join("root");
    // The studio is a release-only build: a stand-in takes its place here
    // (its own lookup is src/installed.rs's unit tests').
    let studio = stage.join("samclipseg-studio");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(&studio, "#!/bin/sh\n").unwrap();

    output(
        Command::new("make")
            .current_dir(TREE)
            .arg("-s")
            .arg("install")
            .arg(format!("DESTDIR={}", root.display()))
            .arg("PREFIX=/usr")
            .arg(format!("PLUGIN_SO={}", built_plugin().display()))
            .arg(format!("STUDIO_BIN={}", studio.display())),
    );

    // The layout.
    let staged = |p: &str| root.join(p.trim_start_matches('/'));
    let pluginsdir = staged(&system_pluginsdir());
    let plugin = pluginsdir.join("libgstsamclipseg.so");
    assert!(plugin.is_file(), "no {}", plugin.display());
    assert_eq!(mode(&plugin), 0o644);
    let private = pluginsdir.parent().unwrap().join("samclipseg");
    let ort: Vec<PathBuf> = files_under(&private);
    assert!(
        ort.iter().any(|p| p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("libonnxruntime.so.")),
        "no ONNX Runtime in {}: {ort:?}",
        private.display()
    );
    assert_eq!(mode(&staged("/usr/bin/samclipseg-studio")), 0o755);
    let toy = staged("/usr/share/samclipseg/toy-shapes-sam3");
    for f in [
        "bundle.toml",
        "text_encoder.onnx",
        "image_encoder.onnx",
        "image_encoder.int8.onnx",
        "image_encoder.int8_dynamic.onnx",
        "decoder.onnx",
        "tokenizer.json",
        "vocabulary.txt",
        "golden/scene.png",
        "golden/clip/frame-000.png",
    ] {
        assert!(toy.join(f).is_file(), "toy bundle: no {f}");
    }
    assert!(
        !toy.join("reference").exists(),
        "the PyTorch weights are not installed"
    );
    for f in files_under(&root) {
        assert!(
            f.starts_with(root.join("usr")),
            "outside PREFIX: {}",
            f.display()
        );
    }

    // The staged plugin, found by GStreamer, names the staged toy bundle as
    // its default.
    let (inspect, _) = output(gst_tool("gst-inspect-1.0", &stage, &pluginsdir).arg("samclipseg"));
    assert!(
        inspect.contains(&format!("Default: \"{}\"", toy.display())),
        "the default bundle is not the installed toy bundle:\n{inspect}"
    );

    // ...and runs it, with the ONNX Runtime beside it, on the toy scene.
    let alpha = stage.join("alpha.png");
    let (_, log) = output(
        gst_tool("gst-launch-1.0", &stage, &pluginsdir)
            .env("GST_DEBUG", "samclipseg:4")
            .env("GST_DEBUG_NO_COLOR", "1")
            .args(["-q", "filesrc"])
            .arg(format!(
                "location={}",
                toy.join("golden/scene.png").display()
            ))
            .args([
                "!",
                "pngdec",
                "!",
                "videoconvert",
                "!",
                "video/x-raw,format=RGBA",
            ])
            .args(["!", "samclipseg", "prompt=red circle", "output-mode=alpha"])
            .args(["!", "pngenc", "!", "filesink"])
            .arg(format!("location={}", alpha.display())),
    );
    assert!(
        log.contains(&format!("ONNX Runtime loaded from {}", private.display())),
        "ONNX Runtime did not come from {}:\n{log}",
        private.display()
    );
    let masked: Vec<bool> = image::open(&alpha)
        .unwrap()
        .to_rgba8()
        .pixels()
        .map(|p| p.0[3] > 127)
        .collect();
    let circle: Vec<bool> = image::open(toy.join("golden/scene-ids.png"))
        .unwrap()
        .to_luma8()
        .as_raw()
        .iter()
        .map(|id| *id == 1)
        .collect();
    let inter = masked
        .iter()
        .zip(&circle)
        .filter(|(a, b)| **a && **b)
        .count();
    let union = masked
        .iter()
        .zip(&circle)
        .filter(|(a, b)| **a || **b)
        .count();
    let iou = inter as f64 / union.max(1) as f64;
    assert!(iou >= 0.8, "alpha IoU with the red circle {iou:.3}");

    output(
        Command::new("make")
            .current_dir(TREE)
            .args(["-s", "uninstall", "PREFIX=/usr"])
            .arg(format!("DESTDIR={}", root.display())),
    );
    let left = files_under(&root);
    assert!(left.is_empty(), "make uninstall left {left:?}");
    std::fs::remove_dir_all(&stage).unwrap();
}
