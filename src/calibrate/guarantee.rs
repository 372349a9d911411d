//! The distribution-free guarantee: Learn-then-Test (Angelopoulos et al.,
//! 2021) with fixed-sequence testing, as CALM (Schuster et al., 2022) uses
//! for early exits.
//!
//! Each candidate threshold λ has a risk R(λ) = E[loss], loss ∈ {0, 1} per
//! sample (a disagreement with the full model, or a row the full model gets
//! right and the early exit gets wrong). For the null hypothesis
//! H_λ: R(λ) > ε, the exact binomial tail gives a valid p-value
//! p(λ) = P(Binomial(n, ε) ≤ n·R̂(λ)). Candidates are tested in a fixed
//! order, from the most conservative λ (nothing exits, R = 0) towards more
//! aggressive ones, each at level δ, stopping at the first that is not
//! rejected. Every λ rejected before the stop has R(λ) ≤ ε, all of them
//! simultaneously, with probability at least 1 − δ over the calibration
//! sample (fixed-sequence testing controls the family-wise error at δ).

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

    #[test]
    fn fixed_sequence_stops_at_the_first_failure() {
        assert_eq!(certified_prefix(&[0.01, 0.03, 0.2, 0.01], 0.05), 2);
        assert_eq!(certified_prefix(&[0.06, 0.01], 0.05), 0);
        assert_eq!(certified_prefix(&[0.05, 0.05], 0.05), 2);
    }
}
