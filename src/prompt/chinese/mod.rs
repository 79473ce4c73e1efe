//! Chinese noun phrases, simplified or traditional, into the English the
//! text encoder understands: normalise (traditional to simplified, full-width
//! forms), segment over the dictionaries ([`segment`]), then order the words
//! as an English noun phrase ([`phrase`]). Offline and a few microseconds a
//! phrase once the tables are loaded.

mod english;
pub mod lexicon;
mod phrase;
pub mod segment;

/// A Chinese phrase in English, and the words that were left out because
/// neither dictionary has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct English {
    pub text: String,
    pub unknown: Vec<String>,
}

pub fn to_english(phrase: &str) -> English {
    let lexicon = lexicon::lexicon();
    let chars = segment::normalise(phrase, lexicon);
    let tokens = segment::segment(&chars, lexicon);
    let mut unknown = Vec::new();
    let text = phrase::english(tokens, lexicon, &mut unknown);
    English { text, unknown }
}

/// Whether a character is a Han ideograph (CJK Unified Ideographs, their
/// extension A and the compatibility block; the rarer planes are unlikely in
/// a prompt and fall to the other-script warning).
pub fn is_han(c: char) -> bool {
    matches!(u32::from(c), 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Kana or Hangul: Japanese or Korean, which share Han characters but not
/// this translator's grammar.
fn is_kana_or_hangul(c: char) -> bool {
    matches!(u32::from(c), 0x3040..=0x30FF | 0x31F0..=0x31FF | 0xAC00..=0xD7AF | 0x1100..=0x11FF | 0x3130..=0x318F)
}

/// Whether a phrase is Chinese: it has Han characters and no kana or Hangul.
pub fn is_chinese(phrase: &str) -> bool {
    phrase.chars().any(is_han) && !phrase.chars().any(is_kana_or_hangul)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn en(zh: &str) -> String {
        to_english(zh).text
    }

    #[test]
    fn the_examples_of_the_issue() {
        assert_eq!(en("红色圆形"), "red circle");
        assert_eq!(en("蓝色正方形"), "blue square");
        assert_eq!(en("汽车"), "car");
        assert_eq!(en("穿红衣服的人"), "person in red clothes");
        assert_eq!(en("黑猫的脸"), "black cat face");
        assert_eq!(en("一只猫"), "cat");
        assert_eq!(en("一个人"), "person");
        assert_eq!(en("两辆车"), "two cars");
    }

    #[test]
    fn english_word_order() {
        assert_eq!(en("红色的大车"), "big red car");
        assert_eq!(en("桌子上的杯子"), "cup on table");
        assert_eq!(en("左边的人"), "person on the left");
        assert_eq!(en("长耳朵的狗"), "dog with long ears");
        assert_eq!(en("戴帽子的男人"), "man wearing hat");
        assert_eq!(en("木头桌子"), "wooden table");
        assert_eq!(en("睡觉的猫"), "sleeping cat");
        assert_eq!(en("猫和狗"), "cat and dog");
        assert_eq!(en("一杯咖啡"), "cup of coffee");
        assert_eq!(en("三个穿红衣服的人"), "three people in red clothes");
        assert_eq!(en("紅色的汽車"), "red car");
    }

    #[test]
    fn unknown_words_are_named_and_left_out() {
        let e = to_english("红色\u{4DB5}车");
        assert_eq!(e.text, "red car");
        assert_eq!(e.unknown, ["\u{4DB5}"]);
    }

    #[test]
    fn odd_input_never_panics_and_says_something_or_nothing() {
        for odd in [
            "",
            "的",
            "的的的",
            "一",
            "一只",
            "两",
            "九九九九九九九九九九九九九只猫",
            "十十十",
            "。！？",
            "穿",
            "在上",
            "和和",
            "有",
            "－",
            "：",
            "猫 的 的 脸",
            "红色的",
            "\u{4DB5}\u{4DB6}",
            "ｒｅｄ 车",
            "123456789012345678901234567890 猫",
            "a-b-c 猫",
            "只",
            "个个个",
            "这",
            "们",
            "很多",
            "一杯",
            "坐在",
            "左边",
        ] {
            let e = to_english(odd);
            assert!(!e.text.contains("  "), "{odd:?}: {:?}", e.text);
            assert_eq!(e.text.trim(), e.text, "{odd:?}");
        }
        assert_eq!(en("红色的"), "red");
        assert_eq!(en("左边"), "on the left");
        assert_eq!(en("ｒｅｄ 车"), "red car");
    }

    #[test]
    fn scripts() {
        assert!(is_chinese("红色 car"));
        assert!(!is_chinese("red car"));
        assert!(!is_chinese("赤いくるま"), "Japanese");
        assert!(!is_chinese("собака"));
    }
}
