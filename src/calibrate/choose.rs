//! Calibration on cached outputs (pure functions, so repeated splits need
//! one run of the model): per-exit temperatures by NLL, ECE, and the
//! evaluation of a candidate (a threshold per exit): where rows leave, what
//! it breaks and fixes, its p-value and its expected cost.

use crate::exits::Confidence;
use crate::exits::cost::{CostReport, CostTable};
use crate::numeric::argmax;

use super::guarantee::{self, Tally};

/// What the calibration must keep below its bound.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "epsilon")]
pub enum Target {
    /// Rows the full model gets right and the early exit gets wrong (needs labels).
    MaxDrop(f64),
    /// Rows where the early exit's prediction differs from the full model's.
    MaxDisagree(f64),
}

impl Target {
    pub fn epsilon(self) -> f64 {
        match self {
            Target::MaxDrop(e) | Target::MaxDisagree(e) => e,
        }
    }
}

/// One exit's cached logits (rows × classes) and how it decides.
pub struct ExitData<'a> {
    pub logits: &'a [f32],
    pub confidence: Confidence,
}

/// Everything the sweep reads, for the rows being calibrated on.
pub struct Observed<'a> {
    pub exits: Vec<ExitData<'a>>,
    pub classes: usize,
    /// The full model's prediction per row.
    pub full_pred: &'a [usize],
    pub labels: Option<&'a [usize]>,
    pub never_exit_classes: &'a [usize],
}

impl<'a> Observed<'a> {
    /// The same rows with no exits (to be given some).
    pub fn clone_shallow(&self) -> Observed<'a> {
        Observed {
            exits: Vec::new(),
            classes: self.classes,
            full_pred: self.full_pred,
            labels: self.labels,
            never_exit_classes: self.never_exit_classes,
        }
    }

    pub fn rows(&self) -> usize {
        self.full_pred.len()
    }

    /// What a head is scored against: the labels, or the full model.
    pub fn reference(&self) -> &[usize] {
        self.labels.unwrap_or(self.full_pred)
    }
}

/// Owned rows of an [`Observed`] (a subset of another).
pub struct Rows {
    pub logits: Vec<Vec<f32>>,
    pub kinds: Vec<Confidence>,
    pub classes: usize,
    pub full_pred: Vec<usize>,
    pub labels: Option<Vec<usize>>,
    pub never_exit_classes: Vec<usize>,
}

impl Rows {
    pub fn view(&self) -> Observed<'_> {
        Observed {
            exits: self
                .logits
                .iter()
                .zip(&self.kinds)
                .map(|(l, &k)| ExitData {
                    logits: l,
                    confidence: k,
                })
                .collect(),
            classes: self.classes,
            full_pred: &self.full_pred,
            labels: self.labels.as_deref(),
            never_exit_classes: &self.never_exit_classes,
        }
    }
}

impl Observed<'_> {
    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Rows {
        let c = self.classes;
        Rows {
            logits: self
                .exits
                .iter()
                .map(|e| {
                    idx.iter()
                        .flat_map(|&r| e.logits[r * c..(r + 1) * c].iter().copied())
                        .collect()
                })
                .collect(),
            kinds: self.exits.iter().map(|e| e.confidence).collect(),
            classes: c,
            full_pred: idx.iter().map(|&r| self.full_pred[r]).collect(),
            labels: self.labels.map(|l| idx.iter().map(|&r| l[r]).collect()),
            never_exit_classes: self.never_exit_classes.to_vec(),
        }
    }
}

