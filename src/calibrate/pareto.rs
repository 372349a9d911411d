//! The candidates the guarantee tests, found on rows the test never sees
//! (Pareto Testing: Laufer-Goldshtein et al., ICLR 2023).
//!
//! With one threshold per exit the candidates are vectors, and
//! fixed-sequence testing needs them in one order fixed before the tested
//! rows are read. On the choosing rows a greedy path traces the trade-off
//! between expected cost and risk: it starts with every exit closed
//! ([`NEVER`]) and at each step lowers the one exit's threshold, to the next
//! confidence at which one more choosing row leaves there, that buys the
//! most cost per unit of added expected risk (the loss seen, blended with
//! the heads' calibrated doubt: `RowLosses::expected_harm`, because a few
//! hundred rows show too few losses to rank steps by). Every step lowers a
//! threshold, so the
//! path runs from the most conservative candidate towards more aggressive
//! ones and its risk rises along it as the test's order wants; each state
//! of the path is a candidate, in path order.

use super::choose::{Bound, Decisions, NEVER, RowLosses};

/// The most candidates a path keeps (evenly thinned beyond that), so that
/// testing them stays cheap on large calibration sets.
const MAX_CANDIDATES: usize = 2000;

/// Where the intermediate candidates of a step lie, as shares of the way
/// from the old threshold to the new one in log(1 − θ) (confidences crowd
/// towards 1).
const SUBSTEPS: [f64; 3] = [0.25, 0.5, 0.75];

/// The threshold a share `t` of the way from `from` down to `to`, in
/// log(1 − θ), rounded to f32 as the model stores it.
fn between(from: f64, to: f64, t: f64) -> f64 {
    let (a, b) = ((1.0 - from).max(1e-9), (1.0 - to).max(1e-9));
    f64::from((1.0 - a.powf(1.0 - t) * b.powf(t)) as f32)
}

/// The expected risk (in rows) a step is charged at least, so that steps
/// the heads are sure of are ranked by what they save.
const STEP_CHARGE: f64 = 1e-3;

/// The per-exit candidates, most conservative first. `row_cost[j]` is the
/// cost of a row leaving at exit j+1 (the last entry: the full model);
/// the path stops once the risk on the choosing rows is far beyond
/// `epsilon` (no later candidate could be certified).
pub fn per_exit_path(d: &Decisions, losses: &RowLosses, bound: Bound, row_cost: &[f64], epsilon: f64) -> Vec<Vec<f64>> {
    let k = d.confidence.len();
    let n = d.confidence.first().map_or(0, Vec::len);
    // The loss the bound sees, and the one that ranks steps.
    let loss = |exit: usize, r: usize| -> i64 {
        if exit >= k {
            return 0;
        }
        let harm = i64::from(losses.harm[exit][r]);
        match bound {
            Bound::Binomial => harm,
            Bound::Betting => harm - i64::from(losses.help[exit][r]),
        }
    };
    let expected = |exit: usize, r: usize| -> f64 {
        if exit >= k {
            return 0.0;
        }
        let help = match bound {
            Bound::Binomial => 0.0,
            Bound::Betting => 0.5 * f64::from(u8::from(losses.help[exit][r])),
        };
        losses.expected_harm[exit][r] - help
    };
    // Per exit: rows by confidence, highest first (a row's index breaks ties).
    let order: Vec<Vec<usize>> = d
        .confidence
        .iter()
        .map(|c| {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|&a, &b| c[b].total_cmp(&c[a]).then(a.cmp(&b)));
            idx
        })
        .collect();
    let mut next = vec![0usize; k];
    // 0-based exit of each row; k is the full model.
    let mut exit_of = vec![k; n];
    let mut thresholds = vec![NEVER; k];
    let mut risk: i64 = 0;
    let give_up = epsilon * n as f64 + 3.0 * (epsilon * n as f64).sqrt() + 3.0;
    let mut path = vec![thresholds.clone()];
    loop {
        // Each exit's next step: the rows that leave there once its
        // threshold drops to the next confidence below it.
        let mut best: Option<(f64, usize, f64, Vec<usize>)> = None;
        for e in 0..k {
            let eligible = |r: usize| exit_of[r] > e && !d.held_back[e][r];
            let Some(&first) = order[e][next[e]..].iter().find(|&&r| eligible(r)) else {
                continue;
            };
            let value = d.confidence[e][first];
            let moving: Vec<usize> = order[e][next[e]..]
                .iter()
                .copied()
                .take_while(|&r| d.confidence[e][r] >= value)
                .filter(|&r| eligible(r))
                .collect();
            let saved: f64 = moving.iter().map(|&r| row_cost[exit_of[r]] - row_cost[e]).sum();
            let added: f64 = moving.iter().map(|&r| expected(e, r) - expected(exit_of[r], r)).sum();
            let score = saved / added.max(STEP_CHARGE);
            if best.as_ref().is_none_or(|b| score > b.0) {
                best = Some((score, e, value, moving));
            }
        }
        let Some((_, e, value, moving)) = best else { break };
        for &r in &moving {
            risk += loss(e, r) - loss(exit_of[r], r);
            exit_of[r] = e;
        }
        while next[e] < n && d.confidence[e][order[e][next[e]]] >= value {
            next[e] += 1;
        }
        // Steps between two choosing rows' confidences, so that the test,
        // which stops at its first failure, can stop closer to where the
        // tested rows start to break (as many candidates cost nothing).
        let from = thresholds[e].min(1.0);
        for &t in &SUBSTEPS {
            let between = between(from, value, t);
            if between < thresholds[e] && between > value {
                thresholds[e] = between;
                path.push(thresholds.clone());
            }
        }
        thresholds[e] = value;
        path.push(thresholds.clone());
        if risk as f64 > give_up {
            break;
        }
    }
    thin(path, MAX_CANDIDATES)
}

