//! Word segmentation over the translator's own dictionary: the split of a
//! phrase into known words with the lowest cost, by dynamic programming.
//!
//! Why not jieba: its segments would still have to be looked up here, and a
//! word it finds that this dictionary lacks is no better than two that it
//! has; its 5 MB dictionary and HMM are for running text, while prompts are
//! short noun phrases. Costs: a glossary word 1, or 0.6 for an adjective
//! (colour, size, shape, other), a numeral or a position, whose meaning
//! composes with the words beside it (一头牛 is 一 头 牛 "cow", not
//! CC-CEDICT's 一头 "one head"; 河边 is 河 边 "next to river", not "river
//! bank", 海上 "on sea", not "maritime"); a
//! CC-CEDICT word 1 + 0.45 per character; an unknown character 10. So an
//! adjective and a noun from the glossary beat CC-CEDICT's compound (小车 is
//! "small car", not CC-CEDICT's "small model car"), while a compound of nouns
//! stays a compound (雪人 "snowman", not "snow person"; 游泳池 "swimming
//! pool"). Ties go to the longer word first (草地上 is 草地 上, "on the
//! lawn", not 草 地上).

use super::lexicon::{Kind, Lexicon, Sense};

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A glossary word and its senses.
    Word(String, &'static [Sense]),
    /// A CC-CEDICT word and its gloss.
    Gloss(String, &'static str),
    /// A run of ASCII letters (an English word in a Chinese phrase).
    Latin(String),
    /// A run of digits.
    Number(u32),
    /// A character neither dictionary has.
    Unknown(String),
}

const GLOSSARY_COST: f32 = 1.0;
const ADJECTIVE_COST: f32 = 0.6;
const UNKNOWN_COST: f32 = 10.0;

fn cedict_cost(chars: usize) -> f32 {
    1.0 + 0.45 * chars as f32
}

/// Lowers ASCII, turns full-width ASCII forms into ASCII and traditional
/// characters into simplified ones: the form the dictionaries are keyed by.
pub fn normalise(text: &str, lexicon: &Lexicon) -> Vec<char> {
    text.chars()
        .map(|c| match u32::from(c) {
            0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            0x3000 => ' ',
            _ => c,
        })
        .map(|c| lexicon.simplify(c.to_ascii_lowercase()))
        .collect()
}

/// Whether a character is skipped between words: spaces and punctuation.
fn is_separator(c: char) -> bool {
    !c.is_alphanumeric()
}

pub fn segment(chars: &[char], lexicon: &'static Lexicon) -> Vec<Token> {
    let n = chars.len();
    // best[i]: the lowest cost of chars[i..], the length of the first step
    // and its token (None for a separator).
    let mut best: Vec<(f32, usize, Option<Token>)> = vec![(f32::INFINITY, 1, None); n + 1];
    best[n].0 = 0.0;
    for i in (0..n).rev() {
        let mut candidates: Vec<(f32, usize, Option<Token>)> = Vec::new();
        let c = chars[i];
        if is_separator(c) {
            candidates.push((0.0, 1, None));
        } else if c.is_ascii_alphanumeric() {
            let len = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '-')
                .count();
            let run: String = chars[i..i + len].iter().collect();
            let token = match run.parse::<u32>() {
                Ok(v) => Token::Number(v),
                Err(_) => Token::Latin(run),
            };
            candidates.push((GLOSSARY_COST, len, Some(token)));
        } else {
            candidates.push((UNKNOWN_COST, 1, Some(Token::Unknown(c.to_string()))));
        }
        if !is_separator(c) {
            for len in 1..=lexicon.longest.min(n - i) {
                let word: String = chars[i..i + len].iter().collect();
                if let Some(senses) = lexicon.senses(&word) {
                    let cost = if senses.iter().any(|s| {
                        matches!(
                            s.kind,
                            Kind::Colour
                                | Kind::Size
                                | Kind::Adjective
                                | Kind::Shape
                                | Kind::Numeral
                                | Kind::Position
                        )
                    }) {
                        ADJECTIVE_COST
                    } else {
                        GLOSSARY_COST
                    };
                    candidates.push((cost, len, Some(Token::Word(word, senses))));
                } else if let Some(gloss) = lexicon.gloss(&word) {
                    candidates.push((cedict_cost(len), len, Some(Token::Gloss(word, gloss))));
                }
            }
        }
        for (cost, len, token) in candidates {
            let total = cost + best[i + len].0;
            // Candidates come shortest first: `<=` gives ties to the longer.
            if total <= best[i].0 {
                best[i] = (total, len, token);
            }
        }
    }
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < n {
        let (_, len, token) = &best[i];
        tokens.extend(token.clone());
        i += len;
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::super::lexicon::lexicon;
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let l = lexicon();
        segment(&normalise(text, l), l)
            .into_iter()
            .map(|t| match t {
                Token::Word(w, _) | Token::Gloss(w, _) | Token::Latin(w) | Token::Unknown(w) => w,
                Token::Number(v) => v.to_string(),
            })
            .collect()
    }

    #[test]
    fn splits_into_the_glossary_words() {
        assert_eq!(words("穿红衣服的人"), ["穿", "红", "衣服", "的", "人"]);
        assert_eq!(words("黑猫的脸"), ["黑", "猫", "的", "脸"]);
        assert_eq!(words("两辆汽车"), ["两", "辆", "汽车"]);
        assert_eq!(
            words("紅色圓形"),
            ["红色", "圆形"],
            "traditional characters"
        );
        assert_eq!(words("红色 car，3只"), ["红色", "car", "3", "只"]);
        assert_eq!(words("白色T恤"), ["白色", "t恤"]);
    }
}
