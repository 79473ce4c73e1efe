//! Which arithmetic the CPU backend runs the image encoder and decoder in,
//! chosen at run time from what this CPU does natively and what the bundle
//! holds.
//!
//! - `fp32`: the bundle's float engines on ONNX Runtime's CPU provider, the
//!   path whose results match the PyTorch reference number for number.
//! - `bf16`: the same files through ONNX Runtime's OpenVINO execution provider
//!   with bf16 arithmetic; only on CPUs with AMX-BF16 or AVX512-BF16, where it
//!   is native (elsewhere OpenVINO would emulate it, slower than fp32).
//! - `int8`, one of two routes ([`Int8Route`]), each with its own files
//!   (`engines/quantize_bundle.py` writes both):
//!   - static: the bundle's `int8` variants (static QDQ, calibrated) through
//!     OpenVINO, their float parts in bf16 where the CPU has it; on CPUs with
//!     AMX-INT8 or VNNI (AVX512-VNNI, AVX-VNNI).
//!   - dynamic: the bundle's `int8_dynamic` variants (weights int8 per
//!     tensor, activations quantised as they run) on ONNX Runtime's CPU
//!     provider; on CPUs with AVX2 but no VNNI, and on VNNI CPUs whose bundle
//!     has no static variant.
//! - `auto` (default): static int8 when the CPU and the bundle allow it, else
//!   bf16 when the CPU allows it, else dynamic int8 when the CPU has AVX2 (or
//!   VNNI) and the bundle has it, else fp32.
//!
//! Why two int8 routes. On an AMX Xeon (medium bundle's image encoder, 2
//! threads; engines/BENCHMARK.md) ONNX Runtime's CPU provider runs the
//! dynamically quantised encoder 2.6x faster than fp32, OpenVINO runs the
//! fp32 file in bf16 3.2x faster and the QDQ int8 file 4.2x faster: OpenVINO
//! wins there. On an AVX2-only AMD EPYC (no VNNI) the QDQ file through
//! OpenVINO is no faster than fp32 (2259 against 2210 ms), while ONNX
//! Runtime's dynamic int8 kernels (AVX2's u8 x s8 products) run it 1.6x
//! faster, and the decoder's 1.1-1.2x (engines/README.md, "int8 on AVX2").
//! The text encoder stays fp32: it runs once per prompt, its features are
//! cached, and its dynamic int8 file showed no clear gain (tens of ms).
//!
//! GPU backends ignore this: TensorRT's own `tensorrt-fp16` decides there.

use std::fmt;

use crate::error::{Error, Result};
use crate::model::bundle::Bundle;

/// The environment variable that replaces the CPU's flags for the choice
/// (tests, and trying what another CPU would get): a space- or comma-separated
/// list in `/proc/cpuinfo`'s spelling, e.g. `avx2 fma`.
pub const CPU_FLAGS_VAR: &str = "SAMCLIPSEG_CPU_FLAGS";