/// At most `keep` states of the path, evenly spaced, first and last kept.
fn thin(path: Vec<Vec<f64>>, keep: usize) -> Vec<Vec<f64>> {
    if path.len() <= keep {
        return path;
    }
    let last = path.len() - 1;
    let picks: Vec<usize> = (0..keep).map(|i| i * last / (keep - 1)).collect();
    path.into_iter()
        .enumerate()
        .filter(|(i, _)| picks.binary_search(i).is_ok())
        .map(|(_, p)| p)
        .collect()
}

/// The shared-threshold candidates (every exit at the same λ), most
/// conservative first: CALM's one-dimensional order.
pub fn shared_path(exits: usize) -> Vec<Vec<f64>> {
    super::choose::grid().into_iter().map(|t| vec![t; exits]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(confidence: Vec<Vec<f64>>) -> Decisions {
        let n = confidence[0].len();
        let k = confidence.len();
        Decisions {
            confidence,
            prediction: vec![vec![0; n]; k],
            held_back: vec![vec![false; n]; k],
            doubt: vec![vec![0.0; n]; k],
        }
    }

    /// Losses as seen, the heads sure of every row (no doubt).
    fn seen(harm: Vec<Vec<bool>>) -> RowLosses {
        RowLosses {
            help: harm.iter().map(|h| vec![false; h.len()]).collect(),
            expected_harm: harm
                .iter()
                .map(|h| h.iter().map(|&x| 0.5 * f64::from(u8::from(x))).collect())
                .collect(),
            harm,
        }
    }

    #[test]
    fn the_path_opens_the_exit_that_saves_most_per_risk_first() {
        // Two exits, four rows. Exit 1 saves 9 per row, exit 2 saves 4.
        // Exit 1 breaks row 0 (its most confident); exit 2 breaks nothing.
        let d = decisions(vec![vec![0.9, 0.8, 0.2, 0.1], vec![0.95, 0.6, 0.7, 0.3]]);
        let losses = seen(vec![vec![true, false, false, false], vec![false; 4]]);
        let cost = [1.0, 6.0, 10.0];
        let path = per_exit_path(&d, &losses, Bound::Binomial, &cost, 0.25);
        assert_eq!(path[0], vec![NEVER, NEVER]);
        // The steps at the choosing rows' confidences, without the ones
        // between them.
        let at_rows: Vec<&Vec<f64>> = path
            .iter()
            .filter(|t| {
                t.iter()
                    .all(|v| [NEVER, 0.9, 0.8, 0.2, 0.1, 0.95, 0.6, 0.7, 0.3].contains(v))
            })
            .collect();
        // Exit 2's row 0 (saves 4 at no expected risk) beats exit 1's row 0
        // (saves 9 at half a row of expected risk: 18 per row).
        assert_eq!(at_rows[1], &vec![NEVER, 0.95]);
        // Then row 2 at exit 2 (no risk) beats row 0 at exit 1.
        assert_eq!(at_rows[2], &vec![NEVER, 0.7]);
        // Rows 1 and 3 at exit 2 come before exit 1's harmful row 0.
        assert_eq!(at_rows[4], &vec![NEVER, 0.3]);
        // Between 0.95 and 0.7 lie three more candidates, falling.
        let i = path.iter().position(|t| t == &vec![NEVER, 0.95]).unwrap();
        assert_eq!(path[i + 4], vec![NEVER, 0.7]);
        assert!(path[i + 1][1] < 0.95 && path[i + 3][1] > 0.7, "{:?}", &path[i..i + 5]);
        // Thresholds only fall along the path.
        for w in path.windows(2) {
            assert!(w[1].iter().zip(&w[0]).all(|(a, b)| a <= b));
        }
        // Every row ends up leaving somewhere, unless the risk cut it short.
        let last = path.last().unwrap();
        assert!(last[0] <= 0.1 || last[1] <= 0.3, "{last:?}");
    }

    #[test]
    fn held_back_rows_never_move() {
        let mut d = decisions(vec![vec![0.9, 0.8]]);
        d.held_back[0][0] = true;
        let losses = seen(vec![vec![false; 2]]);
        let path = per_exit_path(&d, &losses, Bound::Binomial, &[1.0, 2.0], 0.1);
        assert_eq!((path.first(), path.last()), (Some(&vec![NEVER]), Some(&vec![0.8])));
        assert!(path.iter().all(|t| t[0] >= 0.8));
    }

    #[test]
    fn thinning_keeps_the_ends_and_the_order() {
        let path: Vec<Vec<f64>> = (0..10).map(|i| vec![f64::from(i)]).collect();
        let t = thin(path, 4);
        assert_eq!(t, vec![vec![0.0], vec![3.0], vec![6.0], vec![9.0]]);
    }
}
