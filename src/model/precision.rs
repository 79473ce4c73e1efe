//! Which arithmetic the CPU backend runs the image encoder and decoder in,
//! chosen at run time from what this CPU does natively and what the bundle
//! holds.
//!
//! - `fp32`: the bundle's float engines on ONNX Runtime's CPU provider, the
//!   path whose results match the PyTorch reference number for number.
//! - `bf16`: the same files through ONNX Runtime's OpenVINO execution provider
//!   with bf16 arithmetic; only on CPUs with AMX-BF16 or AVX512-BF16, where it
//!   is native (elsewhere OpenVINO would emulate it, slower than fp32).
//! - `int8`: the bundle's int8 variants (`engines/quantize_bundle.py`: static
//!   QDQ, calibrated) through OpenVINO, their float parts in bf16 where the
//!   CPU has it; only on CPUs with AMX-INT8 or VNNI (AVX512-VNNI, AVX-VNNI).
//! - `auto` (default): int8 when the CPU and the bundle allow it, else bf16
//!   when the CPU allows it, else fp32.
//!
//! Why OpenVINO rather than ONNX Runtime's own int8 kernels: measured on the
//! medium bundle's image encoder (an AMX Xeon, 2 threads; engines/BENCHMARK.md)
//! ONNX Runtime's CPU provider runs a dynamically quantised encoder 2.6x faster
//! than fp32, OpenVINO runs the fp32 file in bf16 3.2x faster and the QDQ int8
//! file 4.2x faster. The text encoder stays fp32 on the CPU provider: it runs
//! once per prompt, and its features are cached.
//!
//! GPU backends ignore this: TensorRT's own `tensorrt-fp16` decides there.

use std::fmt;

use crate::error::{Error, Result};

/// The environment variable that replaces the CPU's flags for the choice
/// (tests, and trying what another CPU would get): a space- or comma-separated
/// list in `/proc/cpuinfo`'s spelling, e.g. `avx2 fma`.
pub const CPU_FLAGS_VAR: &str = "SAMCLIPSEG_CPU_FLAGS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "glib", derive(glib::Enum))]
#[cfg_attr(feature = "glib", enum_type(name = "GstSamClipSegPrecision"))]
#[repr(u32)]
pub enum Precision {
    #[default]
    #[cfg_attr(
        feature = "glib",
        enum_value(
            name = "Auto: int8 or bf16 where the CPU runs them natively, else fp32",
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
            name = "int8: the bundle's int8 engines on OpenVINO, needs AMX-INT8 or VNNI",
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

/// What the CPU runs natively, from its flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuCaps {
    pub bf16: bool,
    pub int8: bool,
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
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let flags = text
            .lines()
            .find(|l| l.starts_with("flags"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, f)| f)
            .unwrap_or("");
        CpuCaps::from_flags(flags)
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
        let mut evidence: Vec<String> = bf16.iter().chain(&int8).cloned().collect();
        if evidence.is_empty() {
            evidence.push("no AMX, AVX512-BF16 or VNNI".into());
        }
        CpuCaps {
            bf16: !bf16.is_empty(),
            int8: !int8.is_empty(),
            evidence: evidence.join(" "),
        }
    }
}

/// What the image encoder and decoder run in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Never `Auto`.
    pub precision: Precision,
    pub reason: String,
}

impl Choice {
    pub fn fp32() -> Choice {
        Choice {
            precision: Precision::Fp32,
            reason: "fp32".into(),
        }
    }

    /// OpenVINO's `INFERENCE_PRECISION_HINT` for the float parts, or None
    /// for ONNX Runtime's CPU provider.
    pub fn openvino_hint(&self, caps: &CpuCaps) -> Option<&'static str> {
        match self.precision {
            Precision::Auto | Precision::Fp32 => None,
            Precision::Bf16 => Some("bf16"),
            Precision::Int8 => Some(if caps.bf16 { "bf16" } else { "f32" }),
        }
    }
}

