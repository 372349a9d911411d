//! The conv-grid head's convolution (3×3, stride 2, padding 1, C → C
//! channels, then ReLU and the 2×2 grid pool), trained post-hoc with a
//! linear layer on top by mini-batch Adam on the exit's feature maps, the
//! backbone frozen. `fit` then also fits a linear layer by `logreg` on the
//! pooled refined features, as for every other head, and keeps whichever
//! of the two linear layers scores better on the held-out rows.
//!
//! The convolution is an im2col product: each output position's 3×3×C
//! patch is a row of P, so the forward pass is P·Kᵀ and the weight's
//! gradient dYᵀ·P, both one matrix product per mini-batch (matrixmultiply
//! through ndarray). The input is never differentiated (the backbone is
//! frozen), which halves the work of a full backward pass.

use tract_onnx::prelude::tract_ndarray::linalg::general_mat_mul;
use tract_onnx::prelude::tract_ndarray::{Array2, ArrayView2, Axis};

use crate::exits::head::RefineWeights;
use crate::exits::plan::{GRID_CELLS, REFINE_KERNEL, REFINE_STRIDE, grid_window, refined_side};
use crate::numeric::{SplitMix64, argmax};

/// Passes over the training rows (the held-out rows pick the best pass):
/// at least this many, and more on few rows, so that Adam takes at least
/// `MIN_STEPS` steps (at most `MAX_EPOCHS` passes).
const EPOCHS: usize = 16;
const MIN_STEPS: usize = 1500;
const MAX_EPOCHS: usize = 200;
const BATCH: usize = 64;
/// Adam's step size at the start (cosine decay to zero over the passes).
const LEARNING_RATE: f32 = 1e-2;
/// The L2 penalty on both weights (the head report's L2 when the linear
/// layer trained here is kept).
pub const WEIGHT_DECAY: f64 = 1e-4;

/// An exit's feature map: C channels of `height` × `width`, per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl MapShape {
    fn len(self) -> usize {
        self.channels * self.height * self.width
    }
}

/// The trained convolution and what it gives.
#[derive(Debug, Clone)]
pub struct Refined {
    pub weights: RefineWeights,
    /// rows × C·4: the pooled refined features of every row, channel-major
    /// then the cell (what the head's Gemm reads).
    pub features: Vec<f32>,
    /// The linear layer trained with the convolution: classes × C·4
    /// (row-major), and its bias.
    pub linear: (Vec<f32>, Vec<f32>),
    /// The pass whose held-out cross-entropy was lowest (1-based).
    pub best_epoch: usize,
    /// The convolution with that linear layer on the held-out rows: the
    /// share whose argmax is the targets', and the mean cross-entropy.
    pub held_out_agreement: f64,
    pub held_out_cross_entropy: f64,
}

/// Where each refined position goes: the grid cells that contain it, with
/// the weight 1/area that the average gives it.
struct Grid {
    out_height: usize,
    out_width: usize,
    /// Per output position (row-major): (cell, 1 / cell area).
    cells_of: Vec<Vec<(usize, f32)>>,
}

impl Grid {
    fn new(shape: MapShape) -> Self {
        let (oh, ow) = (
            refined_side(shape.height as i64) as usize,
            refined_side(shape.width as i64) as usize,
        );
        let ((kh, sh), (kw, sw)) = (grid_window(oh as i64), grid_window(ow as i64));
        let (kh, sh, kw, sw) = (kh as usize, sh as usize, kw as usize, sw as usize);
        let area = 1.0 / (kh * kw) as f32;
        let mut cells_of = vec![Vec::new(); oh * ow];
        for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            for y in i * sh..i * sh + kh {
                for x in j * sw..j * sw + kw {
                    cells_of[y * ow + x].push((i * 2 + j, area));
                }
            }
        }
        Grid {
            out_height: oh,
            out_width: ow,
            cells_of,
        }
    }

    fn positions(&self) -> usize {
        self.out_height * self.out_width
    }
}

/// The parameters being trained: K (C × C·9), its bias, the linear layer
/// W (classes × C·4) and its bias; Adam's two moments for each, in the
/// same layout.
#[derive(Clone)]
struct Params {
    kernel: Array2<f32>,
    kernel_bias: Vec<f32>,
    linear: Array2<f32>,
    linear_bias: Vec<f32>,
}

impl Params {
    fn zeros_like(p: &Params) -> Params {
        Params {
            kernel: Array2::zeros(p.kernel.raw_dim()),
            kernel_bias: vec![0.0; p.kernel_bias.len()],
            linear: Array2::zeros(p.linear.raw_dim()),
            linear_bias: vec![0.0; p.linear_bias.len()],
        }
    }

