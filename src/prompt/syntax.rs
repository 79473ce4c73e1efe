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
//!
//! Chinese punctuation means the same: `；`, `，` and `、` separate phrases,
//! `－` makes a phrase negative and `：０.６` (full-width digits too) is a
//! threshold. Each phrase keeps the text as typed (labels, messages) and
//! gets the text the encoder is given ([`super::translate`]: Chinese in
//! English, anything else unchanged).

use super::translate::{translate, warning};

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
    /// The phrase as typed, trimmed: what labels and messages show.
    pub text: String,
    /// What the text encoder gets: `text` translated into English where it
    /// is Chinese, else `text` itself.
    pub encoder_text: String,
    /// What to tell the user about the translation (words left out, a
    /// script the model may not understand).
    pub note: Option<String>,
    /// Overrides the global threshold for this phrase.
    pub threshold: Option<f32>,
    pub negative: bool,
}

/// Splits a prompt list into phrases. Empty phrases are skipped, so an empty or
/// all-blank string gives none.
pub fn parse_phrases(list: &str) -> Vec<Phrase> {
    list.split([';', '；', '，', '、'])
        .filter_map(parse_one)
        .collect()
}

/// Full-width ASCII forms (０-９, ．) as ASCII, for reading a threshold.
fn half_width(text: &str) -> String {
    text.chars()
        .map(|c| match u32::from(c) {
            0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

fn parse_one(raw: &str) -> Option<Phrase> {
    let mut text = raw.trim();
    let negative = text.starts_with(['-', '－']);
    if let Some(c) = text.chars().next()
        && negative
    {
        text = text[c.len_utf8()..].trim_start();
    }
    let mut threshold = None;
    if let Some((at, colon)) = text
        .char_indices()
        .rev()
        .find(|(_, c)| matches!(c, ':' | '：'))
        && let Ok(t) = half_width(text[at + colon.len_utf8()..].trim()).parse::<f32>()
        && (0.0..=1.0).contains(&t)
    {
        threshold = Some(t);
        text = text[..at].trim_end();
    }
    if text.is_empty() {
        return None;
    }
    let translation = translate(text);
    Some(Phrase {
        text: text.to_string(),
        note: warning(text, &translation),
        encoder_text: translation.text,
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

    /// Every phrase the model must see, positives first, as the text
    /// encoder gets them: one batched decoder run.
    pub fn texts(&self) -> Vec<&str> {
        self.positives
            .iter()
            .chain(&self.negatives)
            .map(|p| p.encoder_text.as_str())
            .collect()
    }

    /// The same phrases as typed: the labels of their instances.
    pub fn labels(&self) -> Vec<&str> {
        self.positives
            .iter()
            .chain(&self.negatives)
            .map(|p| p.text.as_str())
            .collect()
    }

    /// The phrases exactly as the text encoder gets them, `;`-separated,
    /// negatives as `-phrase` (the element's `prompt-in-use`).
    pub fn in_use(&self) -> String {
        self.positives
            .iter()
            .map(|p| p.encoder_text.clone())
            .chain(
                self.negatives
                    .iter()
                    .map(|p| format!("-{}", p.encoder_text)),
            )
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One warning for the whole prompt about its phrases' translation
    /// (words left out and what was sent instead, other scripts), if any.
    pub fn translation_warning(&self) -> Option<String> {
        let notes: Vec<&str> = self
            .positives
            .iter()
            .chain(&self.negatives)
            .filter_map(|p| p.note.as_deref())
            .collect();
        (!notes.is_empty()).then(|| notes.join("; "))
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
            encoder_text: text.into(),
            note: None,
            threshold,
            negative,
        }
    }

    #[test]
    fn chinese_punctuation_means_the_same() {
        let set = PromptSet::parse("红色圆形；蓝色正方形：０.６，－白色三角形、dog; 猫:0.3", "");
        assert_eq!(
            set.labels(),
            ["红色圆形", "蓝色正方形", "dog", "猫", "白色三角形"]
        );
        assert_eq!(
            set.texts(),
            ["red circle", "blue square", "dog", "cat", "white triangle"]
        );
        assert_eq!(set.positives[1].threshold, Some(0.6));
        assert_eq!(set.positives[3].threshold, Some(0.3));
        assert!(set.negatives[0].negative);
        assert_eq!(
            set.in_use(),
            "red circle; blue square; dog; cat; -white triangle"
        );
        assert_eq!(set.translation_warning(), None);
        // The example of docs/prompts.md.
        let set = PromptSet::parse("一只猫；dog：0.6，－玩具狗", "");
        assert_eq!(set.in_use(), "cat; dog; -toy dog");
        assert_eq!(set.positives[1].threshold, Some(0.6));
        // A colon that is not a threshold stays text, in either width.
        assert_eq!(parse_phrases("标志：停")[0].text, "标志：停");
        assert_eq!(parse_phrases("比例16:9的屏幕")[0].text, "比例16:9的屏幕");
    }

    #[test]
    fn the_in_use_prompt_and_the_warning() {
        let set = PromptSet::parse("dog; -cat", "toy；собака");
        assert_eq!(set.in_use(), "dog; -cat; -toy; -собака");
        let w = set.translation_warning().expect("a warning");
        assert!(
            w.contains("\"собака\" is neither English nor Chinese"),
            "{w}"
        );
        let set = PromptSet::parse("红色\u{4DB5}车; 蓝色\u{4DB5}", "");
        let w = set.translation_warning().expect("a warning");
        assert!(w.contains("sent \"red car\""), "{w}");
        assert!(w.contains("sent \"blue\""), "{w}");
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
