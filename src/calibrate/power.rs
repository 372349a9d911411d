//! How likely a candidate is to be certified on the tested rows, predicted
//! from the choosing rows alone: what decides between candidate families
//! and bounds without reading a tested row (so the guarantee is untouched).
//!
//! A candidate lets a share s of rows leave early; on the choosing rows e
//! of them left, h broke and g fixed a row. The tested rows' counts are
//! predicted by their posterior predictive: the early leavers among
//! n tested rows are about n·s, and each breaks a row with probability
//! q ~ Beta(h + ½, e − h + ½) (Jeffreys' prior), so the harms are
//! beta-binomial; the helps likewise. The chance of certification is the
//! predicted probability that the bound's p-value is at most δ.

use super::choose::Bound;
use super::guarantee;

/// Counts on the choosing rows for one candidate.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// Choosing rows, and those that left early.
    pub rows: u64,
    pub leaving: u64,
    pub harms: u64,
    pub helps: u64,
}

/// The probabilities of 0, 1, 2, … successes of BetaBinomial(n, a, b),
/// until they sum to within `1e-6` of 1 (or `MAX_TERMS` are listed).
fn beta_binomial(n: u64, a: f64, b: f64) -> Vec<f64> {
    const MAX_TERMS: u64 = 400;
    // P(0) = Π_{i<n} (b + i) / (a + b + i), in log space.
    let mut ln_p0 = 0.0;
    for i in 0..n {
        let i = i as f64;
        ln_p0 += ((b + i) / (a + b + i)).ln();
    }
    let mut p = ln_p0.exp();
    let mut out = vec![p];
    let mut total = p;
    let mut k = 0u64;
    while k < n && k < MAX_TERMS && total < 1.0 - 1e-6 {
        let kf = k as f64;
        p *= (n - k) as f64 * (a + kf) / ((kf + 1.0) * (b + n as f64 - kf - 1.0));
        out.push(p);
        total += p;
        k += 1;
    }
    out
}

/// The predicted chance that the candidate is certified on `testing` rows.
pub fn chance(seen: Seen, bound: Bound, epsilon: f64, delta: f64, stake: f64, testing: u64) -> f64 {
    if seen.rows == 0 {
        return 0.0;
    }
    let leaving = ((testing as f64) * seen.leaving as f64 / seen.rows as f64).round() as u64;
    let spread = |count: u64| {
        beta_binomial(
            leaving,
            count as f64 + 0.5,
            seen.leaving.saturating_sub(count) as f64 + 0.5,
        )
    };
    let harms = spread(seen.harms);
    match bound {
        Bound::Binomial => {
            // The harms the exact binomial tolerates on this many rows.
            let tolerated = (0..=testing)
                .take_while(|&k| guarantee::p_value(k, testing, epsilon) <= delta)
                .last();
            tolerated.map_or(0.0, |k| harms.iter().take(k as usize + 1).sum::<f64>().min(1.0))
        }
        Bound::Betting => {
            let helps = spread(seen.helps);
            // P(at least g helps), for g = 0, 1, …
            let mut at_least = vec![1.0f64; helps.len() + 1];
            for g in 0..helps.len() {
                at_least[g + 1] = (at_least[g] - helps[g]).max(0.0);
            }
            let chance: f64 = harms
                .iter()
                .enumerate()
                .map(|(h, ph)| {
                    let needed = guarantee::betting_helps_needed(testing, h as u64, epsilon, delta, stake);
                    ph * usize::try_from(needed)
                        .ok()
                        .and_then(|g| at_least.get(g))
                        .copied()
                        .unwrap_or(0.0)
                })
                .sum();
            chance.min(1.0)
        }
    }
}

/// What certifying nothing counts as: worse than any model shipped (the
/// run fails), so a family whose first candidate may fail loses to one
/// that surely certifies at least its closed exits.
const NOTHING_CERTIFIED: f64 = -1.0;

/// The saving a sequence of candidates is expected to certify: the
/// fixed-sequence test stops at its first failure, so candidate j is
/// reached with the smallest chance among those before it, and what is
/// shipped is the best saving certified by then.
pub fn expected_saving(savings: &[f64], chances: &[f64]) -> f64 {
    let mut reach = 1.0f64;
    let mut best = NOTHING_CERTIFIED;
    let mut expected = 0.0;
    for (&s, &c) in savings.iter().zip(chances) {
        let next = reach.min(c);
        // Stopped before this candidate: the best so far is shipped.
        expected += (reach - next) * best;
        reach = next;
        best = best.max(s);
    }
    expected + reach * best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_binomial_sums_to_one_and_matches_a_hand_value() {
        // BetaBinomial(2, 1, 1) is uniform on {0, 1, 2}.
        let p = beta_binomial(2, 1.0, 1.0);
        assert_eq!(p.len(), 3);
        for v in &p {
            assert!((v - 1.0 / 3.0).abs() < 1e-12, "{p:?}");
        }
        let q = beta_binomial(300, 0.5, 50.5);
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn more_rows_leaving_is_less_likely_to_certify() {
        let seen = |leaving| Seen {
            rows: 100,
            leaving,
            harms: 0,
            helps: 0,
        };
        let c = |s| chance(seen(s), Bound::Binomial, 0.01, 0.05, 0.0, 318);
        // Nothing leaving: certain (318 rows allow no harm: 0.99^318 ≤ 0.05).
        assert_eq!(c(0), 1.0);
        assert!(c(10) > c(50) && c(50) > c(90), "{} {} {}", c(10), c(50), c(90));
        // Too few rows for any certificate.
        assert_eq!(chance(seen(0), Bound::Binomial, 0.01, 0.05, 0.0, 100), 0.0);
    }

    #[test]
    fn the_expected_saving_weighs_each_stop() {
        // Certain, then even odds, then never: ½·0.2 + ½·0.5.
        let e = expected_saving(&[0.2, 0.5, 0.9], &[1.0, 0.5, 0.0]);
        assert!((e - 0.35).abs() < 1e-12, "{e}");
        // A later candidate cannot be reached more often than an earlier
        // one; failing the first certifies nothing: ½·(−1) + ½·0.5.
        let e = expected_saving(&[0.2, 0.5], &[0.5, 1.0]);
        assert!((e + 0.25).abs() < 1e-12, "{e}");
    }
}
