//! The distribution-free guarantee: Learn-then-Test (Angelopoulos et al.,
//! 2021) with fixed-sequence testing, as CALM (Schuster et al., 2022) uses
//! for early exits, over candidates ordered on rows the test never sees
//! (Pareto Testing, Laufer-Goldshtein et al., 2023).
//!
//! Each candidate (a threshold per exit) has a risk R = E[loss]. For the
//! null hypothesis H: R > ε every candidate gets a valid p-value from one
//! of two bounds:
//!
//! - **binomial**: a 0/1 loss per row (a disagreement with the full model,
//!   or a row the full model gets right and the early exit gets wrong); the
//!   exact binomial tail p = P(Binomial(n, ε) ≤ losses).
//! - **betting**: the signed loss of the accuracy drop, 1[exit wrong] −
//!   1[full model wrong] ∈ {−1, 0, 1}, so that rows an exit fixes count
//!   against the rows it breaks. Mapped to x = (ℓ + 1)/2 ∈ [0, 1] with
//!   H: E[x] ≥ m = (1 + ε)/2, the wealth K = ∏ (1 + λ(m − xᵢ)) of a bet
//!   with a fixed λ ∈ [0, 1/(1 − m)) has E[K] ≤ 1 under H, so
//!   p = min(1, 1/K) is valid by Markov's inequality (Waudby-Smith and
//!   Ramdas, 2024, for the betting view). λ must not depend on the tested
//!   rows: it is fitted on the rows that chose the candidates.
//!
//! Candidates are tested in their fixed order, most conservative first,
//! each at level δ, stopping at the first that is not rejected. Every
//! candidate rejected before the stop has R ≤ ε, all of them
//! simultaneously, with probability at least 1 − δ over the tested rows.

/// ln P(X ≤ k) for X ~ Binomial(n, p), 0 < p < 1, summed in log space
/// (the terms underflow f64 for large n).
pub fn binomial_cdf_ln(k: u64, n: u64, p: f64) -> f64 {
    if k >= n {
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    // ln C(n, i) p^i q^(n−i), by the ratio of consecutive terms.
    let mut term = n as f64 * lq;
    let mut acc = term;
    for i in 0..k {
        term += ((n - i) as f64).ln() - ((i + 1) as f64).ln() + lp - lq;
        let (hi, lo) = if acc > term { (acc, term) } else { (term, acc) };
        acc = hi + (lo - hi).exp().ln_1p();
    }
    acc.min(0.0)
}

/// The p-value of H: R > ε after observing `losses` of `n` samples.
pub fn p_value(losses: u64, n: u64, epsilon: f64) -> f64 {
    binomial_cdf_ln(losses, n, epsilon).exp()
}

/// A signed-loss tally: rows the early exit breaks (`harms`: the full
/// model right, the exit wrong) and fixes (`helps`: the reverse) of `rows`.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Tally {
    pub rows: u64,
    pub harms: u64,
    pub helps: u64,
}

impl Tally {
    /// The bet's log-wealth per unit of data at stake λ, for H: E[ℓ] ≥ ε.
    fn log_wealth(&self, epsilon: f64, lambda: f64) -> f64 {
        let m = (1.0 + epsilon) / 2.0;
        let neutral = self.rows.saturating_sub(self.harms + self.helps) as f64;
        self.helps as f64 * (lambda * m).ln_1p()
            + neutral * (lambda * (m - 0.5)).ln_1p()
            + self.harms as f64 * (-lambda * (1.0 - m)).ln_1p()
    }
}

/// The largest stake considered: a harm then keeps 1% of the wealth.
fn max_stake(epsilon: f64) -> f64 {
    0.99 / (1.0 - (1.0 + epsilon) / 2.0)
}

