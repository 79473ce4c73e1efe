//! `bundle.toml` parsing and validation on arbitrary text: an error message
//! or a manifest, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(m) = samclipseg::model::bundle::parse_manifest(text) {
        // A manifest that passed validation is usable as the loader uses it.
        for role in samclipseg::model::bundle::EngineRole::ALL {
            let spec = m.engine(role);
            for t in spec.inputs.iter().chain(&spec.outputs) {
                let _ = t.shape_string();
            }
        }
    }
});