/// Resolves `requested` on a CPU with `caps` for a bundle that has (or not)
/// int8 variants of both engines. An explicit precision that this CPU or
/// bundle cannot run natively is an error saying what to do; `auto` says
/// why it chose what it chose.
pub fn choose(
    requested: Precision,
    caps: &CpuCaps,
    bundle_int8: bool,
    gpu: bool,
) -> Result<Choice> {
    let refuse = |message: String| Error::InvalidInput(format!("precision={requested}: {message}"));
    let choice = |precision, reason: String| Ok(Choice { precision, reason });
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
        Precision::Int8 if !bundle_int8 => Err(refuse(
            "the bundle has no int8 engines; make them with `engines/quantize_bundle.py BUNDLE`, \
             or use precision=auto"
                .into(),
        )),
        Precision::Int8 if caps.int8 => choice(
            Precision::Int8,
            format!("asked for; CPU has {}", caps.evidence),
        ),
        Precision::Int8 => Err(refuse(format!(
            "this CPU has no AMX-INT8 or VNNI ({}), so int8 would be slower than fp32; use \
             precision=auto or fp32",
            caps.evidence
        ))),
        Precision::Auto => {
            if caps.int8 && bundle_int8 {
                choice(
                    Precision::Int8,
                    format!(
                        "auto: CPU has {} and the bundle has int8 engines",
                        caps.evidence
                    ),
                )
            } else if caps.bf16 {
                let why = if caps.int8 {
                    "the bundle has no int8 engines"
                } else {
                    "no VNNI for int8"
                };
                choice(
                    Precision::Bf16,
                    format!("auto: CPU has {} ({why})", caps.evidence),
                )
            } else {
                choice(
                    Precision::Fp32,
                    format!(
                        "auto: {}; fp32 is this CPU's fastest native path",
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
    const OLD: &str = "fpu sse4_2 avx2 fma";

    #[test]
    fn flags_say_what_the_cpu_runs_natively() {
        let x = CpuCaps::from_flags(XEON);
        assert!(x.bf16 && x.int8, "{x:?}");
        let v = CpuCaps::from_flags(VNNI_ONLY);
        assert!(!v.bf16 && v.int8);
        let o = CpuCaps::from_flags(OLD);
        assert!(!o.bf16 && !o.int8);
        assert!(o.evidence.contains("no AMX"));
    }

    #[test]
    fn auto_picks_the_fastest_native_path() {
        let pick = |flags, int8| {
            choose(Precision::Auto, &CpuCaps::from_flags(flags), int8, false).unwrap()
        };
        assert_eq!(pick(XEON, true).precision, Precision::Int8);
        assert_eq!(pick(XEON, false).precision, Precision::Bf16);
        assert_eq!(pick(VNNI_ONLY, true).precision, Precision::Int8);
        assert_eq!(pick(VNNI_ONLY, false).precision, Precision::Fp32);
        let old = pick(OLD, true);
        assert_eq!(old.precision, Precision::Fp32);
        assert!(old.reason.contains("no AMX"), "{}", old.reason);
        let gpu = choose(Precision::Auto, &CpuCaps::from_flags(XEON), true, true).unwrap();
        assert_eq!(gpu.precision, Precision::Fp32);
    }

    #[test]
    fn explicit_precisions_the_cpu_lacks_are_refused() {
        let old = CpuCaps::from_flags(OLD);
        let e = choose(Precision::Bf16, &old, true, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no AMX-BF16"), "{e}");
        let e = choose(Precision::Int8, &CpuCaps::from_flags(XEON), false, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("quantize_bundle.py"), "{e}");
        assert!(choose(Precision::Bf16, &CpuCaps::from_flags(XEON), false, true).is_err());
        assert_eq!(
            choose(Precision::Fp32, &old, false, false)
                .unwrap()
                .precision,
            Precision::Fp32
        );
    }

    #[test]
    fn int8_keeps_fp32_float_parts_without_bf16() {
        let v = CpuCaps::from_flags(VNNI_ONLY);
        let c = choose(Precision::Int8, &v, true, false).unwrap();
        assert_eq!(c.openvino_hint(&v), Some("f32"));
        let x = CpuCaps::from_flags(XEON);
        assert_eq!(
            choose(Precision::Int8, &x, true, false)
                .unwrap()
                .openvino_hint(&x),
            Some("bf16")
        );
        assert_eq!(
            choose(Precision::Fp32, &x, true, false)
                .unwrap()
                .openvino_hint(&x),
            None
        );
    }
}
