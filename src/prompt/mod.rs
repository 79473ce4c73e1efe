//! Prompts: the phrase syntax, the translation of Chinese phrases into the
//! text encoder's English, the request a frame is segmented for, CLIP
//! tokenization, and phrase suggestions from a vocabulary.

pub mod chinese;
pub mod request;
pub mod suggest;
pub mod syntax;
pub mod tokenizer;
pub mod translate;
