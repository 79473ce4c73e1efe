//! From segmented words to an English noun phrase, the way English orders it:
//! modifiers before the head noun (adjectives by size, age, shape, colour,
//! material), clauses after it (穿红衣服的人 "person in red clothes"), a
//! possessor as a compound (黑猫的脸 "black cat face"), counts only where
//! they are counts (两辆车 "two cars", but 一只猫 "cat"), and no 的 or
//! measure words.

use super::english;
use super::lexicon::{Kind, Lexicon, Sense};
use super::segment::Token;

#[derive(Debug, Clone)]
struct Item {
    kind: Kind,
    english: String,
    /// A numeral's digits (一 = 1, 十 = 10), merged into one number later.
    digits: Vec<u32>,
}

impl Item {
    fn new(kind: Kind, english: &str) -> Item {
        Item {
            kind,
            english: english.to_string(),
            digits: Vec::new(),
        }
    }

    fn is_noun(&self) -> bool {
        matches!(
            self.kind,
            Kind::Noun | Kind::Part | Kind::PairedPart | Kind::Clothing
        )
    }

    /// Where an adjective goes among others: size, age and the rest, shape,
    /// colour, material (English's order); None for other words.
    fn adjective_rank(&self) -> Option<u8> {
        Some(match self.kind {
            Kind::Size => 1,
            Kind::Adjective | Kind::VerbNoObject => 2,
            Kind::Shape => 3,
            Kind::Colour => 4,
            Kind::Material => 5,
            _ => return None,
        })
    }

    /// `adjective|noun` (materials, shapes) and `before a noun|alone`
    /// (positions): the first form.
    fn first(&self) -> &str {
        self.english.split('|').next().unwrap_or("")
    }

    fn second(&self) -> Option<&str> {
        self.english.split_once('|').map(|(_, s)| s)
    }
}

/// The English of a segmented phrase; the words neither dictionary knows go
/// to `unknown` (adjacent characters together) and are left out.
pub fn english(tokens: Vec<Token>, lexicon: &'static Lexicon, unknown: &mut Vec<String>) -> String {
    let items = classify(tokens, lexicon, unknown);
    let (items, quantity) = quantities(items);
    render(items, &quantity)
}

fn choose(senses: &[Sense], after_count: bool) -> Option<Sense> {
    let measure = |s: &&Sense| matches!(s.kind, Kind::Measure | Kind::Container);
    if after_count && let Some(s) = senses.iter().find(measure) {
        return Some(*s);
    }
    senses.iter().find(|s| !measure(s)).copied()
}

fn classify(tokens: Vec<Token>, lexicon: &Lexicon, unknown: &mut Vec<String>) -> Vec<Item> {
    let mut items: Vec<Item> = Vec::new();
    let mut last_unknown = false;
    for token in tokens {
        let after_count = items.last().is_some_and(|i| {
            matches!(i.kind, Kind::Numeral | Kind::Demonstrative | Kind::Quantity)
        });
        let was_unknown = std::mem::replace(&mut last_unknown, false);
        let item = match token {
            Token::Word(word, senses) => match choose(senses, after_count) {
                Some(s) if s.kind == Kind::Numeral => {
                    let digit = s.english.parse().unwrap_or(0);
                    if let Some(prev) = items.last_mut()
                        && prev.kind == Kind::Numeral
                        && !prev.digits.is_empty()
                    {
                        prev.digits.push(digit);
                        continue;
                    }
                    Item {
                        digits: vec![digit],
                        ..Item::new(Kind::Numeral, "")
                    }
                }
                Some(s) => Item::new(s.kind, s.english),
                None => {
                    // Only a measure word here, not after a count: its own
                    // meaning (杯 cup) or, failing that, CC-CEDICT's.
                    match senses.iter().find(|s| s.kind == Kind::Container) {
                        Some(s) => Item::new(Kind::Noun, s.english.trim_end_matches("|pl")),
                        None => match lexicon.gloss(&word) {
                            Some(g) => gloss_item(&word, g),
                            None => continue,
                        },
                    }
                }
            },
            Token::Gloss(word, gloss) => gloss_item(&word, gloss),
            Token::Latin(word) => Item::new(Kind::Noun, &word),
            Token::Number(v) => Item {
                english: v.to_string(),
                ..Item::new(Kind::Numeral, "")
            },
            Token::Unknown(c) => {
                match unknown.last_mut() {
                    Some(w) if was_unknown => w.push_str(&c),
                    _ => unknown.push(c),
                }
                last_unknown = true;
                continue;
            }
        };
        // 长长的 "long", 大大的 "big": a repeated word is said once.
        if items.last().is_some_and(|l| {
            l.kind == item.kind && l.english == item.english && l.digits.is_empty()
        }) {
            continue;
        }
        items.push(item);
    }
    items
}

