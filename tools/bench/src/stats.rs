//! Median and p90 of a set of timings, computed as engines/bench_reference.py
//! computes them, so that our rows and the reference's compare like for like;
//! and how a timing in milliseconds is written (the progress lines, the tables).

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub median: f64,
    pub p90: f64,
}

/// Median and nearest-rank p90 of `ms`; both NaN when it is empty.
pub fn stats(mut ms: Vec<f64>) -> Stats {
    if ms.is_empty() {
        return Stats {
            median: f64::NAN,
            p90: f64::NAN,
        };
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    // Nearest rank, as bench_reference.py computes it.
    let p90 = ms[((0.9 * n as f64).ceil() as usize).max(1) - 1];
    Stats { median, p90 }
}

/// Milliseconds with three significant-ish digits: 0.108, 26.54, 4154.
pub fn ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_keeps_about_three_digits() {
        assert_eq!(ms(0.1084), "0.108");
        assert_eq!(ms(26.544), "26.54");
        assert_eq!(ms(4154.4), "4154");
    }

    #[test]
    fn median_of_odd_and_even_counts_in_any_order() {
        assert_eq!(stats(vec![3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(stats(vec![4.0, 1.0, 3.0, 2.0]).median, 2.5);
    }

    #[test]
    fn p90_is_the_nearest_rank() {
        let ten: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(stats(ten).p90, 9.0);
        let eleven: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(stats(eleven).p90, 10.0);
        assert_eq!(
            stats(vec![5.0]),
            Stats {
                median: 5.0,
                p90: 5.0
            }
        );
    }

    #[test]
    fn no_timings_give_nan() {
        let s = stats(Vec::new());
        assert!(s.median.is_nan() && s.p90.is_nan());
    }
}
