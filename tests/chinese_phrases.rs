//! The Chinese translator against a committed list of prompts and the
//! English a translator would accept for each (tests/fixtures/chinese/
//! phrases.tsv): at least 95% must match. The misses are printed.

use samclipseg::prompt::translate::{Script, translate};

const PHRASES: &str = include_str!("fixtures/chinese/phrases.tsv");
const REQUIRED: f64 = 0.95;

/// Lower-cased, articles and extra spaces dropped: how a translator's answer
/// and ours are compared.
fn normalise(english: &str) -> String {
    english
        .to_lowercase()
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cases() -> Vec<(&'static str, Vec<&'static str>)> {
    PHRASES
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (zh, answers) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("phrases.tsv: no tab in {l:?}"));
            (zh, answers.split('|').collect())
        })
        .collect()
}

#[test]
fn the_committed_phrase_list_is_translated_at_95_percent_or_better() {
    let cases = cases();
    assert!(cases.len() >= 300, "{} phrases", cases.len());
    let mut unique: Vec<&str> = cases.iter().map(|(zh, _)| *zh).collect();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), cases.len(), "a phrase is listed twice");

    let mut misses = Vec::new();
    for (zh, answers) in &cases {
        let t = translate(zh);
        assert_eq!(t.script, Script::Chinese, "{zh}");
        let ours = normalise(&t.text);
        if !answers.iter().any(|a| normalise(a) == ours) {
            misses.push(format!(
                "{zh}: got {:?}, accepted {}",
                t.text,
                answers.join(" | ")
            ));
        }
    }
    let rate = 1.0 - misses.len() as f64 / cases.len() as f64;
    println!(
        "{} of {} phrases translated as accepted ({:.1}%); misses:",
        cases.len() - misses.len(),
        cases.len(),
        rate * 100.0
    );
    for m in &misses {
        println!("  {m}");
    }
    assert!(
        rate >= REQUIRED,
        "{:.1}% of the phrases matched, below {:.0}%:\n{}",
        rate * 100.0,
        REQUIRED * 100.0,
        misses.join("\n")
    );
}

#[test]
fn a_phrase_translates_in_microseconds() {
    let cases = cases();
    let load = std::time::Instant::now();
    translate("热身"); // loads the tables
    println!("{:?} to load the tables", load.elapsed());
    let start = std::time::Instant::now();
    for (zh, _) in &cases {
        std::hint::black_box(translate(zh));
    }
    let per_phrase = start.elapsed() / cases.len() as u32;
    println!("{per_phrase:?} per phrase");
    // Generous for a shared, debug-built CI machine; release runs far below.
    assert!(
        per_phrase < std::time::Duration::from_millis(1),
        "{per_phrase:?}"
    );
}
