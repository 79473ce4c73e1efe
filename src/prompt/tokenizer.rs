//! CLIP BPE tokenisation with the bundle's `tokenizer.json`, padded and
//! truncated to the context length the way the SAM 3 processor does it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedPrompt {
    /// `context_length` ids: start, the prompt's tokens, end, then padding.
    pub ids: Vec<i64>,
    /// 1 for real tokens (start and end included), 0 for padding.
    pub mask: Vec<i64>,
    /// Whether the prompt had to be cut to fit the context.
    pub truncated: bool,
}

pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    context_length: usize,
    pad_id: i64,
    start_id: i64,
    end_id: i64,
}

const START: &str = "<|startoftext|>";
const END: &str = "<|endoftext|>";

impl PromptTokenizer {
    pub fn from_file(path: &Path, context_length: usize, pad_id: i64) -> Result<Self> {
        let err = |message: String| Error::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| err(format!("does not load as a `tokenizers` JSON file: {e}")))?;
        // Padding and truncation are done here, so the file's own settings must not interfere.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| err(format!("cannot disable truncation: {e}")))?;
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .map(i64::from)
                .ok_or_else(|| err(format!("has no `{t}` token; is it a CLIP tokenizer?")))
        };
        let (start_id, end_id) = (id(START)?, id(END)?);
        Ok(PromptTokenizer {
            inner,
            path: path.to_path_buf(),
            context_length,
            pad_id,
            start_id,
            end_id,
        })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    pub fn encode(&self, prompt: &str) -> Result<TokenizedPrompt> {
        let enc = self
            .inner
            .encode(prompt, false)
            .map_err(|e| Error::Tokenizer {
                path: self.path.clone(),
                message: format!("cannot tokenise {prompt:?}: {e}"),
            })?;
        let body = enc.get_ids();
        let room = self.context_length - 2;
        let truncated = body.len() > room;
        if truncated {
            log::warn!(
                "prompt of {} tokens is longer than the model's context of {}; only the first {room} tokens are used",
                body.len(),
                self.context_length
            );
        }
        let mut ids = Vec::with_capacity(self.context_length);
        ids.push(self.start_id);
        ids.extend(body.iter().take(room).map(|&i| i64::from(i)));
        ids.push(self.end_id);
        let real = ids.len();
        ids.resize(self.context_length, self.pad_id);
        let mut mask = vec![1i64; real];
        mask.resize(self.context_length, 0);
        Ok(TokenizedPrompt {
            ids,
            mask,
            truncated,
        })
    }
}

/// The key a prompt is cached under: trimmed, whitespace collapsed, lower-cased
/// (the CLIP tokenizer lower-cases too, so this changes no token).
pub fn normalise_prompt(prompt: &str) -> String {
    prompt
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether `text` is likely outside the model's vocabulary, which is English
/// (CLIP's byte-level BPE takes any string, but other scripts were rare in its
/// training text): it has no ASCII letter, or most of its letters are not
/// Latin script. Blank text is not.
pub fn likely_not_english(text: &str) -> bool {
    let (mut letters, mut ascii, mut latin) = (0usize, 0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        letters += 1;
        ascii += usize::from(c.is_ascii_alphabetic());
        latin += usize::from(is_latin_letter(c));
    }
    !text.trim().is_empty() && (ascii == 0 || latin * 2 < letters)
}

/// ASCII, Latin-1, Latin Extended-A/B and Latin Extended Additional letters.
fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || (c.is_alphabetic() && matches!(u32::from(c), 0xC0..=0x24F | 0x1E00..=0x1EFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_or_not() {
        for english in [
            "red car",
            "café crème",
            "a DOG!",
            "🐶 dog",
            "cat\u{7}",
            "",
            "  ",
        ] {
            assert!(!likely_not_english(english), "{english:?}");
        }
        for other in ["红色的汽车", "🐶🐱", "123", "собака", "一只黑猫 a", "ñ"]
        {
            assert!(likely_not_english(other), "{other:?}");
        }
    }

    #[test]
    fn normalisation_collapses_space_and_case() {
        assert_eq!(normalise_prompt("  Red\t CAR \n"), "red car");
        assert_eq!(normalise_prompt("   "), "");
    }
}