/// Softmax of `row / t`, in f64.
fn probabilities(row: &[f32], t: f64) -> Vec<f64> {
    let scaled: Vec<f64> = row.iter().map(|&v| f64::from(v) / t).collect();
    let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = scaled.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// The decision's confidence, exactly as the emitted graph computes it
/// (docs/output-graph.md).
pub fn confidence(kind: Confidence, row: &[f32], t: f64) -> f64 {
    let p = probabilities(row, t);
    match kind {
        Confidence::Maxprob => p.iter().cloned().fold(0.0, f64::max),
        Confidence::Entropy => {
            let neg_h: f64 = p.iter().filter(|&&v| v > 0.0).map(|v| v * v.ln()).sum();
            1.0 + neg_h / (p.len() as f64).ln()
        }
        Confidence::Margin => {
            let mut sorted = p.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            sorted[0] - sorted.get(1).copied().unwrap_or(0.0)
        }
    }
}

/// Mean negative log-likelihood of `reference` under softmax(z / t).
fn nll(logits: &[f32], classes: usize, reference: &[usize], t: f64) -> f64 {
    let total: f64 = logits
        .chunks_exact(classes)
        .zip(reference)
        .map(|(row, &y)| -probabilities(row, t)[y].max(1e-300).ln())
        .sum();
    total / reference.len().max(1) as f64
}

/// The temperature minimising the NLL: golden-section search on β = 1/T in
/// [1/20, 20] (the NLL is convex in β).
pub fn fit_temperature(logits: &[f32], classes: usize, reference: &[usize]) -> f64 {
    let f = |beta: f64| nll(logits, classes, reference, 1.0 / beta);
    let (mut a, mut b) = (0.05f64, 20.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..80 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    2.0 / (a + b)
}

/// Expected calibration error of the max-probability confidence against
/// `reference`, 15 equal-width bins.
pub fn ece(logits: &[f32], classes: usize, reference: &[usize], t: f64) -> f64 {
    const BINS: usize = 15;
    let mut count = [0usize; BINS];
    let mut conf_sum = [0.0f64; BINS];
    let mut hit_sum = [0.0f64; BINS];
    for (row, &y) in logits.chunks_exact(classes).zip(reference) {
        let p = probabilities(row, t);
        let (pred, conf) = p
            .iter()
            .enumerate()
            .fold((0, 0.0), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) });
        let bin = ((conf * BINS as f64) as usize).min(BINS - 1);
        count[bin] += 1;
        conf_sum[bin] += conf;
        hit_sum[bin] += f64::from(u8::from(pred == y));
    }
    let n = reference.len().max(1) as f64;
    (0..BINS)
        .filter(|&b| count[b] > 0)
        .map(|b| (count[b] as f64 / n) * (conf_sum[b] / count[b] as f64 - hit_sum[b] / count[b] as f64).abs())
        .sum()
}

/// Per exit and row: the confidence at the exit's temperature, the head's
/// prediction, and whether a never-exit class holds the row back.
pub struct Decisions {
    pub confidence: Vec<Vec<f64>>,
    pub prediction: Vec<Vec<usize>>,
    pub held_back: Vec<Vec<bool>>,
    /// The head's own belief that its prediction is wrong: 1 − its largest
    /// calibrated probability.
    pub doubt: Vec<Vec<f64>>,
}

pub fn decisions(obs: &Observed, temperatures: &[f64]) -> Decisions {
    let c = obs.classes;
    let mut d = Decisions {
        confidence: Vec::new(),
        prediction: Vec::new(),
        held_back: Vec::new(),
        doubt: Vec::new(),
    };
    for (e, &t) in obs.exits.iter().zip(temperatures) {
        let rows = e.logits.chunks_exact(c);
        // Rounded to f32 as the graph computes and compares it (f32
        // thresholds): a confidence that saturates to 1 there does here too.
        d.confidence.push(
            rows.clone()
                .map(|r| f64::from(confidence(e.confidence, r, t) as f32))
                .collect(),
        );
        d.doubt.push(
            rows.clone()
                .map(|r| 1.0 - confidence(Confidence::Maxprob, r, t))
                .collect(),
        );
        let preds: Vec<usize> = rows.map(|r| argmax(r.iter().copied())).collect();
        d.held_back
            .push(preds.iter().map(|p| obs.never_exit_classes.contains(p)).collect());
        d.prediction.push(preds);
    }
    d
}

