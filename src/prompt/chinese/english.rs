//! The bits of English morphology the translator needs: plurals and the
//! names of small numbers.

/// Nouns that are already plural, or the same in both.
const SAME: &[&str] = &[
    "sheep",
    "fish",
    "deer",
    "shrimp",
    "clothes",
    "glasses",
    "sunglasses",
    "shoes",
    "pants",
    "jeans",
    "shorts",
    "socks",
    "gloves",
    "boots",
    "sneakers",
    "slippers",
    "high heels",
    "scissors",
    "headphones",
    "chopsticks",
    "stairs",
    "teeth",
    "lips",
    "whiskers",
    "pajamas",
    "noodles",
    "people",
    "series",
    "species",
    "aircraft",
    "bison",
    "moose",
];

const IRREGULAR: &[(&str, &str)] = &[
    ("person", "people"),
    ("man", "men"),
    ("woman", "women"),
    ("child", "children"),
    ("mouse", "mice"),
    ("foot", "feet"),
    ("tooth", "teeth"),
    ("goose", "geese"),
    ("knife", "knives"),
    ("leaf", "leaves"),
    ("wolf", "wolves"),
    ("shelf", "shelves"),
    ("calf", "calves"),
    ("loaf", "loaves"),
    ("ox", "oxen"),
    ("potato", "potatoes"),
    ("tomato", "tomatoes"),
    ("hero", "heroes"),
    ("cactus", "cacti"),
];

/// Nouns that name a substance, not things one counts: no plural after a
/// container (a cup of coffee, a bag of apples).
const MASS: &[&str] = &[
    "water",
    "coffee",
    "tea",
    "milk",
    "juice",
    "beer",
    "wine",
    "rice",
    "soup",
    "bread",
    "sand",
    "snow",
    "grass",
    "fruit",
    "food",
    "meat",
    "cheese",
    "ice",
    "ice cream",
    "paper",
    "money",
    "salad",
    "chocolate",
    "soil",
    "mud",
    "smoke",
    "fire",
    "hair",
    "fur",
    "wood",
    "metal",
    "plastic",
    "glass",
    "cloth",
    "leather",
    "noodles",
    "candy",
    "clothes",
];

pub fn is_mass(noun: &str) -> bool {
    MASS.contains(&noun) || noun.rsplit(' ').next().is_some_and(|w| MASS.contains(&w))
}

/// The plural of a noun phrase: its last word made plural.
pub fn plural(noun: &str) -> String {
    let (head, last) = match noun.rsplit_once(' ') {
        Some((h, l)) => (Some(h), l),
        None => (None, noun),
    };
    if SAME.contains(&noun) || SAME.contains(&last) {
        return noun.to_string();
    }
    let word = if let Some((_, p)) = IRREGULAR.iter().find(|(s, _)| *s == last) {
        (*p).to_string()
    } else if let Some(stem) = last.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else if last.ends_with(['s', 'x', 'z']) || last.ends_with("ch") || last.ends_with("sh") {
        format!("{last}es")
    } else {
        format!("{last}s")
    };
    match head {
        Some(h) => format!("{h} {word}"),
        None => word,
    }
}

/// A count as English words (up to twenty; digits beyond).
pub fn number(n: u32) -> String {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    WORDS
        .get(n as usize)
        .map_or_else(|| n.to_string(), |w| (*w).to_string())
}

/// A Chinese numeral made of digit characters (一 .. 九, 两) and 十 / 百.
pub fn chinese_number(digits: &[u32]) -> u32 {
    let (mut total, mut current) = (0u32, 0u32);
    for &d in digits {
        match d {
            10 | 100 => {
                total = total.saturating_add(current.max(1).saturating_mul(d));
                current = 0;
            }
            _ => current = current.saturating_mul(10).saturating_add(d),
        }
    }
    total.saturating_add(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        for (one, many) in [
            ("car", "cars"),
            ("person", "people"),
            ("police officer", "police officers"),
            ("box", "boxes"),
            ("butterfly", "butterflies"),
            ("key", "keys"),
            ("sheep", "sheep"),
            ("wine glass", "wine glasses"),
            ("old man", "old men"),
            ("bench", "benches"),
        ] {
            assert_eq!(plural(one), many);
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(chinese_number(&[2]), 2);
        assert_eq!(chinese_number(&[10]), 10);
        assert_eq!(chinese_number(&[10, 2]), 12);
        assert_eq!(chinese_number(&[2, 10]), 20);
        assert_eq!(chinese_number(&[2, 10, 3]), 23);
        assert_eq!(number(3), "three");
        assert_eq!(number(42), "42");
    }
}
