//! Multinomial logistic regression for one exit head: softmax(x·Wᵀ + b)
//! fitted to target distributions (the full model's softmax, labels, or a
//! mix) by L-BFGS (argmin), with an L2 penalty on W chosen on a held-out
//! split.

use crate::numeric::argmax;
use argmin::core::{CostFunction, Executor, Gradient};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use tract_onnx::prelude::tract_ndarray::{Array1, Array2, ArrayView2, Axis};

use super::FitError;
use crate::runtime::RunError;

/// Candidate L2 strengths, tried on the held-out split.
pub const L2_GRID: [f64; 5] = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1];
const MAX_ITERS: u64 = 300;

/// A fitted head in the original feature space.
#[derive(Debug, Clone)]
pub struct Head {
    /// classes × features, row-major.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// What the head does on the rows it was not fitted on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldOut {
    pub l2: f64,
    /// Share of held-out rows where the head's argmax is the targets' argmax.
    pub agreement: f64,
    /// Mean cross-entropy against the targets on the held-out rows.
    pub cross_entropy: f64,
}

/// A forward pass: the parameters, the row-wise probabilities, the mean
/// cross-entropy.
type Forward = (Vec<f64>, Array2<f64>, f64);

struct Problem<'a> {
    x: ArrayView2<'a, f64>,
    targets: ArrayView2<'a, f64>,
    l2: f64,
    /// The last forward pass: the line search asks for the cost and then
    /// the gradient at the same point, and the pass is most of the work.
    last: std::cell::RefCell<Option<Forward>>,
}

impl<'a> Problem<'a> {
    fn new(x: ArrayView2<'a, f64>, targets: ArrayView2<'a, f64>, l2: f64) -> Self {
        Problem {
            x,
            targets,
            l2,
            last: std::cell::RefCell::new(None),
        }
    }

    /// [`Problem::forward`], reusing the last result at the same point.
    fn forward_cached(&self, p: &[f64]) -> (Array2<f64>, f64) {
        if let Some((at, probs, ce)) = self.last.borrow().as_ref()
            && at.as_slice() == p
        {
            return (probs.clone(), *ce);
        }
        let (probs, ce) = self.forward(p);
        *self.last.borrow_mut() = Some((p.to_vec(), probs.clone(), ce));
        (probs, ce)
    }
}

impl Problem<'_> {
    fn shapes(&self) -> (usize, usize) {
        (self.targets.ncols(), self.x.ncols())
    }

    /// Parameters: W (classes × features) then b (classes).
    fn split<'p>(&self, p: &'p [f64]) -> (ArrayView2<'p, f64>, &'p [f64]) {
        let (c, f) = self.shapes();
        let w = ArrayView2::from_shape((c, f), &p[..c * f]).expect("parameter length");
        (w, &p[c * f..])
    }

    /// Row-wise softmax probabilities and the mean cross-entropy.
    fn forward(&self, p: &[f64]) -> (Array2<f64>, f64) {
        let (w, b) = self.split(p);
        let mut z = self.x.dot(&w.t());
        let mut loss = 0.0;
        for (mut row, t) in z.rows_mut().into_iter().zip(self.targets.rows()) {
            for (v, bias) in row.iter_mut().zip(b) {
                *v += bias;
            }
            let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss -= row.iter().zip(t.iter()).map(|(v, t)| t * (v - lse)).sum::<f64>();
            row.mapv_inplace(|v| (v - lse).exp());
        }
        (z, loss / self.x.nrows() as f64)
    }
}

impl CostFunction for Problem<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let (w, _) = self.split(p);
        let (_, ce) = self.forward_cached(p);
        Ok(ce + 0.5 * self.l2 * w.iter().map(|v| v * v).sum::<f64>())
    }
}

impl Gradient for Problem<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        let (w, _) = self.split(p);
        let (probs, _) = self.forward_cached(p);
        let n = self.x.nrows() as f64;
        let residual = (probs - self.targets) / n;
        let gw = residual.t().dot(&self.x) + &(w.to_owned() * self.l2);
        let gb = residual.sum_axis(Axis(0));
        Ok(gw.iter().chain(gb.iter()).copied().collect())
    }
}

/// Per-feature mean and standard deviation (1 where a feature is constant):
/// the regression runs on standardised features, which L-BFGS converges on
/// far better, and the result is mapped back.
fn standardise(x: &Array2<f64>) -> (Array1<f64>, Array1<f64>) {
    let mean = x.mean_axis(Axis(0)).expect("rows");
    let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 1e-12 { s } else { 1.0 });
    (mean, std)
}

fn solve(x: ArrayView2<f64>, targets: ArrayView2<f64>, l2: f64) -> Result<Vec<f64>, FitError> {
    let problem = Problem::new(x, targets, l2);
    let (c, f) = problem.shapes();
    let init = vec![0.0; c * f + c];
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-7)
        .map_err(|e| FitError::Optimiser(e.to_string()))?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(init).max_iters(MAX_ITERS))
        .run()
        .map_err(|e| FitError::Optimiser(e.to_string()))?;
    result
        .state
        .best_param
        .ok_or_else(|| FitError::Optimiser("L-BFGS returned no parameters".into()))
}

