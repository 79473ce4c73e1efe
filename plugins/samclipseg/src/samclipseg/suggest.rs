//! The `suggest` action signal: the vocabulary phrases with the highest
//! presence on the last picture the model encoded. It runs on the caller's
//! thread and takes no lock the streaming thread holds for a frame: it reads
//! the features through the stream's handle, and the engines' fair locks let
//! frames pass between its decoder runs. The same in both modes.

use gst::prelude::*;
use gst::subclass::prelude::*;
use samclipseg::prompt::suggest::{DEFAULT_VOCABULARY, Suggestion, parse_vocabulary};

use super::imp::{CAT, SamClipSeg, lock};

/// Name of the structure the action returns and posts.
pub const SUGGESTIONS_NAME: &str = "samclipseg-suggestions";

impl SamClipSeg {
    /// Ranks the vocabulary; the result is also posted on the bus. Errors
    /// come back in the structure's `error` field.
    pub(super) fn suggest(&self, k: u32) -> gst::Structure {
        let mut s = gst::Structure::builder(SUGGESTIONS_NAME);
        match self.rank(k as usize) {
            Ok(top) => {
                let phrases: Vec<String> = top.iter().map(|t| t.phrase.clone()).collect();
                let scores: Vec<f64> = top.iter().map(|t| t.presence as f64).collect();
                s = s
                    .field("phrases", gst::List::new(phrases))
                    .field("scores", gst::List::new(scores));
            }
            Err(e) => {
                gst::warning!(CAT, imp = self, "suggest: {e}");
                s = s.field("error", e);
            }
        }
        let s = s.build();
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s.clone()).src(&*obj).build());
        s
    }

    fn rank(&self, k: usize) -> Result<Vec<Suggestion>, String> {
        let path = lock(&self.settings).vocabulary.clone();
        let vocabulary = if path.is_empty() {
            parse_vocabulary(DEFAULT_VOCABULARY)
        } else {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("vocabulary {path}: {e}"))?;
            parse_vocabulary(&text)
        };
        let handle = self.stream_handle().ok_or("the element is not running")?;
        let source = handle
            .suggest_source()
            .ok_or("no picture has been encoded yet (set a prompt and let a frame pass)")?;
        source
            .model
            .suggest(&source.features, &vocabulary, k)
            .map_err(|e| e.to_string())
    }
}
