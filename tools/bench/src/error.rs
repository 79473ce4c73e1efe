//! The bench's one error type, in its own module so that every other module
//! depends on it and none on the crate root.

pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;