// The variant names are the bundle format's words; re-exported here, where
// the choice between them is made.
pub use crate::model::bundle::{INT8_DYNAMIC, INT8_STATIC};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "glib", derive(glib::Enum))]
#[cfg_attr(feature = "glib", enum_type(name = "GstSamClipSegPrecision"))]
#[repr(u32)]
pub enum Precision {
    #[default]
    #[cfg_attr(
        feature = "glib",
        enum_value(
            name = "Auto: int8 or bf16 where the CPU runs them natively, int8 on ONNX Runtime where \
                    it has AVX2 only, else fp32",
            nick = "auto"
        )
    )]
    Auto = 0,
    #[cfg_attr(
        feature = "glib",
        enum_value(name = "fp32: exact, ONNX Runtime's CPU provider", nick = "fp32")
    )]
    Fp32 = 1,
    #[cfg_attr(
        feature = "glib",
        enum_value(name = "bf16: OpenVINO, needs AMX-BF16 or AVX512-BF16", nick = "bf16")
    )]
    Bf16 = 2,
    #[cfg_attr(
        feature = "glib",
        enum_value(
            name = "int8: the bundle's int8 engines, static on OpenVINO with AMX-INT8 or VNNI, \
                    dynamic on ONNX Runtime's CPU provider with AVX2",
            nick = "int8"
        )
    )]
    Int8 = 3,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    pub fn from_name(name: &str) -> Option<Precision> {
        [
            Precision::Auto,
            Precision::Fp32,
            Precision::Bf16,
            Precision::Int8,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The first CPU's flags as `/proc/cpuinfo` lists them (empty where it cannot
/// be read): what the kernel says the CPU has, whatever CPUID shows a process.
pub fn cpuinfo_flags() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// What the CPU runs natively, from its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuCaps {
    pub bf16: bool,
    /// AMX-INT8 or VNNI: int8 products in one instruction.
    pub int8: bool,
    /// AVX2: ONNX Runtime's dynamic int8 kernels (u8 x s8 products through
    /// `vpmaddubsw`) beat fp32 even without VNNI, measured.
    pub avx2: bool,
    /// The flags that decided, for the log.
    pub evidence: String,
}

impl CpuCaps {
    /// This machine's, from `/proc/cpuinfo` (or [`CPU_FLAGS_VAR`]).
    pub fn detect() -> CpuCaps {
        if let Some(forced) = std::env::var_os(CPU_FLAGS_VAR) {
            let forced = forced.to_string_lossy().replace(',', " ");
            let mut caps = CpuCaps::from_flags(&forced);
            caps.evidence = format!("{CPU_FLAGS_VAR}: {}", caps.evidence);
            return caps;
        }
        CpuCaps::from_flags(&cpuinfo_flags().join(" "))
    }

    pub fn from_flags(flags: &str) -> CpuCaps {
        let has: Vec<&str> = flags.split_whitespace().collect();
        let found = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .filter(|n| has.contains(n))
                .map(|n| n.to_string())
                .collect()
        };
        let bf16 = found(&["amx_bf16", "avx512_bf16"]);
        let int8 = found(&["amx_int8", "avx512_vnni", "avx_vnni"]);
        let avx2 = has.contains(&"avx2");
        let mut evidence: Vec<String> = bf16.iter().chain(&int8).cloned().collect();
        if evidence.is_empty() {
            evidence.push("no AMX, AVX512-BF16 or VNNI".into());
            evidence.push(if avx2 { "but avx2" } else { "nor AVX2" }.into());
        }
        CpuCaps {
            bf16: !bf16.is_empty(),
            int8: !int8.is_empty(),
            avx2,
            evidence: evidence.join(" "),
        }
    }
}

/// Which int8 files a bundle has for its image encoder (where a frame's time
/// goes; the decoder may have its own, else it runs its fp32 file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Int8Files {
    /// `[engines.image_encoder.variants.int8]`: static QDQ, for OpenVINO.
    pub static_qdq: bool,
    /// `[engines.image_encoder.variants.int8_dynamic]`: for ONNX Runtime's CPU
    /// provider.
    pub dynamic: bool,
}

impl Int8Files {
    pub const NONE: Int8Files = Int8Files {
        static_qdq: false,
        dynamic: false,
    };
    pub const BOTH: Int8Files = Int8Files {
        static_qdq: true,
        dynamic: true,
    };

    pub fn of(bundle: &Bundle) -> Int8Files {
        Int8Files {
            static_qdq: bundle.has_variant(INT8_STATIC),
            dynamic: bundle.has_variant(INT8_DYNAMIC),
        }
    }

    fn any(self) -> bool {
        self.static_qdq || self.dynamic
    }
}

/// How int8 runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Route {
    /// The `int8` (static QDQ) files through OpenVINO.
    Static,
    /// The `int8_dynamic` files on ONNX Runtime's CPU provider.
    Dynamic,
}

