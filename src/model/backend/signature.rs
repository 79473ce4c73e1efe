//! An engine's inputs and outputs checked against what bundle.toml declares.

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::model::bundle::{Dim, EngineSpec, SizedDim, TensorSpec};

fn dtype_name(t: TensorElementType) -> String {
    match t {
        TensorElementType::Float32 => "float32".into(),
        TensorElementType::Float16 => "float16".into(),
        TensorElementType::Int64 => "int64".into(),
        TensorElementType::Int32 => "int32".into(),
        TensorElementType::Bool => "bool".into(),
        other => other.to_string(),
    }
}

/// The shape `session` declares for a tensor (-1 for a dynamic dimension).
pub(super) fn tensor_shape(session: &Session, input: bool, name: &str) -> Option<Vec<i64>> {
    let outlets = if input {
        session.inputs()
    } else {
        session.outputs()
    };
    match outlets.iter().find(|o| o.name() == name)?.dtype() {
        ValueType::Tensor { shape, .. } => Some(shape.iter().copied().collect()),
        _ => None,
    }
}

/// The manifest's numbers (context length, image size, queries, mask size)
/// against the engine's own shapes, before anything is sized by them: the
/// error names the field, the tensor, and both values. A tensor the engine
/// lacks is left to [`check_signature`], which lists what the engine has.
pub(super) fn check_sized_dims(
    sized: &[SizedDim],
    shape_of: impl Fn(bool, &str) -> Option<Vec<i64>>,
) -> std::result::Result<(), String> {
    for s in sized {
        let Some(shape) = shape_of(s.input, s.tensor) else {
            continue;
        };
        let found = match shape.get(s.dim) {
            Some(d) if *d < 0 => "dynamic".to_string(),
            Some(d) => d.to_string(),
            None => format!("absent (the engine's shape has {} dimensions)", shape.len()),
        };
        if shape.get(s.dim) != Some(&s.value) {
            return Err(format!(
                "{} `{}` dimension {} is {found} in the engine, but bundle.toml's {} is {}; \
                 the manifest does not describe this engine: re-export the bundle",
                s.side(),
                s.tensor,
                s.dim,
                s.field,
                s.value
            ));
        }
    }
    Ok(())
}

/// Every tensor the manifest declares must exist in the engine with the same
/// dtype and shape; symbolic dimensions must be dynamic in the engine.
pub(super) fn check_signature(
    session: &Session,
    spec: &EngineSpec,
) -> std::result::Result<(), String> {
    let sides = [
        ("input", session.inputs(), &spec.inputs),
        ("output", session.outputs(), &spec.outputs),
    ];
    for (side, outlets, declared) in sides {
        for want in declared.iter() {
            let Some(found) = outlets.iter().find(|o| o.name() == want.name) else {
                let have: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
                return Err(format!(
                    "{side} tensor `{}` declared in bundle.toml is not in the engine (engine {side}s: {})",
                    want.name,
                    have.join(", ")
                ));
            };
            check_tensor(side, want, found.dtype())?;
        }
        for o in outlets {
            if side == "input" && !declared.iter().any(|d| d.name == o.name()) {
                return Err(format!(
                    "the engine needs input `{}`, which bundle.toml does not declare",
                    o.name()
                ));
            }
        }
    }
    Ok(())
}

fn check_tensor(
    side: &str,
    want: &TensorSpec,
    found: &ValueType,
) -> std::result::Result<(), String> {
    let ValueType::Tensor { ty, shape, .. } = found else {
        return Err(format!(
            "{side} `{}` is not a tensor in the engine",
            want.name
        ));
    };
    let found_dtype = dtype_name(*ty);
    let found_shape: Vec<String> = shape
        .iter()
        .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
        .collect();
    let found_shape = format!("[{}]", found_shape.join(", "));
    if found_dtype != want.dtype {
        return Err(format!(
            "{side} `{}`: bundle.toml says dtype {}, the engine has {found_dtype}",
            want.name, want.dtype
        ));
    }
    let same = shape.len() == want.shape.len()
        && want.shape.iter().zip(shape.iter()).all(|(w, f)| match w {
            Dim::Fixed(n) => *n == *f,
            Dim::Symbolic(_) => *f < 0,
        });
    if !same {
        return Err(format!(
            "{side} `{}`: bundle.toml says shape {}, the engine has {found_shape}",
            want.name,
            want.shape_string()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(value: i64) -> SizedDim {
        SizedDim {
            field: "text.context_length",
            value,
            input: true,
            tensor: "input_ids",
            dim: 1,
        }
    }

    #[test]
    fn manifest_numbers_are_checked_against_the_engine_shapes() {
        let engine = |input: bool, name: &str| (input && name == "input_ids").then(|| vec![-1, 32]);
        assert_eq!(check_sized_dims(&[ctx(32)], engine), Ok(()));
        let err = check_sized_dims(&[ctx(48)], engine).unwrap_err();
        assert!(
            err.contains("input `input_ids` dimension 1 is 32 in the engine")
                && err.contains("text.context_length is 48"),
            "{err}"
        );
        // A dynamic dimension does not fix the size the manifest promises.
        let err = check_sized_dims(&[ctx(32)], |_, _| Some(vec![-1, -1])).unwrap_err();
        assert!(err.contains("is dynamic in the engine"), "{err}");
        let err = check_sized_dims(&[ctx(32)], |_, _| Some(vec![-1])).unwrap_err();
        assert!(err.contains("absent"), "{err}");
        // A tensor the engine lacks is check_signature's to report.
        assert_eq!(check_sized_dims(&[ctx(32)], |_, _| None), Ok(()));
    }
}