/// Fits one head. `x` is rows × features, `targets` rows × classes (each row
/// a distribution); `held_out` marks the rows kept out while choosing the L2
/// strength. The final head is refitted on every row.
pub fn fit_head(
    x: &[f32],
    targets: &Array2<f64>,
    features: usize,
    held_out: &[bool],
) -> Result<(Head, HeldOut), FitError> {
    let rows = targets.nrows();
    let classes = targets.ncols();
    let raw = Array2::from_shape_vec((rows, features), x.iter().map(|&v| f64::from(v)).collect())
        .map_err(|e| RunError::Runtime(format!("features: {e}")))?;
    let (mean, std) = standardise(&raw);
    let z = (&raw - &mean) / &std;
    let pick = |keep: bool| -> Vec<usize> { (0..rows).filter(|&r| held_out[r] != keep).collect() };
    let (train_rows, test_rows) = (pick(true), pick(false));
    let select = |a: &Array2<f64>, idx: &[usize]| a.select(Axis(0), idx);
    let (x_train, t_train) = (select(&z, &train_rows), select(targets, &train_rows));
    let (x_test, t_test) = (select(&z, &test_rows), select(targets, &test_rows));

    let mut best: Option<HeldOut> = None;
    for &l2 in &L2_GRID {
        let p = solve(x_train.view(), t_train.view(), l2)?;
        let problem = Problem::new(x_test.view(), t_test.view(), l2);
        let (probs, ce) = problem.forward(&p);
        let agree = probs
            .rows()
            .into_iter()
            .zip(t_test.rows())
            .filter(|(p, t)| argmax(p.iter().copied()) == argmax(t.iter().copied()))
            .count();
        let score = HeldOut {
            l2,
            agreement: agree as f64 / test_rows.len().max(1) as f64,
            cross_entropy: ce,
        };
        // Higher agreement first; on a tie the lower cross-entropy.
        let better = best
            .as_ref()
            .is_none_or(|b| (score.agreement, -score.cross_entropy) > (b.agreement, -b.cross_entropy));
        if better {
            best = Some(score);
        }
    }
    let chosen = best.expect("grid is not empty");
    let p = solve(z.view(), targets.view(), chosen.l2)?;
    // Back to raw features: w' = w / std, b' = b − Σ w·mean/std.
    let w = ArrayView2::from_shape((classes, features), &p[..classes * features]).expect("parameter length");
    let w_raw = &w / &std;
    let shift = w_raw.dot(&mean);
    let bias: Vec<f32> = p[classes * features..]
        .iter()
        .zip(shift.iter())
        .map(|(b, s)| (b - s) as f32)
        .collect();
    Ok((
        Head {
            weight: w_raw.iter().map(|&v| v as f32).collect(),
            bias,
        },
        chosen,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two separable blobs: the fitted head classifies them, and the gradient
    /// matches finite differences.
    #[test]
    fn separable_data_is_learned_and_gradient_is_right() {
        let rows = 40;
        let mut x = Vec::new();
        let mut t = Array2::zeros((rows, 2));
        for r in 0..rows {
            let class = r % 2;
            let centre = if class == 0 { -2.0 } else { 2.0 };
            x.extend([centre + (r as f32 * 0.37).sin(), 5.0 + (r as f32 * 0.11).cos()]);
            t[[r, class]] = 1.0;
        }
        let held_out: Vec<bool> = (0..rows).map(|r| r % 5 == 0).collect();
        let (head, score) = fit_head(&x, &t, 2, &held_out).unwrap();
        assert_eq!(score.agreement, 1.0);
        for r in 0..rows {
            let z: Vec<f32> = (0..2)
                .map(|c| head.weight[c * 2] * x[r * 2] + head.weight[c * 2 + 1] * x[r * 2 + 1] + head.bias[c])
                .collect();
            assert_eq!(usize::from(z[1] > z[0]), r % 2, "row {r}");
        }

        let xs = Array2::from_shape_vec((rows, 2), x.iter().map(|&v| f64::from(v)).collect()).unwrap();
        let problem = Problem::new(xs.view(), t.view(), 0.01);
        let p: Vec<f64> = vec![0.3, -0.2, 0.1, 0.4, 0.05, -0.05];
        let g = problem.gradient(&p).unwrap();
        for i in 0..p.len() {
            let (mut up, mut down) = (p.clone(), p.clone());
            up[i] += 1e-6;
            down[i] -= 1e-6;
            let numeric = (problem.cost(&up).unwrap() - problem.cost(&down).unwrap()) / 2e-6;
            assert!((numeric - g[i]).abs() < 1e-6, "parameter {i}: {numeric} vs {}", g[i]);
        }
    }
}