    fn slices(&self) -> [&[f32]; 4] {
        [
            self.kernel.as_slice().expect("standard layout"),
            &self.kernel_bias,
            self.linear.as_slice().expect("standard layout"),
            &self.linear_bias,
        ]
    }

    fn slices_mut(&mut self) -> [&mut [f32]; 4] {
        [
            self.kernel.as_slice_mut().expect("standard layout"),
            &mut self.kernel_bias,
            self.linear.as_slice_mut().expect("standard layout"),
            &mut self.linear_bias,
        ]
    }
}

/// One mini-batch's forward pass, kept for the backward pass.
struct Forward {
    patches: Array2<f32>,
    /// (rows · positions) × C, after ReLU.
    refined: Array2<f32>,
    /// rows × C·4.
    pooled: Array2<f32>,
    /// rows × classes.
    probabilities: Array2<f32>,
}

struct Trainer<'a> {
    maps: &'a [f32],
    shape: MapShape,
    grid: Grid,
    /// The maps are read divided by this (their RMS), so one step size
    /// fits every model; the kernel is scaled back at the end.
    input_scale: f32,
}

impl Trainer<'_> {
    fn patch_len(&self) -> usize {
        self.shape.channels * (REFINE_KERNEL * REFINE_KERNEL) as usize
    }

    /// im2col of `rows`: (rows · positions) × C·9, column c·9 + ky·3 + kx
    /// (ONNX Conv's weight layout), zero where the padding is.
    fn patches(&self, rows: &[usize]) -> Array2<f32> {
        let MapShape {
            channels,
            height,
            width,
        } = self.shape;
        let (k, stride) = (REFINE_KERNEL as usize, REFINE_STRIDE as usize);
        let positions = self.grid.positions();
        let mut p = Array2::zeros((rows.len() * positions, self.patch_len()));
        let scale = 1.0 / self.input_scale;
        for (b, &r) in rows.iter().enumerate() {
            let map = &self.maps[r * self.shape.len()..(r + 1) * self.shape.len()];
            for oy in 0..self.grid.out_height {
                for ox in 0..self.grid.out_width {
                    let mut row = p.row_mut(b * positions + oy * self.grid.out_width + ox);
                    let row = row.as_slice_mut().expect("standard layout");
                    for ky in 0..k {
                        // Padding 1: input row oy·2 − 1 + ky.
                        let Some(iy) = (oy * stride + ky).checked_sub(1).filter(|&y| y < height) else {
                            continue;
                        };
                        for kx in 0..k {
                            let Some(ix) = (ox * stride + kx).checked_sub(1).filter(|&x| x < width) else {
                                continue;
                            };
                            for c in 0..channels {
                                row[c * k * k + ky * k + kx] = map[(c * height + iy) * width + ix] * scale;
                            }
                        }
                    }
                }
            }
        }
        p
    }

    fn forward(&self, params: &Params, rows: &[usize]) -> Forward {
        let patches = self.patches(rows);
        let channels = self.shape.channels;
        let mut refined = Array2::zeros((patches.nrows(), channels));
        general_mat_mul(1.0, &patches, &params.kernel.t(), 0.0, &mut refined);
        for mut row in refined.rows_mut() {
            for (v, b) in row.iter_mut().zip(&params.kernel_bias) {
                *v = (*v + b).max(0.0);
            }
        }
        let pooled = self.pool(&refined, rows.len());
        let mut logits = Array2::zeros((rows.len(), params.linear_bias.len()));
        general_mat_mul(1.0, &pooled, &params.linear.t(), 0.0, &mut logits);
        for mut row in logits.rows_mut() {
            for (v, b) in row.iter_mut().zip(&params.linear_bias) {
                *v += b;
            }
            let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            row.mapv_inplace(|v| (v - max).exp());
            let sum = row.sum();
            row.mapv_inplace(|v| v / sum);
        }
        Forward {
            patches,
            refined,
            pooled,
            probabilities: logits,
        }
    }

    /// rows × C·4 grid means of the refined map.
    fn pool(&self, refined: &Array2<f32>, rows: usize) -> Array2<f32> {
        let channels = self.shape.channels;
        let cells = GRID_CELLS as usize;
        let positions = self.grid.positions();
        let mut pooled = Array2::zeros((rows, channels * cells));
        for b in 0..rows {
            let mut out = pooled.row_mut(b);
            for (pos, cells_of) in self.grid.cells_of.iter().enumerate() {
                let values = refined.row(b * positions + pos);
                for &(cell, weight) in cells_of {
                    for c in 0..channels {
                        out[c * cells + cell] += weight * values[c];
                    }
                }
            }
        }
        pooled
    }

    /// The gradient of the mean cross-entropy (plus weight decay) at
    /// `params` on the mini-batch `f` against `targets` (its rows).
    fn backward(&self, params: &Params, f: &Forward, targets: ArrayView2<f32>) -> Params {
        let rows = targets.nrows() as f32;
        let dz = (&f.probabilities - &targets) / rows;
        let mut grad = Params::zeros_like(params);
        general_mat_mul(1.0, &dz.t(), &f.pooled, 0.0, &mut grad.linear);
        for row in dz.rows() {
            for (g, v) in grad.linear_bias.iter_mut().zip(row) {
                *g += v;
            }
        }
        let mut d_pooled = Array2::zeros(f.pooled.raw_dim());
        general_mat_mul(1.0, &dz, &params.linear, 0.0, &mut d_pooled);
        let d_refined = self.unpool(&d_pooled, &f.refined);
        general_mat_mul(1.0, &d_refined.t(), &f.patches, 0.0, &mut grad.kernel);
        for row in d_refined.rows() {
            for (g, v) in grad.kernel_bias.iter_mut().zip(row) {
                *g += v;
            }
        }
        grad.kernel.scaled_add(WEIGHT_DECAY as f32, &params.kernel);
        grad.linear.scaled_add(WEIGHT_DECAY as f32, &params.linear);
        grad
    }

    /// The pooled gradient spread back over the positions each cell
    /// averages, through the ReLU (zero where it was off).
    fn unpool(&self, d_pooled: &Array2<f32>, refined: &Array2<f32>) -> Array2<f32> {
        let channels = self.shape.channels;
        let cells = GRID_CELLS as usize;
        let positions = self.grid.positions();
        let mut d = Array2::zeros(refined.raw_dim());
        for b in 0..d_pooled.nrows() {
            let dp = d_pooled.row(b);
            for (pos, cells_of) in self.grid.cells_of.iter().enumerate() {
                let on = refined.row(b * positions + pos);
                let mut out = d.row_mut(b * positions + pos);
                for &(cell, weight) in cells_of {
                    for c in 0..channels {
                        if on[c] > 0.0 {
                            out[c] += weight * dp[c * cells + cell];
                        }
                    }
                }
            }
        }
        d
    }

    /// Mean cross-entropy of `rows` against `targets`, and the share of
    /// them whose argmax is the targets', in batches.
    fn score(&self, params: &Params, rows: &[usize], targets: &Array2<f32>) -> (f64, f64) {
        let (mut total, mut agree) = (0.0, 0);
        for chunk in rows.chunks(BATCH * 4) {
            let f = self.forward(params, chunk);
            for (b, &r) in chunk.iter().enumerate() {
                let (p, t) = (f.probabilities.row(b), targets.row(r));
                for (p, t) in p.iter().zip(t) {
                    if *t > 0.0 {
                        total -= f64::from(*t) * f64::from(p.max(1e-30)).ln();
                    }
                }
                agree += usize::from(argmax(p.iter().copied()) == argmax(t.iter().copied()));
            }
        }
        let n = rows.len().max(1) as f64;
        (total / n, agree as f64 / n)
    }
}

