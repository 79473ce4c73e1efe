//! SAM 3 as engines: the bundle that describes them, the backends that run
//! them, and the model that chains text encoder, image encoder and decoder.

pub mod backend;
pub mod bundle;
pub mod fallback;
pub mod precision;
pub mod registry;
pub mod runtime;
pub mod sam3;
pub mod tensor;
pub mod threshold;
