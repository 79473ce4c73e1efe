//! Prompt handling on arbitrary strings: the prompt syntax and the Chinese
//! translation (`PromptSet::parse`, which must never panic), the cache key
//! (`normalise_prompt`) and CLIP tokenisation with the tiny bundle's `tokenizer.json`, which must
//! always give exactly `context_length` ids framed by the start and end tokens.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use samclipseg::prompt::tokenizer::{PromptTokenizer, normalise_prompt};

const CONTEXT: usize = 32;
const PAD: i64 = 49407;
const START: i64 = 49406;
const END: i64 = 49407;

static TOKENIZER: LazyLock<PromptTokenizer> = LazyLock::new(|| {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tiny-sam3/tokenizer.json");
    PromptTokenizer::from_file(&path, CONTEXT, PAD).expect("the tiny bundle's tokenizer loads")
});

fuzz_target!(|prompt: &str| {
    // Parsing translates every phrase; what the encoder gets is never blank.
    let set = samclipseg::prompt::syntax::PromptSet::parse(prompt, prompt);
    assert!(set.texts().iter().all(|t| !t.trim().is_empty()));
    let _ = set.in_use();

    let key = normalise_prompt(prompt);
    // The key is a fixed point: normalising it again changes nothing.
    assert_eq!(normalise_prompt(&key), key);
    assert!(!key.starts_with(char::is_whitespace) && !key.ends_with(char::is_whitespace));

    // Any string tokenises: an error here would stop a pipeline.
    let t = TOKENIZER.encode(prompt).expect("every string tokenises");
    assert_eq!(t.ids.len(), CONTEXT);
    assert_eq!(t.mask.len(), CONTEXT);
    let real = t.mask.iter().filter(|&&m| m == 1).count();
    assert!((2..=CONTEXT).contains(&real), "{real} real tokens");
    // Real tokens first, then padding.
    assert!(t.mask[..real].iter().all(|&m| m == 1));
    assert!(t.mask[real..].iter().all(|&m| m == 0));
    assert!(t.ids[real..].iter().all(|&i| i == PAD));
    assert_eq!(t.ids[0], START);
    assert_eq!(t.ids[real - 1], END);
    if t.truncated {
        assert_eq!(real, CONTEXT);
    }
});