/// Adam's update of `params` by `grad`, at step `t` (1-based) with step size `lr`.
fn adam_step(params: &mut Params, grad: &Params, moments: &mut (Params, Params), t: i32, lr: f32) {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPS: f32 = 1e-8;
    let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
    let (m, v) = moments;
    for (((p, g), m), v) in params
        .slices_mut()
        .into_iter()
        .zip(grad.slices())
        .zip(m.slices_mut())
        .zip(v.slices_mut())
    {
        for i in 0..p.len() {
            m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
            v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
            p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
        }
    }
}

/// Trains the refining convolution on the rows not `held_out` (the held-out
/// rows pick the pass to keep) against `targets` (rows × classes, each row
/// a distribution); `maps` is rows × C·H·W; `what` names the head on the
/// progress bar. Seeded: the same inputs give the same weights.
pub fn train(
    maps: &[f32],
    shape: MapShape,
    targets: &Array2<f64>,
    held_out: &[bool],
    seed: u64,
    what: &str,
) -> Refined {
    let rows = targets.nrows();
    let classes = targets.ncols();
    debug_assert_eq!(maps.len(), rows * shape.len());
    let train_rows: Vec<usize> = (0..rows).filter(|&r| !held_out[r]).collect();
    let test_rows: Vec<usize> = (0..rows).filter(|&r| held_out[r]).collect();
    let mean_square = train_rows
        .iter()
        .flat_map(|&r| &maps[r * shape.len()..(r + 1) * shape.len()])
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / (train_rows.len() * shape.len()).max(1) as f64;
    let input_scale = if mean_square > 0.0 && mean_square.is_finite() {
        mean_square.sqrt() as f32
    } else {
        1.0
    };
    let trainer = Trainer {
        maps,
        shape,
        grid: Grid::new(shape),
        input_scale,
    };
    let targets32 = targets.mapv(|v| v as f32);
    let seeded = crate::exits::head::seeded_weights(
        seed,
        0,
        classes as i64,
        (shape.channels * GRID_CELLS as usize) as i64,
        Some(shape.channels as i64),
    );
    let refine = seeded.refine.expect("seeded with a convolution");
    let mut params = Params {
        kernel: Array2::from_shape_vec((shape.channels, trainer.patch_len()), refine.weight).expect("kernel length"),
        kernel_bias: vec![0.0; shape.channels],
        linear: Array2::zeros((classes, shape.channels * GRID_CELLS as usize)),
        linear_bias: vec![0.0; classes],
    };
    let mut moments = (Params::zeros_like(&params), Params::zeros_like(&params));
    let mut best = (f64::INFINITY, 0.0, 0, params.clone());
    let mut rng = SplitMix64::new(seed ^ 0x0000_C04E_F17E);
    let steps_per_epoch = train_rows.len().div_ceil(BATCH).max(1);
    let epochs = MIN_STEPS.div_ceil(steps_per_epoch).clamp(EPOCHS, MAX_EPOCHS);
    let total_steps = (epochs * steps_per_epoch) as f32;
    let mut step = 0;
    let mut order = train_rows.clone();
    let progress = crate::runtime::progress_bar(epochs, "passes", what);
    for epoch in 1..=epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        for batch in order.chunks(BATCH) {
            let f = trainer.forward(&params, batch);
            let t = targets32.select(Axis(0), batch);
            let grad = trainer.backward(&params, &f, t.view());
            let lr = LEARNING_RATE * 0.5 * (1.0 + (std::f32::consts::PI * step as f32 / total_steps).cos());
            step += 1;
            adam_step(&mut params, &grad, &mut moments, step, lr);
        }
        let rows_scored = if test_rows.is_empty() { &train_rows } else { &test_rows };
        let (ce, agreement) = trainer.score(&params, rows_scored, &targets32);
        if ce < best.0 {
            best = (ce, agreement, epoch, params.clone());
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let (held_out_cross_entropy, held_out_agreement, best_epoch, params) = best;
    let all: Vec<usize> = (0..rows).collect();
    let mut features = Vec::with_capacity(rows * shape.channels * GRID_CELLS as usize);
    for chunk in all.chunks(BATCH * 4) {
        let f = trainer.forward(&params, chunk);
        features.extend(f.pooled.iter());
    }
    // The model reads the maps unscaled: K·(x / s) = (K / s)·x.
    let weight = params.kernel.iter().map(|&v| v / input_scale).collect();
    Refined {
        weights: RefineWeights {
            weight,
            bias: params.kernel_bias,
        },
        features,
        linear: (params.linear.iter().copied().collect(), params.linear_bias.clone()),
        best_epoch,
        held_out_agreement,
        held_out_cross_entropy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trainer(maps: &[f32], shape: MapShape) -> Trainer<'_> {
        Trainer {
            maps,
            shape,
            grid: Grid::new(shape),
            input_scale: 1.0,
        }
    }

    fn wave(n: usize, a: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * a).sin()).collect()
    }

    /// The im2col product equals a direct 3×3, stride-2, padding-1
    /// convolution followed by ReLU and the grid pool, on an odd map (5×7:
    /// refined 3×4, overlapping cells on the odd side).
    #[test]
    fn forward_is_a_padded_strided_convolution_then_the_grid() {
        let shape = MapShape {
            channels: 2,
            height: 5,
            width: 7,
        };
        let maps = wave(2 * shape.len(), 0.37);
        let t = trainer(&maps, shape);
        let params = Params {
            kernel: Array2::from_shape_vec((2, 18), wave(36, 0.91)).unwrap(),
            kernel_bias: vec![0.1, -0.2],
            linear: Array2::from_shape_vec((3, 8), wave(24, 0.53)).unwrap(),
            linear_bias: vec![0.0; 3],
        };
        let f = t.forward(&params, &[1]);
        let (oh, ow) = (3, 4);
        let map = &maps[shape.len()..];
        let conv = |o: usize, oy: usize, ox: usize| -> f32 {
            let mut acc = params.kernel_bias[o];
            for c in 0..2 {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = ((oy * 2 + ky) as i64 - 1, (ox * 2 + kx) as i64 - 1);
                        if (0..5).contains(&iy) && (0..7).contains(&ix) {
                            acc +=
                                params.kernel[[o, c * 9 + ky * 3 + kx]] * map[(c * 5 + iy as usize) * 7 + ix as usize];
                        }
                    }
                }
            }
            acc.max(0.0)
        };
        // Grid over 3×4: rows [0, 2) and [1, 3), columns [0, 2) and [2, 4).
        for o in 0..2 {
            for (cell, (rows, cols)) in [((0, 2), (0, 2)), ((0, 2), (2, 4)), ((1, 3), (0, 2)), ((1, 3), (2, 4))]
                .into_iter()
                .enumerate()
            {
                let mut sum = 0.0;
                for oy in rows.0..rows.1 {
                    for ox in cols.0..cols.1 {
                        sum += conv(o, oy, ox);
                    }
                }
                let want = sum / 4.0;
                let got = f.pooled[[0, o * 4 + cell]];
                assert!((got - want).abs() < 1e-5, "channel {o} cell {cell}: {got} vs {want}");
            }
        }
        assert_eq!(f.refined.nrows(), oh * ow);
    }

    /// The analytic gradient matches central differences of the loss.
    #[test]
    fn gradient_matches_finite_differences() {
        let shape = MapShape {
            channels: 2,
            height: 4,
            width: 4,
        };
        let rows = 3;
        let maps = wave(rows * shape.len(), 0.71);
        let t = trainer(&maps, shape);
        let mut targets = Array2::zeros((rows, 3));
        for r in 0..rows {
            targets[[r, r % 3]] = 0.7;
            targets[[r, (r + 1) % 3]] = 0.3;
        }
        let params = Params {
            kernel: Array2::from_shape_vec((2, 18), wave(36, 1.3)).unwrap(),
            kernel_bias: vec![0.05, 0.3],
            linear: Array2::from_shape_vec((3, 8), wave(24, 0.29)).unwrap(),
            linear_bias: vec![0.1, 0.0, -0.1],
        };
        let all: Vec<usize> = (0..rows).collect();
        let loss = |p: &Params| -> f64 {
            let decay: f64 = [&p.kernel, &p.linear]
                .iter()
                .map(|a| a.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
                .sum::<f64>()
                * WEIGHT_DECAY
                / 2.0;
            t.score(p, &all, &targets).0 + decay
        };
        let grad = t.backward(&params, &t.forward(&params, &all), targets.view());
        for part in 0..4 {
            for i in 0..params.slices()[part].len() {
                let h = 1e-2;
                let (mut up, mut down) = (params.clone(), params.clone());
                up.slices_mut()[part][i] += h;
                down.slices_mut()[part][i] -= h;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * f64::from(h));
                let analytic = f64::from(grad.slices()[part][i]);
                assert!(
                    (numeric - analytic).abs() < 2e-3,
                    "part {part} index {i}: numeric {numeric} vs analytic {analytic}"
                );
            }
        }
    }

    /// A class no pooled linear head can see (horizontal against vertical
    /// stripes: every cell's mean is the same) is learned through the
    /// convolution; the result is seeded.
    #[test]
    fn a_pattern_pooling_cannot_see_is_learned_and_the_fit_is_reproducible() {
        let shape = MapShape {
            channels: 2,
            height: 8,
            width: 8,
        };
        let rows = 200;
        let mut rng = SplitMix64::new(3);
        let mut maps = Vec::new();
        let mut targets = Array2::zeros((rows, 2));
        for r in 0..rows {
            let class = r % 2;
            let mut map: Vec<f32> = (0..shape.len()).map(|_| rng.next_f64() as f32 - 0.5).collect();
            for y in 0..8 {
                for x in 0..8 {
                    let along = if class == 0 { y } else { x };
                    map[y * 8 + x] += if along % 2 == 0 { 1.0 } else { -1.0 };
                }
            }
            maps.extend(map);
            targets[[r, class]] = 1.0;
        }
        let held_out: Vec<bool> = (0..rows).map(|r| r % 5 == 0).collect();
        let fit = train(&maps, shape, &targets, &held_out, 11, "test");
        assert!(fit.held_out_cross_entropy < 0.2, "{}", fit.held_out_cross_entropy);
        assert_eq!(fit.features.len(), rows * 8);
        let again = train(&maps, shape, &targets, &held_out, 11, "test");
        assert_eq!(fit.weights, again.weights);
        assert_eq!(fit.features, again.features);
    }
}
