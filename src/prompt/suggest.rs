//! Prompt suggestions: phrases of a vocabulary ranked by the model's presence
//! score on one picture ("is there a ... in this image?"). A phrase is
//! scored by what the text encoder gets for it ([`translate`]: a Chinese
//! vocabulary is scored in English) and answered as written.

use crate::error::Result;
use crate::image::postprocess::sigmoid;
use crate::model::sam3::{ImageFeatures, Sam3Model};
use crate::prompt::translate::translate;

/// A few hundred common object names, shipped with the library.
pub const DEFAULT_VOCABULARY: &str = include_str!("../../data/vocabulary.txt");

/// The built-in vocabulary in Chinese, `English<TAB>Chinese` per line, in
/// the order of [`DEFAULT_VOCABULARY`].
pub const DEFAULT_VOCABULARY_ZH: &str = include_str!("../../data/vocabulary-zh.tsv");

/// A vocabulary phrase: as shown, and as the text encoder gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub phrase: String,
    pub encoder_text: String,
}

impl Entry {
    /// A phrase scored as the encoder gets it (Chinese translated).
    pub fn of(phrase: &str) -> Entry {
        Entry {
            phrase: phrase.to_string(),
            encoder_text: translate(phrase).text,
        }
    }
}

/// The built-in vocabulary: English, or its Chinese phrases scored with the
/// English they were written for.
pub fn default_vocabulary(chinese: bool) -> Vec<Entry> {
    if !chinese {
        return parse_vocabulary(DEFAULT_VOCABULARY)
            .iter()
            .map(|p| Entry::of(p))
            .collect();
    }
    DEFAULT_VOCABULARY_ZH
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(en, zh)| Entry {
            phrase: zh.to_string(),
            encoder_text: en.to_string(),
        })
        .collect()
}

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
    /// vocabulary order). Each is scored as the text encoder gets it (a
    /// Chinese phrase in English) and answered as written.
    pub fn suggest(
        &self,
        image: &ImageFeatures,
        vocabulary: &[String],
        k: usize,
    ) -> Result<Vec<Suggestion>> {
        let entries: Vec<Entry> = vocabulary.iter().map(|p| Entry::of(p)).collect();
        self.suggest_entries(image, &entries, k)
    }

    /// [`Sam3Model::suggest`] for phrases whose encoder text is known. Runs
    /// at background priority on a thread of its own, as it is asked for
    /// while frames flow (`crate::priority`).
    pub fn suggest_entries(
        &self,
        image: &ImageFeatures,
        vocabulary: &[Entry],
        k: usize,
    ) -> Result<Vec<Suggestion>> {
        crate::priority::in_background("samclipseg-suggest", || self.rank(image, vocabulary, k))
    }

    fn rank(
        &self,
        image: &ImageFeatures,
        vocabulary: &[Entry],
        k: usize,
    ) -> Result<Vec<Suggestion>> {
        let texts: Vec<&str> = vocabulary.iter().map(|e| e.encoder_text.as_str()).collect();
        let scores = self.presence_scores(image, &texts)?;
        let mut ranked: Vec<Suggestion> = vocabulary
            .iter()
            .zip(scores)
            .map(|(e, s)| Suggestion {
                phrase: e.phrase.clone(),
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

    #[test]
    fn the_chinese_vocabulary_pairs_every_english_phrase() {
        let en: Vec<String> = default_vocabulary(false)
            .into_iter()
            .map(|e| e.phrase)
            .collect();
        let zh = default_vocabulary(true);
        assert_eq!(
            zh.iter()
                .map(|e| e.encoder_text.clone())
                .collect::<Vec<_>>(),
            en,
            "same phrases, same order"
        );
        let mut phrases: Vec<&str> = zh.iter().map(|e| e.phrase.as_str()).collect();
        assert!(
            phrases
                .iter()
                .all(|p| crate::prompt::chinese::is_chinese(p))
        );
        phrases.sort();
        phrases.dedup();
        assert_eq!(phrases.len(), en.len(), "duplicates in vocabulary-zh.tsv");
    }
}
