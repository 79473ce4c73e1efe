//! The PyTorch reference side: `engines/bench_reference.py --serve` run as a
//! child whose passes alternate with ours (so both sides see the same load),
//! and the JSON timings it leaves. Each configuration it runs is a named
//! [`Variant`]; another precision is one more entry in [`VARIANTS`].

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;

use crate::args::{Args, repo};
use crate::error::BoxResult;
use crate::stats::Stats;

/// One configuration of the reference, compared with ours in its own columns.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Its name in the comparison table's header.
    pub name: &'static str,
    /// Its name in `--reference-variants`.
    pub key: &'static str,
    /// The file under `--work` that its JSON goes to.
    pub json: &'static str,
    /// Arguments of bench_reference.py besides the bundle, threads, photo and prompt.
    pub args: &'static [&'static str],
    /// Runs bf16 arithmetic: emulated, and slower than fp32, on a CPU without
    /// AMX-BF16 or AVX512-BF16.
    pub bf16: bool,
}

/// What `--reference` can run, in column order; `--reference-json` stands for the first.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "PyTorch fp32",
        key: "fp32",
        json: "reference.json",
        args: &[],
        bf16: false,
    },
    // The strongest CPU peers of our reduced precisions where the CPU has
    // bf16: the model in bf16, and fp32 weights under autocast.
    Variant {
        name: "PyTorch bf16",
        key: "bf16",
        json: "reference-bf16.json",
        args: &["--precision", "bf16"],
        bf16: true,
    },
    Variant {
        name: "PyTorch autocast",
        key: "autocast",
        json: "reference-autocast.json",
        args: &["--precision", "autocast"],
        bf16: true,
    },
];

/// The variants to run: those `--reference-variants` names, else every one
/// on a CPU with native bf16 and the fp32 one elsewhere, where PyTorch's bf16
/// is emulated (on an AVX2-only EPYC several times slower than its fp32) and
/// so never the fastest peer. The note says what was left out and why.
pub fn chosen(asked: Option<&[String]>, native_bf16: bool) -> (Vec<Variant>, Option<String>) {
    if let Some(keys) = asked {
        let picked = VARIANTS
            .iter()
            .filter(|v| keys.iter().any(|k| k == v.key))
            .copied()
            .collect();
        return (picked, None);
    }
    let (run, skipped): (Vec<Variant>, Vec<Variant>) =
        VARIANTS.iter().partition(|v| native_bf16 || !v.bf16);
    let note = (!skipped.is_empty()).then(|| {
        let names: Vec<&str> = skipped.iter().map(|v| v.name).collect();
        format!(
            "{} not run: this CPU has no AMX-BF16 or AVX512-BF16, so PyTorch emulates bf16, slower \
             than its fp32 (--reference-variants fp32,bf16,autocast runs them)",
            names.join(" and ")
        )
    });
    (run, note)
}