/// A threshold above every confidence (all lie in [0, 1]): the exit never
/// takes a row.
pub const NEVER: f64 = 2.0;

/// Per row: the exit taken (1-based; K+1 for the full model) and the
/// prediction returned, with exit k's threshold at `thresholds[k]`.
pub fn outcome(d: &Decisions, full_pred: &[usize], thresholds: &[f64]) -> (Vec<usize>, Vec<usize>) {
    let k = d.confidence.len();
    full_pred
        .iter()
        .enumerate()
        .map(|(r, &full)| {
            (0..k)
                .find(|&e| !d.held_back[e][r] && d.confidence[e][r] >= thresholds[e])
                .map_or((k + 1, full), |e| (e + 1, d.prediction[e][r]))
        })
        .unzip()
}

/// How a candidate's risk is bounded (guarantee.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bound {
    /// The 0/1 loss and the exact binomial tail.
    Binomial,
    /// The signed loss of the accuracy drop and a bet (needs labels).
    Betting,
}

impl Bound {
    pub fn describe(self) -> &'static str {
        match self {
            Bound::Binomial => "exact binomial tail on the 0/1 loss",
            Bound::Betting => "betting bound on the signed loss (rows an exit fixes count)",
        }
    }
}

/// Per exit and row: whether leaving there breaks the row (`harm`: a
/// disagreement with the full model, or the full model right and the exit
/// wrong) or fixes it (`help`: the full model wrong and the exit right;
/// only under --max-drop).
pub struct RowLosses {
    pub harm: Vec<Vec<bool>>,
    pub help: Vec<Vec<bool>>,
    /// Per exit and row: the harm expected of leaving there, half as seen
    /// and half as the head's calibrated doubt says (where the full model is
    /// right, under --max-drop); steadier than the 0/1 loss on few rows,
    /// for ordering candidates, never for certifying them.
    pub expected_harm: Vec<Vec<f64>>,
}

impl RowLosses {
    pub fn new(obs: &Observed, d: &Decisions, target: Target) -> RowLosses {
        let full = obs.full_pred;
        let (harm, help): (Vec<Vec<bool>>, Vec<Vec<bool>>) = d
            .prediction
            .iter()
            .map(|preds| match (target, obs.labels) {
                (Target::MaxDrop(_), Some(y)) => (
                    (0..full.len()).map(|r| full[r] == y[r] && preds[r] != y[r]).collect(),
                    (0..full.len()).map(|r| full[r] != y[r] && preds[r] == y[r]).collect(),
                ),
                // calibrate_observed refuses MaxDrop without labels.
                _ => (
                    (0..full.len()).map(|r| preds[r] != full[r]).collect(),
                    vec![false; full.len()],
                ),
            })
            .unzip();
        let full_right = |r: usize| match (target, obs.labels) {
            (Target::MaxDrop(_), Some(y)) => full[r] == y[r],
            _ => true,
        };
        let expected_harm = harm
            .iter()
            .zip(&d.doubt)
            .map(|(h, doubt)| {
                (0..full.len())
                    .map(|r| 0.5 * f64::from(u8::from(h[r])) + if full_right(r) { 0.5 * doubt[r] } else { 0.0 })
                    .collect()
            })
            .collect();
        RowLosses {
            harm,
            help,
            expected_harm,
        }
    }

    /// The tally of rows leaving at `exit_of` (1-based, K+1 the full model).
    pub fn tally(&self, exit_of: &[usize]) -> Tally {
        let mut t = Tally {
            rows: exit_of.len() as u64,
            ..Tally::default()
        };
        for (r, &e) in exit_of.iter().enumerate() {
            if e <= self.harm.len() {
                t.harms += u64::from(self.harm[e - 1][r]);
                t.helps += u64::from(self.help[e - 1][r]);
            }
        }
        t
    }
}

