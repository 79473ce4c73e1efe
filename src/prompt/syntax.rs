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

/// Most phrases one prompt may ask for, positives and negatives together.
///
/// Every phrase is one more item of the decoder batch, and each item comes
/// back with its mask logits: on SAM 3, 200 queries x 288 x 288 floats, 66 MB
/// per phrase. 16 phrases is about 1 GB per decoder run, already more than a
/// live stream can afford per frame, while a prompt that names a scene rarely
/// needs more than a handful. The TensorRT optimisation profiles stop here too
/// (see `backend::trt_profile_shapes`).
pub const MAX_PHRASES: usize = 16;

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

/// The warning for phrases dropped by the cap: names the cap and each phrase.
fn dropped_warning(max: usize, dropped: &[Phrase]) -> String {
    let names: Vec<String> = dropped
        .iter()
        .map(|p| format!("{}{:?}", if p.negative { "-" } else { "" }, p.text))
        .collect();
    format!(
        "the prompt has {} phrases, more than the cap of {max} per prompt (positives and \
         negatives together); dropped {}: {}",
        max + dropped.len(),
        dropped.len(),
        names.join(", ")
    )
}

/// A whole request: the positive phrases from `prompt`, the negative ones
/// from `-phrase` items and from the `negative-prompt` list.
///
/// At most [`MAX_PHRASES`] phrases are kept: positives first, then negatives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptSet {
    pub positives: Vec<Phrase>,
    pub negatives: Vec<Phrase>,
    /// Phrases dropped because the prompt had more than [`MAX_PHRASES`].
    pub truncated: usize,
    /// What to tell the user about them (see [`PromptSet::cap_warning`]).
    warning: Option<String>,
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
        set.cap(MAX_PHRASES);
        set
    }

    /// Keeps the first `max` phrases, positives first. Not logged here: a
    /// stream parses its prompt for every frame; callers warn once per value.
    fn cap(&mut self, max: usize) {
        let positives = self.positives.len().min(max);
        let negatives = self.negatives.len().min(max - positives);
        let mut dropped: Vec<Phrase> = self.positives.split_off(positives);
        dropped.extend(self.negatives.split_off(negatives));
        self.truncated = dropped.len();
        self.warning = (!dropped.is_empty()).then(|| dropped_warning(max, &dropped));
    }

    /// A warning naming the cap and the dropped phrases, when some were dropped.
    pub fn cap_warning(&self) -> Option<&str> {
        self.warning.as_deref()
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
    fn phrases_beyond_the_cap_are_dropped_positives_first() {
        let list = |prefix: &str, n: usize| {
            (0..n)
                .map(|i| format!("{prefix}{i}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        // Within the cap: nothing dropped.
        let set = PromptSet::parse(&list("p", MAX_PHRASES - 2), &list("n", 2));
        assert_eq!((set.texts().len(), set.truncated), (MAX_PHRASES, 0));

        // Too many negatives: every positive stays, the last negatives go.
        let set = PromptSet::parse(&list("p", 10), &list("n", 10));
        assert_eq!(set.positives.len(), 10);
        assert_eq!(set.negatives.len(), MAX_PHRASES - 10);
        assert_eq!(set.truncated, 20 - MAX_PHRASES);
        assert_eq!(
            set.negatives.last().unwrap().text,
            format!("n{}", MAX_PHRASES - 11)
        );

        // Too many positives: no room is left for negatives.
        let set = PromptSet::parse(&format!("{}; -x", list("p", 40)), "y");
        assert_eq!(set.positives.len(), MAX_PHRASES);
        assert!(set.negatives.is_empty());
        assert_eq!(set.truncated, 40 - MAX_PHRASES + 2);
        assert_eq!(set.texts().len(), MAX_PHRASES);
        assert_eq!(
            set.positives[MAX_PHRASES - 1].text,
            format!("p{}", MAX_PHRASES - 1)
        );
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

    #[test]
    fn the_cap_warning_names_the_cap_and_the_dropped_phrases() {
        let many: Vec<String> = (0..MAX_PHRASES + 2).map(|i| format!("thing {i}")).collect();
        let set = PromptSet::parse(&many.join("; "), "");
        let w = set.cap_warning().expect("a warning");
        assert!(w.contains(&format!("cap of {MAX_PHRASES}")), "{w}");
        assert!(w.contains(&format!("\"thing {}\"", MAX_PHRASES + 1)), "{w}");
        assert!(PromptSet::parse("cat; dog", "").cap_warning().is_none());
    }
}
