//! The prompt syntax: several phrases in one string, optional per-phrase
//! thresholds, and negative phrases.
//!
//! ```text
//! red car; person:0.6; dog; -cat
//! ```
//!
//! Phrases are separated by `;`. A trailing `:N` with 0 <= N <= 1 is that
//! phrase's score threshold. A leading `-` makes the phrase negative: its
//! instances are not reported, they remove the positive instances they cover.

/// One phrase of a prompt list.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    /// The text sent to the model, trimmed.
    pub text: String,
    /// Overrides the global threshold for this phrase.
    pub threshold: Option<f32>,
    pub negative: bool,
}

/// Splits a prompt list into phrases. Empty phrases are skipped, so an empty or
/// all-blank string gives none.
pub fn parse_phrases(list: &str) -> Vec<Phrase> {
    list.split(';').filter_map(parse_one).collect()
}

fn parse_one(raw: &str) -> Option<Phrase> {
    let mut text = raw.trim();
    let negative = text.starts_with('-');
    if negative {
        text = text[1..].trim_start();
    }
    let mut threshold = None;
    if let Some((head, tail)) = text.rsplit_once(':')
        && let Ok(t) = tail.trim().parse::<f32>()
        && (0.0..=1.0).contains(&t)
    {
        threshold = Some(t);
        text = head.trim_end();
    }
    (!text.is_empty()).then(|| Phrase {
        text: text.to_string(),
        threshold,
        negative,
    })
}

/// A whole request: the positive phrases from `prompt`, the negative ones
/// from `-phrase` items and from the `negative-prompt` list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptSet {
    pub positives: Vec<Phrase>,
    pub negatives: Vec<Phrase>,
}

impl PromptSet {
    pub fn parse(prompt: &str, negative_prompt: &str) -> PromptSet {
        let mut set = PromptSet::default();
        for p in parse_phrases(prompt) {
            if p.negative {
                set.negatives.push(p);
            } else {
                set.positives.push(p);
            }
        }
        set.negatives
            .extend(parse_phrases(negative_prompt).into_iter().map(|p| Phrase {
                negative: true,
                ..p
            }));
        set
    }

    /// Every phrase the model must see, positives first: one batched decoder run.
    pub fn texts(&self) -> Vec<&str> {
        self.positives
            .iter()
            .chain(&self.negatives)
            .map(|p| p.text.as_str())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.positives.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrase(text: &str, threshold: Option<f32>, negative: bool) -> Phrase {
        Phrase {
            text: text.into(),
            threshold,
            negative,
        }
    }

    #[test]
    fn lists_thresholds_and_negatives() {
        let set = PromptSet::parse(" red car ; person:0.6;dog; -cat ;; ", "bus:0.2");
        assert_eq!(
            set.positives,
            [
                phrase("red car", None, false),
                phrase("person", Some(0.6), false),
                phrase("dog", None, false)
            ]
        );
        assert_eq!(
            set.negatives,
            [phrase("cat", None, true), phrase("bus", Some(0.2), true)]
        );
        assert_eq!(set.texts(), ["red car", "person", "dog", "cat", "bus"]);
    }

    #[test]
    fn colons_that_are_not_thresholds_stay_text() {
        assert_eq!(
            parse_phrases("ratio 16:9 screen"),
            [phrase("ratio 16:9 screen", None, false)]
        );
        assert_eq!(
            parse_phrases("sign: stop"),
            [phrase("sign: stop", None, false)]
        );
        assert_eq!(parse_phrases("cat:1.5"), [phrase("cat:1.5", None, false)]);
    }

    #[test]
    fn blank_input_has_no_phrase() {
        assert!(PromptSet::parse("", "").is_empty());
        assert!(PromptSet::parse(" ; ;  ", "").is_empty());
        assert!(parse_phrases("-").is_empty());
        assert!(
            PromptSet::parse("-cat", "").is_empty(),
            "only a negative: nothing to report"
        );
    }
}