/// The risk a bound controls, per row: the 0/1 loss or the signed one.
pub fn risk(t: Tally, bound: Bound) -> f64 {
    let losses = match bound {
        Bound::Binomial => t.harms as f64,
        Bound::Betting => t.harms as f64 - t.helps as f64,
    };
    losses / t.rows.max(1) as f64
}

/// The p-value of H: risk > ε for a tally; `stake` is the betting bound's
/// λ (fitted on other rows).
pub fn p_value(t: Tally, bound: Bound, epsilon: f64, stake: f64) -> f64 {
    match bound {
        Bound::Binomial => guarantee::p_value(t.harms, t.rows, epsilon),
        Bound::Betting => guarantee::betting_p_value(t, epsilon, stake),
    }
}

/// One candidate of the test: a threshold per exit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CurvePoint {
    pub thresholds: Vec<f64>,
    /// Share of rows leaving at exits 1..K, then at the full model.
    pub exit_shares: Vec<f64>,
    /// Rows the early exits broke, and fixed (see [`RowLosses`]).
    pub harms: u64,
    pub helps: u64,
    /// The risk the bound controls, on these rows.
    pub risk: f64,
    /// The betting bound's λ (0 for the binomial).
    pub stake: f64,
    pub p_value: f64,
    pub certified: bool,
    /// Accuracy against the labels (when given).
    pub accuracy: Option<f64>,
    /// Agreement with the full model's prediction.
    pub agreement: f64,
    pub expected_flops: f64,
    /// 1 − expected / original FLOPs.
    pub savings: f64,
}

/// The shared-threshold candidates, most conservative first (each an f32,
/// as the model stores it).
pub fn grid() -> Vec<f64> {
    (0..=200)
        .map(|i| f64::from((1.0 - f64::from(i) * 0.005) as f32))
        .collect()
}

/// The cost of a row leaving at exit 1..K, then of one going to the end,
/// and the original model's (FLOPs or µs): what an exit distribution's
/// expected cost is read from, once per table rather than per candidate.
#[derive(Debug, Clone)]
pub struct PathCosts {
    pub paths: Vec<f64>,
    pub original: f64,
}

impl PathCosts {
    /// The cost model's FLOPs per path (CostReport's cumulative costs).
    pub fn flops(table: &CostTable) -> PathCosts {
        let report = CostReport::new(table, None);
        let mut paths: Vec<f64> = report.exits.iter().map(|e| e.cumulative.flops).collect();
        paths.push(report.worst_case.flops);
        PathCosts {
            paths,
            original: table.original.flops,
        }
    }

    /// The expected cost under `shares` (exits 1..K, then the full model).
    pub fn expected(&self, shares: &[f64]) -> f64 {
        shares.iter().zip(&self.paths).map(|(s, c)| s * c).sum()
    }

    /// 1 − expected / original (0 for a model that costs nothing).
    pub fn saving(&self, shares: &[f64]) -> f64 {
        if self.original > 0.0 {
            1.0 - self.expected(shares) / self.original
        } else {
            0.0
        }
    }
}

/// A candidate on `obs`'s rows: exits, risk, p-value (not yet certified)
/// and expected FLOPs.
pub fn evaluate(
    obs: &Observed,
    d: &Decisions,
    losses: &RowLosses,
    thresholds: &[f64],
    test: (Bound, f64, f64),
    flops: &PathCosts,
) -> CurvePoint {
    let (bound, epsilon, stake) = test;
    let n = obs.rows();
    let k = obs.exits.len();
    let (exit, pred) = outcome(d, obs.full_pred, thresholds);
    let tally = losses.tally(&exit);
    let mut counts = vec![0usize; k + 1];
    for &e in &exit {
        counts[e - 1] += 1;
    }
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / n.max(1) as f64).collect();
    CurvePoint {
        expected_flops: flops.expected(&shares),
        savings: flops.saving(&shares),
        thresholds: thresholds.to_vec(),
        exit_shares: shares,
        harms: tally.harms,
        helps: tally.helps,
        risk: risk(tally, bound),
        stake,
        p_value: p_value(tally, bound, epsilon, stake),
        certified: false,
        accuracy: obs
            .labels
            .map(|l| pred.iter().zip(l).filter(|(a, b)| a == b).count() as f64 / n as f64),
        agreement: pred.iter().zip(obs.full_pred).filter(|(a, b)| a == b).count() as f64 / n as f64,
    }
}