/// A CC-CEDICT word: a noun, a colour for the colour words (…色), or, for
/// an action (a gloss "to …", only where CC-CEDICT has no other sense of
/// the character), left out: in a noun phrase its English reads as noise
/// ("chair to come near to back" for 椅子的靠背).
fn gloss_item(word: &str, gloss: &str) -> Item {
    if gloss.starts_with("to ") {
        return Item::new(Kind::Dropped, "");
    }
    let gloss = gloss
        .strip_prefix("a ")
        .or_else(|| gloss.strip_prefix("an "))
        .or_else(|| gloss.strip_prefix("the "))
        .unwrap_or(gloss);
    let kind = if word.ends_with('色') && word.chars().count() > 1 {
        Kind::Colour
    } else {
        Kind::Noun
    };
    // CC-CEDICT capitalises names (Spring Festival); the encoder lower-cases.
    Item::new(kind, &gloss.to_lowercase())
}

/// How many: a count (两辆 two), a container (一杯 cup of), a word (很多
/// many), or just plural (这些, 们).
#[derive(Debug, Default)]
struct Quantity {
    count: Option<u32>,
    container: Option<String>,
    word: Option<String>,
    plural: bool,
}

fn quantities(items: Vec<Item>) -> (Vec<Item>, Quantity) {
    let mut q = Quantity::default();
    let mut kept = Vec::with_capacity(items.len());
    let mut iter = items.into_iter().peekable();
    while let Some(item) = iter.next() {
        match item.kind {
            Kind::Numeral | Kind::Demonstrative | Kind::Quantity => {
                match item.kind {
                    Kind::Numeral => {
                        let n = if item.digits.is_empty() {
                            item.english.parse().unwrap_or(1)
                        } else {
                            english::chinese_number(&item.digits)
                        };
                        if n != 1 {
                            q.count = Some(n);
                            q.plural = true;
                        }
                    }
                    Kind::Quantity => {
                        q.plural = true;
                        if !item.english.is_empty() {
                            q.word = Some(item.english);
                        }
                    }
                    _ => q.plural |= item.english == "pl",
                }
                match iter.peek().map(|i| i.kind) {
                    Some(Kind::Measure) => {
                        iter.next();
                    }
                    Some(Kind::Container) => {
                        q.container = iter.next().map(|i| i.english);
                    }
                    _ => {}
                }
            }
            Kind::PluralSuffix => q.plural = true,
            Kind::Dropped | Kind::Measure => {}
            Kind::Container => kept.push(Item::new(Kind::Noun, item.first())),
            _ => kept.push(item),
        }
    }
    (kept, q)
}

/// One noun phrase without 的: adjectives in English order, then the nouns.
#[derive(Debug, Default, Clone)]
struct Np {
    adjectives: Vec<Item>,
    nouns: Vec<String>,
    last: Option<Kind>,
}

impl Np {
    fn from(items: &[Item]) -> Np {
        let mut np = Np::default();
        for item in items {
            if item.adjective_rank().is_some() {
                np.adjectives.push(item.clone());
            } else if item.is_noun() {
                np.nouns.push(item.english.clone());
                np.last = Some(item.kind);
            }
        }
        np
    }

    fn render(mut self, plural: bool) -> String {
        self.adjectives
            .sort_by_key(|a| a.adjective_rank().unwrap_or(0));
        if self.nouns.is_empty()
            && let Some(i) = self.adjectives.iter().rposition(|a| a.second().is_some())
        {
            // 红色圆 "red circle", 木头 "wood": the adjective is the noun.
            let a = self.adjectives.remove(i);
            self.nouns.push(a.second().unwrap_or_default().to_string());
        }
        if plural && let Some(last) = self.nouns.last_mut() {
            *last = english::plural(last);
        }
        let words: Vec<&str> = self
            .adjectives
            .iter()
            .map(Item::first)
            .chain(self.nouns.iter().map(String::as_str))
            .collect();
        words.join(" ")
    }
}

/// Noun phrases joined by 和: "cat and dog".
fn render_list(items: &[Item], extra: &[Item], plural: bool) -> String {
    let parts: Vec<String> = items
        .split(|i| i.kind == Kind::Conjunction)
        .filter(|p| !p.is_empty())
        .enumerate()
        .map(|(n, p)| {
            let mut np = Np::from(p);
            if n == 0 {
                np.adjectives.splice(0..0, extra.iter().cloned());
            }
            np.render(plural)
        })
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() && !extra.is_empty() {
        return Np {
            adjectives: extra.to_vec(),
            ..Np::default()
        }
        .render(false);
    }
    parts.join(" and ")
}

/// A place: 桌子上 "on table", 左边 "on the left".
fn location(items: &[Item]) -> String {
    let (pos, rest) = match items.split_last() {
        Some((p, rest)) if p.kind == Kind::Position => (p, rest),
        _ => return render_list(items, &[], false),
    };
    let np = render_list(rest, &[], false);
    if np.is_empty() {
        pos.second().unwrap_or(pos.first()).to_string()
    } else {
        format!("{} {np}", pos.first())
    }
}

