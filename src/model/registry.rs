//! One loaded model per (bundle, backend options) in a process, shared by
//! every element that asks for it and freed when the last one lets go.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::error::{Error, Result};
use crate::model::backend::BackendOptions;
use crate::model::sam3::Sam3Model;

type Key = (PathBuf, BackendOptions);

static MODELS: Mutex<Vec<(Key, Weak<Sam3Model>)>> = Mutex::new(Vec::new());

/// The model for `dir` with `options`, loading it unless another user holds it.
pub fn shared_model(dir: &Path, options: &BackendOptions) -> Result<Arc<Sam3Model>> {
    let key = (
        dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()),
        options.clone(),
    );
    // Held while loading, so that two elements starting together load once.
    let mut models = MODELS.lock().map_err(|_| {
        Error::InvalidInput("model registry lock poisoned by an earlier panic".into())
    })?;
    models.retain(|(_, weak)| weak.strong_count() > 0);
    if let Some(model) = models
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(model);
    }
    let model = Arc::new(Sam3Model::load(dir, options)?);
    models.push((key, Arc::downgrade(&model)));
    Ok(model)
}
