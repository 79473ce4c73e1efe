//! The words the translator knows: its own glossary (`glossary.tsv`, what
//! segmentation prompts need most, each with its part in a noun phrase) and a
//! compact CC-CEDICT table for the rest (`data/zh/cedict.tsv`, one gloss per
//! word), plus CC-CEDICT's traditional-to-simplified characters. All are
//! compiled in and parsed once, on the first Chinese prompt (a few ms).

use std::collections::HashMap;
use std::sync::OnceLock;

const GLOSSARY: &str = include_str!("glossary.tsv");
const CEDICT: &str = include_str!("../../../data/zh/cedict.tsv");
const TRAD2SIMP: &str = include_str!("../../../data/zh/trad2simp.tsv");

/// What a word does in a noun phrase (see the kinds in `glossary.tsv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Noun,
    Part,
    PairedPart,
    Clothing,
    Colour,
    Size,
    Adjective,
    Shape,
    Material,
    Verb,
    VerbNoObject,
    Position,
    Measure,
    Container,
    Numeral,
    Quantity,
    Demonstrative,
    De,
    Zai,
    Conjunction,
    With,
    PluralSuffix,
    Dropped,
}

impl Kind {
    fn parse(code: &str) -> Option<Kind> {
        Some(match code {
            "n" => Kind::Noun,
            "p" => Kind::Part,
            "pp" => Kind::PairedPart,
            "cl" => Kind::Clothing,
            "c" => Kind::Colour,
            "sz" => Kind::Size,
            "a" => Kind::Adjective,
            "sh" => Kind::Shape,
            "m" => Kind::Material,
            "v" => Kind::Verb,
            "vi" => Kind::VerbNoObject,
            "pos" => Kind::Position,
            "mw" => Kind::Measure,
            "cm" => Kind::Container,
            "num" => Kind::Numeral,
            "quant" => Kind::Quantity,
            "dem" => Kind::Demonstrative,
            "de" => Kind::De,
            "zai" => Kind::Zai,
            "conj" => Kind::Conjunction,
            "with" => Kind::With,
            "pl" => Kind::PluralSuffix,
            "x" => Kind::Dropped,
            _ => return None,
        })
    }
}

/// One sense of a glossary word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    pub kind: Kind,
    /// The English; `adjective|noun` for materials and shapes, `before a
    /// noun|alone` for positions.
    pub english: &'static str,
}

pub struct Lexicon {
    glossary: HashMap<&'static str, Vec<Sense>>,
    /// Sorted by headword bytes (the file is written so): binary search.
    cedict: Vec<(&'static str, &'static str)>,
    simplified: HashMap<char, char>,
    /// Longest glossary or CC-CEDICT word, in characters.
    pub longest: usize,
}

pub fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(Lexicon::load)
}

impl Lexicon {
    fn load() -> Lexicon {
        let mut glossary: HashMap<&'static str, Vec<Sense>> = HashMap::new();
        let mut longest = 1;
        for line in GLOSSARY.lines() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut cols = line.split('\t');
            let (Some(words), Some(kind)) = (cols.next(), cols.next().and_then(Kind::parse)) else {
                // A typo in the table is caught by the unit test below.
                continue;
            };
            let english = cols.next().unwrap_or("");
            for word in words.split(',') {
                longest = longest.max(word.chars().count());
                glossary
                    .entry(word)
                    .or_default()
                    .push(Sense { kind, english });
            }
        }
        let cedict: Vec<(&str, &str)> = CEDICT.lines().filter_map(|l| l.split_once('\t')).collect();
        for (word, _) in &cedict {
            longest = longest.max(word.chars().count());
        }
        let simplified = TRAD2SIMP
            .lines()
            .filter_map(|l| {
                let (t, s) = l.split_once('\t')?;
                Some((t.chars().next()?, s.chars().next()?))
            })
            .collect();
        Lexicon {
            glossary,
            cedict,
            simplified,
            longest,
        }
    }

    /// The glossary's senses of a (simplified) word.
    pub fn senses(&self, word: &str) -> Option<&[Sense]> {
        self.glossary.get(word).map(Vec::as_slice)
    }

    /// CC-CEDICT's gloss of a (simplified) word.
    pub fn gloss(&self, word: &str) -> Option<&'static str> {
        self.cedict
            .binary_search_by(|(w, _)| w.as_bytes().cmp(word.as_bytes()))
            .ok()
            .map(|i| self.cedict[i].1)
    }

    /// The simplified form of a character (itself when it has none).
    pub fn simplify(&self, c: char) -> char {
        self.simplified.get(&c).copied().unwrap_or(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glossary_line_parses() {
        for (n, line) in GLOSSARY.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            assert!(
                cols.len() <= 3 && cols.get(1).and_then(|k| Kind::parse(k)).is_some(),
                "glossary.tsv line {}: {line:?}",
                n + 1
            );
            assert!(
                !cols[0].split(',').any(str::is_empty),
                "glossary.tsv line {}: an empty word",
                n + 1
            );
        }
    }

    #[test]
    fn cedict_is_sorted_and_traditional_characters_simplify() {
        let l = lexicon();
        assert!(l.cedict.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(l.gloss("汽车"), Some("car"));
        assert_eq!(l.simplify('貓'), '猫');
        assert_eq!(l.simplify('車'), '车');
        assert_eq!(l.simplify('猫'), '猫');
        assert_eq!(l.senses("红色").unwrap()[0].kind, Kind::Colour);
    }
}
