//! Where ONNX Runtime is looked for, as the environment decides it: the source
//! tree's `.deps/onnxruntime` only when `SAMCLIPSEG_DEV_ORT=1`, so an
//! installed plugin never loads a library from a build tree. Checked in child
//! processes, because cargo sets the variable for this one.

use std::path::Path;
use std::process::Command;

use samclipseg::model::runtime::{DEV_ORT_VAR, SETUP_DIR, candidates};

#[test]
#[ignore = "run by the tests below in a child process"]
fn child_prints_candidates() {
    for c in candidates() {
        println!("CANDIDATE {}", c.display());
    }
}

fn child_candidates(dev: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child_prints_candidates",
        "--ignored",
        "--nocapture",
    ])
    .env_remove("ORT_DYLIB_PATH")
    .env_remove(DEV_ORT_VAR);
    if let Some(v) = dev {
        cmd.env(DEV_ORT_VAR, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "child failed: {stdout}");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("CANDIDATE "))
        .map(str::to_string)
        .collect()
}

#[test]
fn without_the_variable_the_source_tree_is_not_searched() {
    let tree = env!("CARGO_MANIFEST_DIR");
    for dev in [None, Some("0"), Some("")] {
        let c = child_candidates(dev);
        assert!(!c.is_empty(), "{dev:?}: no candidates at all");
        assert!(
            c.iter().all(|p| !p.starts_with(tree)),
            "{dev:?}: a build-tree path is searched: {c:?}"
        );
    }
}

#[test]
fn with_the_variable_the_source_tree_comes_first() {
    let has_lib = std::fs::read_dir(SETUP_DIR).is_ok_and(|mut d| {
        d.any(|e| {
            e.is_ok_and(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("libonnxruntime.so")
            })
        })
    });
    if !has_lib {
        println!("{SETUP_DIR} has no library (no `make deps`): nothing to find there");
        return;
    }
    let c = child_candidates(Some("1"));
    assert!(Path::new(&c[0]).starts_with(SETUP_DIR), "{c:?}");
}