/// The stake for the betting bound, fitted on rows the test does not use:
/// the growth-optimal (Kelly) λ for their tally with half a harm added, so
/// that a candidate that broke nothing there is not bet on as if it never
/// could (a single harm at the largest stake would cost 99% of the wealth).
pub fn betting_stake(choosing: Tally, epsilon: f64) -> f64 {
    let prior =
        |t: Tally, lambda: f64| t.log_wealth(epsilon, lambda) + 0.5 * (-lambda * (1.0 - (1.0 + epsilon) / 2.0)).ln_1p();
    // The log-wealth is concave in λ: golden-section search.
    let (mut a, mut b) = (0.0f64, max_stake(epsilon));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..100 {
        let (c, d) = (b - g * (b - a), a + g * (b - a));
        if prior(choosing, c) >= prior(choosing, d) {
            b = d;
        } else {
            a = c;
        }
    }
    (a + b) / 2.0
}

/// The betting p-value of H: E[signed loss] > ε for the tested rows'
/// tally at stake λ.
pub fn betting_p_value(tested: Tally, epsilon: f64, lambda: f64) -> f64 {
    (-tested.log_wealth(epsilon, lambda.clamp(0.0, max_stake(epsilon))))
        .exp()
        .min(1.0)
}

/// The fewest helps with which `harms` of `rows` tested rows are certified
/// at level δ by the bet at `stake` (the wealth grows with every help, so
/// the p-value falls below δ exactly from this count on).
pub fn betting_helps_needed(rows: u64, harms: u64, epsilon: f64, delta: f64, stake: f64) -> u64 {
    let lambda = stake.clamp(0.0, max_stake(epsilon));
    let m = (1.0 + epsilon) / 2.0;
    let (help, neutral, harm) = (
        (lambda * m).ln_1p(),
        (lambda * (m - 0.5)).ln_1p(),
        (-lambda * (1.0 - m)).ln_1p(),
    );
    let base = rows.saturating_sub(harms) as f64 * neutral + harms as f64 * harm;
    let short = (1.0 / delta).ln() - base;
    if short <= 0.0 {
        0
    } else if help > neutral {
        // Each help replaces a neutral row. A tiny margin keeps rounding
        // from promising a certificate the p-value then refuses.
        (short / (help - neutral) + 1e-9).ceil() as u64
    } else {
        u64::MAX
    }
}

/// The fewest samples for which any threshold can be certified: even with
/// no loss observed, p = (1 − ε)^n must reach δ.
pub fn min_samples(epsilon: f64, delta: f64) -> u64 {
    (delta.ln() / (-epsilon).ln_1p()).ceil() as u64
}