/// What a modifier (a part before 的) becomes.
enum Modifier {
    /// Adjectives for the next noun phrase.
    Adjectives(Vec<Item>),
    /// A noun phrase before the head: 黑猫(的脸) "black cat (face)".
    Compound(Vec<Item>),
    /// A phrase after the head: (人) "in red clothes".
    After(String),
}

fn with_phrase(word: &str, items: &[Item]) -> String {
    let np = Np::from(items);
    let plural = np.last == Some(Kind::PairedPart);
    let text = render_list(items, &[], plural);
    format!("{word} {text}").trim().to_string()
}

fn modifier(chunk: &[Item], head: Option<Kind>) -> Modifier {
    let items: Vec<Item> = chunk
        .iter()
        .filter(|i| i.kind != Kind::Zai)
        .cloned()
        .collect();
    let ends_with_position = items.last().is_some_and(|i| i.kind == Kind::Position);
    if let Some(v) = items.iter().position(|i| i.kind == Kind::Verb) {
        let object = &items[v + 1..];
        let mut text = format!("{} {}", items[v].english, location(object));
        if v > 0 && items[v - 1].kind == Kind::Position {
            text = format!("{text} {}", location(&items[..v]));
        }
        return Modifier::After(text.trim().to_string());
    }
    if let Some(v) = items.iter().position(|i| i.kind == Kind::VerbNoObject) {
        let mut rest = items.clone();
        let verb = rest.remove(v);
        if rest.is_empty() {
            return Modifier::Adjectives(vec![verb]);
        }
        return Modifier::After(format!("{} {}", verb.english, location(&rest)));
    }
    if ends_with_position {
        return Modifier::After(location(&items));
    }
    if let Some(first) = items.first()
        && first.kind == Kind::With
    {
        return Modifier::After(with_phrase(&first.english, &items[1..]));
    }
    if items.iter().all(|i| i.adjective_rank().is_some()) {
        return Modifier::Adjectives(items);
    }
    let np = Np::from(&items);
    let head_is_part = matches!(head, Some(Kind::Part | Kind::PairedPart | Kind::Clothing));
    match np.last {
        Some(Kind::Clothing) if !head_is_part => {
            Modifier::After(format!("in {}", render_list(&items, &[], false)))
        }
        Some(Kind::Part | Kind::PairedPart) if !head_is_part => {
            Modifier::After(with_phrase("with", &items))
        }
        _ => Modifier::Compound(items),
    }
}

fn render(items: Vec<Item>, q: &Quantity) -> String {
    let mut chunks: Vec<Vec<Item>> = items
        .split(|i| i.kind == Kind::De)
        .map(<[Item]>::to_vec)
        .collect();
    let mut head = chunks.pop().unwrap_or_default();
    chunks.retain(|c| !c.is_empty());
    // A clause after the head without 的 (猫在桌子上, 人骑自行车): after it.
    let mut tail = Vec::new();
    if let Some(k) = head.iter().enumerate().position(|(k, i)| {
        matches!(
            i.kind,
            Kind::Zai | Kind::Verb | Kind::VerbNoObject | Kind::With
        ) && head[..k].iter().any(Item::is_noun)
    }) {
        tail = head.split_off(k);
    }
    // A place without a head (左边, 桌子上): the place itself.
    if head.last().is_some_and(|i| i.kind == Kind::Position) {
        tail.splice(0..0, head.drain(..));
    }
    let head_kind = head.iter().rev().find(|i| i.is_noun()).map(|i| i.kind);

    let mut pending: Vec<Item> = Vec::new();
    let mut before: Vec<String> = Vec::new();
    let mut after: Vec<String> = Vec::new();
    for chunk in &chunks {
        match modifier(chunk, head_kind) {
            Modifier::Adjectives(a) => pending.extend(a),
            Modifier::Compound(items) => {
                before.push(render_list(&items, &std::mem::take(&mut pending), false));
            }
            Modifier::After(text) => after.push(text),
        }
    }
    if !tail.is_empty() {
        match modifier(&tail, head_kind) {
            Modifier::Adjectives(a) => pending.extend(a),
            Modifier::Compound(items) => after.push(render_list(&items, &[], false)),
            Modifier::After(text) => after.push(text),
        }
    }
    // 一群鸟 "group of birds", 一袋苹果 "bag of apples", but 一杯咖啡 "cup
    // of coffee".
    let head_np = Np::from(&head);
    let countable =
        head_np.nouns.last().is_none_or(|n| !english::is_mass(n)) && head_np.nouns.last().is_some();
    let plural_head = if q.container.is_some() {
        countable
    } else {
        q.plural
    };
    let head_text = render_list(&head, &pending, plural_head);

    let mut words: Vec<String> = Vec::new();
    if let Some(w) = &q.word {
        words.push(w.clone());
    } else if let Some(n) = q.count {
        words.push(english::number(n));
    }
    if let Some(c) = &q.container {
        let c = c.trim_end_matches("|pl");
        let c = if q.count.is_some() || q.plural {
            english::plural(c)
        } else {
            c.to_string()
        };
        words.push(format!("{c} of"));
    }
    words.extend(before);
    words.push(head_text);
    words.extend(after);
    words
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