/// The reference peer: the fastest configuration by `frame` (its whole-frame
/// time), with that time.
pub fn fastest(refs: &[Reference], frame: impl Fn(&Reference) -> f64) -> Option<(&Reference, f64)> {
    refs.iter()
        .map(|r| (r, frame(r)))
        .filter(|(_, t)| t.is_finite() && *t > 0.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// One variant's timings, as read from its JSON.
#[derive(Debug, Clone)]
pub struct Reference {
    pub name: &'static str,
    /// By bench_reference.py stage key (`stages::STAGES` maps our rows to them).
    pub stages: BTreeMap<String, Stats>,
    /// Versions, threads and passes: the line above the comparison table.
    pub summary: String,
}

impl Reference {
    pub fn read(name: &'static str, path: &Path) -> BoxResult<Reference> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the reference timings {}: {e}", path.display()))?;
        Reference::from_json(name, &text).map_err(|e| format!("{}: {e}", path.display()).into())
    }

    fn from_json(name: &'static str, text: &str) -> Result<Reference, String> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("not JSON from bench_reference.py: {e}"))?;
        let mut stages = BTreeMap::new();
        if let Some(obj) = v["stages"].as_object() {
            for (k, s) in obj {
                if let (Some(median), Some(p90)) = (s["median_ms"].as_f64(), s["p90_ms"].as_f64()) {
                    stages.insert(k.clone(), Stats { median, p90 });
                }
            }
        }
        if stages.is_empty() {
            return Err("no stage timings".into());
        }
        let summary = format!(
            "PyTorch {} / transformers {}, attention {}, {} threads, {} passes{}, {} instance(s) kept",
            v["torch"].as_str().unwrap_or("?"),
            v["transformers"].as_str().unwrap_or("?"),
            v["attention"].as_str().unwrap_or("?"),
            v["threads"],
            v["iters"],
            if v["interleaved"].as_bool() == Some(true) {
                " alternating with ours"
            } else {
                ""
            },
            v["kept"],
        );
        Ok(Reference {
            name,
            stages,
            summary,
        })
    }
}

/// The reference variants that part A runs beside ours, one server each.
pub struct Servers(Vec<Server>);

impl Servers {
    /// Starts every variant when `--reference` asks to run them (none when
    /// `--reference-json` gives earlier timings instead).
    pub fn start(a: &Args, png: &Path, native_bf16: bool) -> BoxResult<Servers> {
        if !a.reference || a.reference_json.is_some() {
            return Ok(Servers(Vec::new()));
        }
        let (variants, note) = chosen(a.reference_variants.as_deref(), native_bf16);
        if let Some(note) = note {
            println!("(Reference: {note}.)");
        }
        let servers = variants
            .iter()
            .map(|v| Server::start(a, png, v))
            .collect::<BoxResult<_>>()?;
        Ok(Servers(servers))
    }

    /// One pass of every variant, after one of ours.
    pub fn pass(&mut self) -> BoxResult<()> {
        self.0.iter_mut().try_for_each(Server::pass)
    }

    /// The references to compare with: the servers' JSON once they have
    /// finished, or the file `--reference-json` names.
    pub fn finish(self, a: &Args) -> BoxResult<Vec<Reference>> {
        if let Some(path) = &a.reference_json {
            return Ok(vec![Reference::read(VARIANTS[0].name, path)?]);
        }
        self.0
            .into_iter()
            .map(|s| {
                let name = s.variant.name;
                Reference::read(name, &s.finish()?)
            })
            .collect()
    }
}

/// One `bench_reference.py --serve`: one pass of its stages per `pass` line.
struct Server {
    variant: Variant,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    json: PathBuf,
}

impl Server {
    fn start(a: &Args, png: &Path, variant: &Variant) -> BoxResult<Server> {
        let json = a.work.join(variant.json);
        let script = repo().join("engines/bench_reference.py");
        eprintln!(
            "[bench] starting the PyTorch reference ({}): {} {}",
            variant.name,
            a.python.display(),
            script.display()
        );
        let mut child = Command::new(&a.python)
            .arg(&script)
            .arg(&a.bundle)
            .args(["--threads", &a.threads.to_string()])
            .arg("--image")
            .arg(png)
            .args(["--prompt", &a.prompt])
            .arg("--json")
            .arg(&json)
            .args(variant.args)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}); install the Python tooling with `make engines-deps`",
                    a.python.display()
                )
            })?;
        let stdin = child.stdin.take().ok_or("no stdin pipe to the reference")?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout pipe from the reference")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line == "READY" || line.starts_with("PASS ") {
                    if tx.send(line).is_err() {
                        break;
                    }
                } else {
                    // Its progress goes to our stderr; the tables stay on stdout.
                    eprintln!("{line}");
                }
            }
        });
        let mut server = Server {
            variant: *variant,
            child,
            stdin,
            lines,
            json,
        };
        server.expect_line("READY")?;
        Ok(server)
    }

    fn expect_line(&mut self, prefix: &str) -> BoxResult<String> {
        match self.lines.recv() {
            Ok(line) if line.starts_with(prefix) => Ok(line),
            Ok(line) => Err(format!("unexpected line from the reference: {line}").into()),
            Err(_) => {
                let status = self.child.wait()?;
                Err(format!(
                    "engines/bench_reference.py stopped ({status}); its messages are above"
                )
                .into())
            }
        }
    }

    fn pass(&mut self) -> BoxResult<()> {
        writeln!(self.stdin, "pass")?;
        self.stdin.flush()?;
        self.expect_line("PASS ")?;
        Ok(())
    }

    /// Ends the reference; it writes its JSON, whose path this returns.
    fn finish(mut self) -> BoxResult<PathBuf> {
        writeln!(self.stdin, "done")?;
        drop(self.stdin);
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("engines/bench_reference.py failed ({status})").into());
        }
        Ok(self.json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stage_timings_and_the_summary() {
        let json = r#"{"torch": "2.15.0", "transformers": "5.23.0", "attention": "sdpa",
            "threads": 2, "iters": 10, "interleaved": true, "kept": 6,
            "stages": {"decoder": {"median_ms": 4129.0, "p90_ms": 4500.5},
                       "tokenise": {"median_ms": 0.6, "p90_ms": 0.7},
                       "broken": {"median_ms": "x"}}}"#;
        let r = Reference::from_json("PyTorch", json).expect("valid reference JSON");
        assert_eq!(r.stages.len(), 2, "a stage without numbers is skipped");
        assert_eq!(
            r.stages["decoder"],
            Stats {
                median: 4129.0,
                p90: 4500.5
            }
        );
        assert_eq!(
            r.summary,
            "PyTorch 2.15.0 / transformers 5.23.0, attention sdpa, 2 threads, 10 passes \
             alternating with ours, 6 instance(s) kept"
        );
    }

    #[test]
    fn refuses_json_without_stages() {
        assert!(Reference::from_json("PyTorch", r#"{"stages": {}}"#).is_err());
        assert!(Reference::from_json("PyTorch", "not json").is_err());
    }

    #[test]
    fn variants_have_distinct_names_and_files() {
        for (i, v) in VARIANTS.iter().enumerate() {
            for w in &VARIANTS[i + 1..] {
                assert!(
                    v.name != w.name && v.key != w.key && v.json != w.json,
                    "{v:?} vs {w:?}"
                );
            }
        }
    }

    #[test]
    fn emulated_bf16_peers_are_left_out_unless_asked() {
        let names = |(v, _): &(Vec<Variant>, Option<String>)| -> Vec<&str> {
            v.iter().map(|v| v.name).collect()
        };
        let native = chosen(None, true);
        assert_eq!(names(&native).len(), VARIANTS.len());
        assert!(native.1.is_none());
        let avx2 = chosen(None, false);
        assert_eq!(names(&avx2), ["PyTorch fp32"]);
        let note = avx2.1.expect("a note on what was left out");
        assert!(
            note.contains("PyTorch bf16 and PyTorch autocast") && note.contains("emulates"),
            "{note}"
        );
        let asked = chosen(Some(&["autocast".to_string(), "fp32".to_string()]), false);
        assert_eq!(names(&asked), ["PyTorch fp32", "PyTorch autocast"]);
    }

    #[test]
    fn the_peer_is_the_fastest_configuration() {
        let r = |name, ms: f64| Reference {
            name,
            stages: [(
                "image_encoder".to_string(),
                Stats {
                    median: ms,
                    p90: ms,
                },
            )]
            .into(),
            summary: String::new(),
        };
        let refs = [
            r("PyTorch fp32", 3070.0),
            r("PyTorch bf16", 9100.0),
            r("PyTorch autocast", 0.0),
        ];
        let frame = |x: &Reference| x.stages["image_encoder"].median;
        let (peer, ms) = fastest(&refs, frame).expect("a peer");
        assert_eq!(
            (peer.name, ms),
            ("PyTorch fp32", 3070.0),
            "a configuration without timings is no peer"
        );
        assert!(fastest(&[], frame).is_none());
    }
}