/// Fixed-sequence testing: how many of the candidates, in order, are
/// certified (each p-value at most δ, stopping at the first that is not).
pub fn certified_prefix(p_values: &[f64], delta: f64) -> usize {
    p_values.iter().take_while(|&&p| p <= delta).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_hand_computed_values() {
        // P(X ≤ 0), X ~ Bin(10, 0.1) = 0.9^10.
        assert!((p_value(0, 10, 0.1) - 0.348_678_440_1).abs() < 1e-9);
        // P(X ≤ 1) = 0.9^10 + 10 · 0.1 · 0.9^9.
        assert!((p_value(1, 10, 0.1) - 0.736_098_929_1).abs() < 1e-9);
        // P(X ≤ 2), X ~ Bin(5, 0.5) = (1 + 5 + 10) / 32.
        assert!((p_value(2, 5, 0.5) - 0.5).abs() < 1e-12);
        // Everything at or above n.
        assert_eq!(p_value(7, 7, 0.3), 1.0);
        // Large n does not underflow to garbage: P(X ≤ 0) = 0.99^100000.
        let ln = binomial_cdf_ln(0, 100_000, 0.01);
        assert!((ln - 100_000.0 * 0.99f64.ln()).abs() < 1e-6);
        // P(X ≤ 1000), X ~ Bin(100000, 0.01): the mean, just above 1/2.
        let mid = p_value(1000, 100_000, 0.01);
        assert!(mid > 0.5 && mid < 0.52, "{mid}");
    }

    #[test]
    fn sample_size_needed_for_a_guarantee() {
        // ln 0.05 / ln 0.99 = 298.07 -> 299 rows.
        assert_eq!(min_samples(0.01, 0.05), 299);
        // ln 0.1 / ln 0.95 = 44.89 -> 45 rows.
        assert_eq!(min_samples(0.05, 0.1), 45);
        assert!(p_value(0, 299, 0.01) <= 0.05);
        assert!(p_value(0, 298, 0.01) > 0.05);
    }

    /// Signed losses drawn with P(harm) = `harm`, P(help) = `help`.
    fn draw(n: u64, harm: f64, help: f64, rng: &mut crate::numeric::SplitMix64) -> Tally {
        let mut t = Tally {
            rows: n,
            ..Tally::default()
        };
        for _ in 0..n {
            let u = rng.next_f64();
            if u < harm {
                t.harms += 1;
            } else if u < harm + help {
                t.helps += 1;
            }
        }
        t
    }

    #[test]
    fn the_betting_bound_is_valid_at_the_null_and_counts_the_rows_an_exit_fixes() {
        let (epsilon, delta, trials) = (0.01, 0.05, 2000);
        let mut rng = crate::numeric::SplitMix64::new(3);
        // Trials certified by the bet and by the binomial, for rows that
        // break with probability `harm` and are fixed with `help`; the
        // stake comes from 200 other rows, as calibrate fits it.
        let mut certified = |harm: f64, help: f64| {
            let (mut betting, mut binomial) = (0u32, 0u32);
            for _ in 0..trials {
                let stake = betting_stake(draw(200, harm, help, &mut rng), epsilon);
                let tested = draw(1000, harm, help, &mut rng);
                betting += u32::from(betting_p_value(tested, epsilon, stake) <= delta);
                binomial += u32::from(p_value(tested.harms, tested.rows, epsilon) <= delta);
            }
            (betting, binomial)
        };
        // At the edge of the null: harms 3%, helps 2%, mean exactly ε.
        let (rejected, _) = certified(0.03, 0.02);
        let share = f64::from(rejected) / f64::from(trials);
        let allowed = delta + 3.0 * (delta * (1.0 - delta) / f64::from(trials)).sqrt();
        assert!(share <= allowed, "rejected a true null in {rejected} of {trials}");
        // Harms 1%, helps 2%: the drop is −1%. The binomial sees only the
        // harms, at its null's edge; the bet sees the drop.
        let (betting, binomial) = certified(0.01, 0.02);
        eprintln!("null rejected in {rejected} of {trials}; power with helps: betting {betting}, binomial {binomial}");
        assert!(
            betting > 2 * binomial && betting > trials / 2,
            "betting {betting}, binomial {binomial}"
        );
        // No helps: the exact binomial is the stronger (harms 0.2%).
        let (betting, binomial) = certified(0.002, 0.0);
        eprintln!("power without helps: betting {betting}, binomial {binomial}");
        assert!(binomial > betting, "betting {betting}, binomial {binomial}");
    }

    #[test]
    fn the_helps_needed_are_where_the_p_value_crosses_delta() {
        for (rows, harms, stake) in [(1000, 3, 1.0), (400, 0, 1.9), (300, 2, 0.5), (2000, 10, 1.2)] {
            let g = betting_helps_needed(rows, harms, 0.01, 0.05, stake);
            let p = |helps| betting_p_value(Tally { rows, harms, helps }, 0.01, stake);
            assert!(p(g) <= 0.05, "{rows} {harms} {stake}: {g} helps give {}", p(g));
            if g > 0 {
                assert!(
                    p(g - 1) > 0.05,
                    "{rows} {harms} {stake}: {} helps already give {}",
                    g - 1,
                    p(g - 1)
                );
            }
        }
    }

    #[test]
    fn fixed_sequence_stops_at_the_first_failure() {
        assert_eq!(certified_prefix(&[0.01, 0.03, 0.2, 0.01], 0.05), 2);
        assert_eq!(certified_prefix(&[0.06, 0.01], 0.05), 0);
        assert_eq!(certified_prefix(&[0.05, 0.05], 0.05), 2);
    }
}
