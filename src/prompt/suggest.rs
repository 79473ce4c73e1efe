//! Prompt suggestions: phrases of a vocabulary ranked by the model's presence
//! score on one picture ("is there a ... in this image?").

use crate::error::Result;
use crate::image::postprocess::sigmoid;
use crate::model::sam3::{ImageFeatures, Sam3Model};

/// A few hundred common object names, shipped with the library.
pub const DEFAULT_VOCABULARY: &str = include_str!("../../data/vocabulary.txt");

/// Phrases to try at once in the decoder. A stream sharing the model waits
/// for at most one such run (engine locks are fair), so it must cost less
/// than a frame: the image encoder alone costs 3.7 (medium) to 11 (full size)
/// single-phrase decoder runs on a CPU (SAM3-NOTES.md).
const BATCH: usize = 4;

/// One phrase per line; blank lines and `#` comments are skipped.
pub fn parse_vocabulary(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// A ranked suggestion.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    pub phrase: String,
    /// sigmoid(presence logit) of the phrase on the picture.
    pub presence: f32,
}

impl Sam3Model {
    /// The presence score of each phrase on the picture, in the given order.
    /// Text features come from (and stay in) the model's cache.
    pub fn presence_scores(&self, image: &ImageFeatures, phrases: &[&str]) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(phrases.len());
        for chunk in phrases.chunks(BATCH) {
            let texts = self.encode_texts(chunk)?;
            // Only the presence logits come back to the host, not the masks
            // (the server, on `remote`, sends none).
            let out = self.decode_above(image, &texts, f32::INFINITY)?;
            scores.extend(out.presence_logits.data.iter().map(|l| sigmoid(*l)));
        }
        Ok(scores)
    }

    /// The `k` phrases with the highest presence scores, best first (ties keep
    /// vocabulary order). Runs at background priority on a thread of its own,
    /// as it is asked for while frames flow (`crate::priority`).
    pub fn suggest(
        &self,
        image: &ImageFeatures,
        vocabulary: &[String],
        k: usize,
    ) -> Result<Vec<Suggestion>> {
        crate::priority::in_background("samclipseg-suggest", || self.rank(image, vocabulary, k))
    }

    fn rank(
        &self,
        image: &ImageFeatures,
        vocabulary: &[String],
        k: usize,
    ) -> Result<Vec<Suggestion>> {
        let phrases: Vec<&str> = vocabulary.iter().map(String::as_str).collect();
        let scores = self.presence_scores(image, &phrases)?;
        let mut ranked: Vec<Suggestion> = vocabulary
            .iter()
            .zip(scores)
            .map(|(p, s)| Suggestion {
                phrase: p.clone(),
                presence: s,
            })
            .collect();
        ranked.sort_by(|a, b| b.presence.total_cmp(&a.presence));
        ranked.truncate(k);
        Ok(ranked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_vocabulary_has_hundreds_of_distinct_phrases() {
        let v = parse_vocabulary(DEFAULT_VOCABULARY);
        assert!(v.len() >= 300, "{}", v.len());
        let mut sorted = v.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), v.len(), "duplicates in the vocabulary");
        assert!(v.iter().all(|p| !p.contains(';')));
    }
}
