//! What the text encoder gets for a phrase as the user typed it: Latin
//! script untouched, Chinese translated offline into English
//! ([`super::chinese`]), other scripts as typed, with a warning.

use super::chinese;
use super::tokenizer::likely_not_english;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// English or another Latin-script language: passed through.
    Latin,
    /// Translated into English.
    Chinese,
    /// Neither: sent as typed; the model may not understand it.
    Other,
}

/// A phrase as the text encoder gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub text: String,
    pub script: Script,
    /// Chinese words the dictionaries do not have (left out of `text`).
    pub unknown: Vec<String>,
}

pub fn translate(phrase: &str) -> Translation {
    if chinese::is_chinese(phrase) {
        let english = chinese::to_english(phrase);
        if !english.text.is_empty() {
            return Translation {
                text: english.text,
                script: Script::Chinese,
                unknown: english.unknown,
            };
        }
        // Nothing known: today's behaviour, the phrase as typed.
        return Translation {
            text: phrase.to_string(),
            script: Script::Chinese,
            unknown: english.unknown,
        };
    }
    let script = if likely_not_english(phrase) {
        Script::Other
    } else {
        Script::Latin
    };
    Translation {
        text: phrase.to_string(),
        script,
        unknown: Vec::new(),
    }
}

/// What to tell the user about one phrase, if anything: the words left out
/// and what was sent instead, or a script the model may not understand.
pub fn warning(typed: &str, t: &Translation) -> Option<String> {
    match t.script {
        Script::Latin => None,
        Script::Chinese if t.unknown.is_empty() => None,
        Script::Chinese => {
            let words: Vec<String> = t.unknown.iter().map(|w| format!("\"{w}\"")).collect();
            let sent = if t.text == typed {
                format!("sent \"{typed}\" as typed, which the model may not understand")
            } else {
                format!(
                    "sent \"{}\" without {}",
                    t.text,
                    if words.len() == 1 { "it" } else { "them" }
                )
            };
            Some(format!(
                "\"{typed}\": {} not in the Chinese dictionary; {sent}",
                if words.len() == 1 {
                    format!("{} is", words[0])
                } else {
                    format!("{} are", words.join(", "))
                }
            ))
        }
        Script::Other => Some(format!(
            "\"{typed}\" is neither English nor Chinese; sent as typed, the model's vocabulary is \
             English and may not understand it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_passes_through_untouched() {
        for p in ["red car", "Red  CAR", "café crème", "ratio 16:9 screen"] {
            let t = translate(p);
            assert_eq!((t.text.as_str(), t.script), (p, Script::Latin));
            assert_eq!(warning(p, &t), None);
        }
    }

    #[test]
    fn chinese_is_translated_other_scripts_warned() {
        let t = translate("红色圆形");
        assert_eq!((t.text.as_str(), t.script), ("red circle", Script::Chinese));
        assert_eq!(warning("红色圆形", &t), None);
        let t = translate("собака");
        assert_eq!(t.script, Script::Other);
        assert!(warning("собака", &t).unwrap().contains("\"собака\""));
        let t = translate("红色\u{4DB5}车");
        let w = warning("红色\u{4DB5}车", &t).unwrap();
        assert!(
            w.contains("\"\u{4DB5}\" is not in") && w.contains("sent \"red car\""),
            "{w}"
        );
    }
}