/// Marks the candidates fixed-sequence testing certifies (a prefix).
pub fn certify(points: &mut [CurvePoint], delta: f64) {
    let p: Vec<f64> = points.iter().map(|c| c.p_value).collect();
    let certified = guarantee::certified_prefix(&p, delta);
    for c in &mut points[..certified] {
        c.certified = true;
    }
}

/// The certified candidate with the lowest expected cost (the first such
/// on a tie: the more conservative).
pub fn best(points: &[CurvePoint]) -> Option<&CurvePoint> {
    points
        .iter()
        .filter(|c| c.certified)
        .fold(None, |best: Option<&CurvePoint>, c| match best {
            Some(b) if b.expected_flops <= c.expected_flops => Some(b),
            _ => Some(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidences_match_their_definitions() {
        let row = [2.0f32, 0.0, 0.0];
        let e2 = 2f64.exp();
        let p0 = e2 / (e2 + 2.0);
        assert!((confidence(Confidence::Maxprob, &row, 1.0) - p0).abs() < 1e-12);
        let p1 = 1.0 / (e2 + 2.0);
        assert!((confidence(Confidence::Margin, &row, 1.0) - (p0 - p1)).abs() < 1e-12);
        let h = -(p0 * p0.ln() + 2.0 * p1 * p1.ln());
        assert!((confidence(Confidence::Entropy, &row, 1.0) - (1.0 - h / 3f64.ln())).abs() < 1e-12);
        // Temperature 2 halves the logits.
        let half = [1.0f32, 0.0, 0.0];
        assert!(
            (confidence(Confidence::Maxprob, &row, 2.0) - confidence(Confidence::Maxprob, &half, 1.0)).abs() < 1e-12
        );
    }

    #[test]
    fn temperature_fit_recovers_a_known_scale() {
        // Logits are 3× what a calibrated model would emit for these labels:
        // rows of [s, 0] with label 0 in a share q of rows. The NLL optimum
        // has softmax(s/T)[0] = q.
        let s = 6.0f32;
        let q: f64 = 0.8;
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..100 {
            logits.extend([s, 0.0]);
            labels.push(usize::from(i >= 80));
        }
        let t = fit_temperature(&logits, 2, &labels);
        let want = f64::from(s) / (q / (1.0 - q)).ln();
        assert!((t - want).abs() < 1e-4, "{t} vs {want}");
        // At that temperature the confidence equals the accuracy: ECE 0.
        assert!(ece(&logits, 2, &labels, t) < 1e-6);
        assert!(ece(&logits, 2, &labels, 1.0) > 0.1);
    }

    #[test]
    fn outcome_takes_the_first_confident_exit_unless_held_back() {
        let d = Decisions {
            confidence: vec![vec![0.9, 0.5, 0.95], vec![0.99, 0.99, 0.2]],
            prediction: vec![vec![1, 1, 3], vec![2, 2, 2]],
            held_back: vec![vec![false, false, true], vec![false, false, false]],
            doubt: vec![vec![0.0; 3]; 2],
        };
        let (exit, pred) = outcome(&d, &[7, 7, 7], &[0.8, 0.8]);
        assert_eq!(exit, vec![1, 2, 3]);
        assert_eq!(pred, vec![1, 2, 7]);
    }
}
