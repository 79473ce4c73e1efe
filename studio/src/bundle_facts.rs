//! What the studio knows about its bundle, read once from its manifest: the
//! name and precision it shows, and the threshold the bundle stands for.

use std::path::Path;

use samclipseg::Threshold;
use samclipseg::model::bundle::{Bundle, Manifest};

#[derive(Debug, Clone)]
pub struct BundleFacts {
    pub name: String,
    /// The engines' own element type (fp32); what runs is the element's
    /// `precision-in-use`.
    pub precision: String,
    manifest: Manifest,
}

impl BundleFacts {
    pub fn read(dir: &Path) -> Result<BundleFacts, String> {
        let bundle = Bundle::open(dir).map_err(|e| e.to_string())?;
        let m = bundle.manifest;
        let precision = match m.engines.image_encoder.outputs.first() {
            Some(t) if t.dtype == "float32" => "fp32".to_string(),
            Some(t) => t.dtype.clone(),
            None => "unknown".to_string(),
        };
        Ok(BundleFacts {
            name: m.bundle.name.clone(),
            precision,
            manifest: m,
        })
    }

    /// The threshold in effect with this bundle: the element's rule
    /// ([`Threshold::resolve`]), so that the page shows what the element uses.
    pub fn threshold(&self, t: Threshold) -> f32 {
        t.resolve(&self.manifest)
    }
}
