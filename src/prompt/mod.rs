//! Prompts: the phrase syntax, the request a frame is segmented for, CLIP
//! tokenization, and phrase suggestions from a vocabulary.

pub mod request;
pub mod suggest;
pub mod syntax;
pub mod tokenizer;
