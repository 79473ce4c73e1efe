//! The `suggest` action signal: the vocabulary phrases with the highest
//! presence on the last picture the model encoded. It runs on the caller's
//! thread and takes no lock the streaming thread holds for a frame: it reads
//! the features through the stream's handle, and the engines' fair locks let
//! frames pass between its decoder runs. The same in both modes.
//!
//! With a Chinese prompt the built-in vocabulary is answered in Chinese; a
//! `vocabulary` file in Chinese is scored in English and answered as written.

use samclipseg::StreamHandle;
use samclipseg::prompt::chinese::is_chinese;
use samclipseg::prompt::suggest::{Entry, Suggestion, default_vocabulary, parse_vocabulary};
use samclipseg::prompt::syntax::parse_phrases;

/// Name of the structure the action returns and posts.
pub const SUGGESTIONS_NAME: &str = "samclipseg-suggestions";

/// The `k` best phrases of `vocabulary` (a file; empty = the built-in list,
/// in Chinese when `prompt` is) as the action's structure; errors come back
/// in its `error` field.
pub fn suggestions(
    handle: Option<StreamHandle>,
    vocabulary: &str,
    prompt: &str,
    k: usize,
) -> gst::Structure {
    let s = gst::Structure::builder(SUGGESTIONS_NAME);
    match rank(handle, vocabulary, prompt, k) {
        Ok(top) => {
            let phrases: Vec<String> = top.iter().map(|t| t.phrase.clone()).collect();
            let scores: Vec<f64> = top.iter().map(|t| t.presence as f64).collect();
            s.field("phrases", gst::List::new(phrases))
                .field("scores", gst::List::new(scores))
                .build()
        }
        Err(e) => s.field("error", e).build(),
    }
}

fn rank(
    handle: Option<StreamHandle>,
    path: &str,
    prompt: &str,
    k: usize,
) -> Result<Vec<Suggestion>, String> {
    let vocabulary: Vec<Entry> = if path.is_empty() {
        let chinese = parse_phrases(prompt).iter().any(|p| is_chinese(&p.text));
        default_vocabulary(chinese)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| format!("vocabulary {path}: {e}"))?;
        parse_vocabulary(&text)
            .iter()
            .map(|p| Entry::of(p))
            .collect()
    };
    let handle = handle.ok_or("the element is not running")?;
    let source = handle
        .suggest_source()
        .ok_or("no picture has been encoded yet (set a prompt and let a frame pass)")?;
    source
        .model
        .suggest_entries(&source.features, &vocabulary, k)
        .map_err(|e| e.to_string())
}