impl Int8Route {
    /// The bundle variant this route runs.
    pub fn variant(self) -> &'static str {
        match self {
            Int8Route::Static => INT8_STATIC,
            Int8Route::Dynamic => INT8_DYNAMIC,
        }
    }
}

/// What the image encoder and decoder run in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Never `Auto`.
    pub precision: Precision,
    /// Which int8 files and runtime, when `precision` is `Int8`.
    pub int8: Option<Int8Route>,
    pub reason: String,
}

impl Choice {
    /// fp32, for `reason`.
    pub fn fp32(reason: impl Into<String>) -> Choice {
        Choice {
            precision: Precision::Fp32,
            int8: None,
            reason: reason.into(),
        }
    }

    /// Whether the image encoder and decoder run through OpenVINO (bf16,
    /// static int8), rather than ONNX Runtime's CPU provider.
    pub fn on_openvino(&self) -> bool {
        match self.precision {
            Precision::Auto | Precision::Fp32 => false,
            Precision::Bf16 => true,
            Precision::Int8 => self.int8 != Some(Int8Route::Dynamic),
        }
    }

    /// OpenVINO's `INFERENCE_PRECISION_HINT` for the float parts, or None
    /// for ONNX Runtime's CPU provider.
    pub fn openvino_hint(&self, caps: &CpuCaps) -> Option<&'static str> {
        if !self.on_openvino() {
            return None;
        }
        Some(match self.precision {
            Precision::Int8 if !caps.bf16 => "f32",
            _ => "bf16",
        })
    }
}

/// The engines of the video tracker that run once per object and frame (the
/// memory attention and the mask decoder), and so hold most of a tracked
/// frame's time. Where the choice runs OpenVINO in bf16 they run there too:
/// 2.6-2.8x faster per object on an AMX Xeon (engines/BENCHMARK.md, "Tracker
/// bench"). The mask prompt and the memory encoder stay fp32 on ONNX Runtime
/// (OpenVINO's provider refused the mask prompt's second input shape at run
/// time, and the memory encoder is a small share).
pub const TRACKER_BF16_ENGINES: [&str; 2] = ["tracker_memory_attention", "tracker_mask_decoder"];

/// The environment variable that replaces [`TRACKER_BF16_ENGINES`] (a space-
/// or comma-separated list of tracker engine keys): for tests (the fallback
/// of a run OpenVINO refuses) and for trying an engine on OpenVINO.
pub const TRACKER_BF16_VAR: &str = "SAMCLIPSEG_TRACKER_BF16_ENGINES";

/// [`TRACKER_BF16_ENGINES`], or what [`TRACKER_BF16_VAR`] says.
pub fn tracker_bf16_engines() -> Vec<String> {
    match std::env::var(TRACKER_BF16_VAR) {
        Ok(list) => list
            .split([' ', ','])
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => TRACKER_BF16_ENGINES.map(str::to_string).to_vec(),
    }
}

impl Choice {
    /// OpenVINO's hint for [`TRACKER_BF16_ENGINES`], or None for fp32 on
    /// ONNX Runtime: bf16 where the image encoder's float parts run in bf16
    /// (native bf16 only), else None.
    pub fn tracker_hint(&self, caps: &CpuCaps) -> Option<&'static str> {
        (self.openvino_hint(caps) == Some("bf16")).then_some("bf16")
    }
}

const DYNAMIC_HOW: &str = "dynamic int8 engines on ONNX Runtime's CPU provider";

/// Resolves `requested` on a CPU with `caps` for a bundle with `files`. An
/// explicit precision that this CPU or bundle cannot run natively is an error
/// saying what to do; `auto` says why it chose what it chose.
pub fn choose(requested: Precision, caps: &CpuCaps, files: Int8Files, gpu: bool) -> Result<Choice> {
    let refuse = |message: String| Error::InvalidInput(format!("precision={requested}: {message}"));
    let choice = |precision, reason: String| {
        Ok(Choice {
            precision,
            int8: None,
            reason,
        })
    };
    let int8 = |route, reason: String| {
        Ok(Choice {
            precision: Precision::Int8,
            int8: Some(route),
            reason,
        })
    };
    if gpu {
        return match requested {
            Precision::Auto | Precision::Fp32 => choice(
                Precision::Fp32,
                "GPU backend: its own settings decide (tensorrt-fp16)".into(),
            ),
            _ => Err(refuse(
                "reduced CPU precisions are for backend=cpu; on a GPU use tensorrt-fp16".into(),
            )),
        };
    }
    // The dynamic files pay wherever ONNX Runtime has fast int8 kernels:
    // VNNI, or AVX2 without it (measured 1.6x on an AVX2-only EPYC).
    let dynamic_pays = caps.int8 || caps.avx2;
    match requested {
        Precision::Fp32 => choice(Precision::Fp32, "asked for".into()),
        Precision::Bf16 if caps.bf16 => choice(
            Precision::Bf16,
            format!("asked for; CPU has {}", caps.evidence),
        ),
        Precision::Bf16 => Err(refuse(format!(
            "this CPU has no AMX-BF16 or AVX512-BF16 ({}), so bf16 would be emulated and slower \
             than fp32; use precision=auto or fp32",
            caps.evidence
        ))),
        Precision::Int8 if !files.any() => Err(refuse(
            "the bundle has no int8 engines; make them with `engines/quantize_bundle.py BUNDLE`, \
             or use precision=auto"
                .into(),
        )),
        Precision::Int8 if caps.int8 && files.static_qdq => int8(
            Int8Route::Static,
            format!(
                "asked for; CPU has {}: static int8 engines on OpenVINO",
                caps.evidence
            ),
        ),
        Precision::Int8 if dynamic_pays && files.dynamic => int8(
            Int8Route::Dynamic,
            format!("asked for; CPU has {}: {DYNAMIC_HOW}", caps.evidence),
        ),
        Precision::Int8 if dynamic_pays => Err(refuse(format!(
            "this CPU has no AMX-INT8 or VNNI ({}), where the bundle's static int8 engines are \
             no faster than fp32, and the bundle has no dynamic int8 engines, which are; make \
             them with `engines/quantize_bundle.py BUNDLE --kinds dynamic`, or use precision=auto \
             or fp32",
            caps.evidence
        ))),
        Precision::Int8 => Err(refuse(format!(
            "this CPU has no AMX-INT8, VNNI or AVX2 ({}), so int8 would be slower than fp32; use \
             precision=auto or fp32",
            caps.evidence
        ))),
        Precision::Auto => {
            if caps.int8 && files.static_qdq {
                int8(
                    Int8Route::Static,
                    format!(
                        "auto: CPU has {} and the bundle has static int8 engines (OpenVINO)",
                        caps.evidence
                    ),
                )
            } else if caps.bf16 {
                let why = if caps.int8 {
                    "the bundle has no static int8 engines"
                } else {
                    "no VNNI for int8"
                };
                choice(
                    Precision::Bf16,
                    format!("auto: CPU has {} ({why})", caps.evidence),
                )
            } else if dynamic_pays && files.dynamic {
                int8(
                    Int8Route::Dynamic,
                    format!("auto: CPU has {}: {DYNAMIC_HOW}", caps.evidence),
                )
            } else {
                let why = if dynamic_pays {
                    "; the bundle has no dynamic int8 engines (engines/quantize_bundle.py)"
                } else {
                    ""
                };
                choice(
                    Precision::Fp32,
                    format!(
                        "auto: {}{why}; fp32 is this CPU's fastest path",
                        caps.evidence
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XEON: &str = "fpu avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_int8 amx_tile";
    const VNNI_ONLY: &str = "fpu avx2 avx512f avx512_vnni";
    /// AMD Zen 2/3 (this project's EPYC build machines), Intel before Ice Lake.
    const AVX2_ONLY: &str = "fpu sse4_2 avx f16c avx2 fma";
    const OLD: &str = "fpu sse4_2 avx";

    const STATIC_ONLY: Int8Files = Int8Files {
        static_qdq: true,
        dynamic: false,
    };
    const DYNAMIC_ONLY: Int8Files = Int8Files {
        static_qdq: false,
        dynamic: true,
    };

    fn pick(requested: Precision, flags: &str, files: Int8Files) -> Result<Choice> {
        choose(requested, &CpuCaps::from_flags(flags), files, false)
    }

    #[test]
    fn flags_say_what_the_cpu_runs_natively() {
        let x = CpuCaps::from_flags(XEON);
        assert!(x.bf16 && x.int8 && x.avx2, "{x:?}");
        let v = CpuCaps::from_flags(VNNI_ONLY);
        assert!(!v.bf16 && v.int8);
        let a = CpuCaps::from_flags(AVX2_ONLY);
        assert!(!a.bf16 && !a.int8 && a.avx2, "{a:?}");
        assert!(a.evidence.contains("no AMX") && a.evidence.contains("avx2"));
        let o = CpuCaps::from_flags(OLD);
        assert!(!o.bf16 && !o.int8 && !o.avx2);
        assert!(o.evidence.contains("nor AVX2"), "{}", o.evidence);
    }

    #[test]
    fn auto_picks_the_fastest_native_path() {
        let auto = |flags, files| pick(Precision::Auto, flags, files).unwrap();
        let route = |c: &Choice| (c.precision, c.int8);
        use Int8Route::{Dynamic, Static};
        // VNNI and AMX machines: as before the dynamic files existed.
        assert_eq!(
            route(&auto(XEON, Int8Files::BOTH)),
            (Precision::Int8, Some(Static))
        );
        assert_eq!(
            route(&auto(XEON, STATIC_ONLY)),
            (Precision::Int8, Some(Static))
        );
        assert_eq!(route(&auto(XEON, DYNAMIC_ONLY)), (Precision::Bf16, None));
        assert_eq!(route(&auto(XEON, Int8Files::NONE)), (Precision::Bf16, None));
        assert_eq!(
            route(&auto(VNNI_ONLY, Int8Files::BOTH)),
            (Precision::Int8, Some(Static))
        );
        assert_eq!(
            route(&auto(VNNI_ONLY, Int8Files::NONE)),
            (Precision::Fp32, None)
        );
        // A VNNI CPU without bf16 whose bundle has only the dynamic files:
        // ONNX Runtime's VNNI kernels beat fp32.
        assert_eq!(
            route(&auto(VNNI_ONLY, DYNAMIC_ONLY)),
            (Precision::Int8, Some(Dynamic))
        );
        // AVX2 only: the dynamic files on ONNX Runtime, never the static ones.
        let avx2 = auto(AVX2_ONLY, Int8Files::BOTH);
        assert_eq!(route(&avx2), (Precision::Int8, Some(Dynamic)));
        assert!(
            avx2.reason.contains("ONNX Runtime's CPU provider"),
            "{}",
            avx2.reason
        );
        assert_eq!(
            route(&auto(AVX2_ONLY, DYNAMIC_ONLY)),
            (Precision::Int8, Some(Dynamic))
        );
        let no_dynamic = auto(AVX2_ONLY, STATIC_ONLY);
        assert_eq!(route(&no_dynamic), (Precision::Fp32, None));
        assert!(
            no_dynamic.reason.contains("no dynamic int8"),
            "{}",
            no_dynamic.reason
        );
        // Neither VNNI nor AVX2: fp32 whatever the bundle has.
        let old = auto(OLD, Int8Files::BOTH);
        assert_eq!(route(&old), (Precision::Fp32, None));
        assert!(old.reason.contains("no AMX"), "{}", old.reason);
        let gpu = choose(
            Precision::Auto,
            &CpuCaps::from_flags(XEON),
            Int8Files::BOTH,
            true,
        )
        .unwrap();
        assert_eq!(gpu.precision, Precision::Fp32);
    }

    #[test]
    fn explicit_int8_runs_the_route_the_cpu_has() {
        let asked = pick(Precision::Int8, AVX2_ONLY, Int8Files::BOTH).unwrap();
        assert_eq!(asked.int8, Some(Int8Route::Dynamic));
        assert!(asked.reason.starts_with("asked for") && asked.reason.contains("dynamic int8"));
        assert_eq!(
            pick(Precision::Int8, XEON, Int8Files::BOTH).unwrap().int8,
            Some(Int8Route::Static)
        );
        assert_eq!(
            pick(Precision::Int8, XEON, DYNAMIC_ONLY).unwrap().int8,
            Some(Int8Route::Dynamic)
        );
        let e = pick(Precision::Int8, AVX2_ONLY, STATIC_ONLY)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--kinds dynamic") && e.contains("no faster"),
            "{e}"
        );
        let e = pick(Precision::Int8, OLD, Int8Files::BOTH)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no AMX-INT8, VNNI or AVX2"), "{e}");
    }

    #[test]
    fn explicit_precisions_the_cpu_lacks_are_refused() {
        let e = pick(Precision::Bf16, AVX2_ONLY, Int8Files::BOTH)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no AMX-BF16"), "{e}");
        let e = pick(Precision::Int8, XEON, Int8Files::NONE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("quantize_bundle.py"), "{e}");
        assert!(
            choose(
                Precision::Bf16,
                &CpuCaps::from_flags(XEON),
                Int8Files::NONE,
                true
            )
            .is_err()
        );
        assert_eq!(
            pick(Precision::Fp32, OLD, Int8Files::NONE)
                .unwrap()
                .precision,
            Precision::Fp32
        );
    }

    #[test]
    fn the_tracker_follows_bf16_only() {
        let amx = CpuCaps::from_flags("avx2 amx_bf16 amx_int8");
        let vnni = CpuCaps::from_flags("avx2 avx512_vnni");
        let avx2 = CpuCaps::from_flags("avx2 fma");
        let hint =
            |caps: &CpuCaps, p, files| choose(p, caps, files, false).unwrap().tracker_hint(caps);
        // bf16, and static int8 whose float parts run in bf16
        assert_eq!(hint(&amx, Precision::Auto, Int8Files::NONE), Some("bf16"));
        assert_eq!(hint(&amx, Precision::Auto, Int8Files::BOTH), Some("bf16"));
        assert_eq!(hint(&amx, Precision::Bf16, Int8Files::NONE), Some("bf16"));
        assert_eq!(hint(&amx, Precision::Fp32, Int8Files::BOTH), None);
        // no native bf16: static int8 runs OpenVINO in f32, the tracker stays on ONNX Runtime
        assert_eq!(hint(&vnni, Precision::Auto, Int8Files::BOTH), None);
        assert_eq!(hint(&avx2, Precision::Auto, Int8Files::BOTH), None);
    }

    #[test]
    fn only_static_int8_and_bf16_run_on_openvino() {
        let v = CpuCaps::from_flags(VNNI_ONLY);
        let c = choose(Precision::Int8, &v, Int8Files::BOTH, false).unwrap();
        assert_eq!(c.openvino_hint(&v), Some("f32"));
        let x = CpuCaps::from_flags(XEON);
        let hint = |p, files| choose(p, &x, files, false).unwrap().openvino_hint(&x);
        assert_eq!(hint(Precision::Int8, Int8Files::BOTH), Some("bf16"));
        assert_eq!(hint(Precision::Bf16, Int8Files::NONE), Some("bf16"));
        assert_eq!(hint(Precision::Int8, DYNAMIC_ONLY), None);
        assert_eq!(hint(Precision::Fp32, Int8Files::BOTH), None);
        let a = CpuCaps::from_flags(AVX2_ONLY);
        let dynamic = choose(Precision::Auto, &a, Int8Files::BOTH, false).unwrap();
        assert_eq!(dynamic.openvino_hint(&a), None);
    }
}
