//! Exit decisions: a per-row confidence from temperature-scaled logits,
//! compared with a threshold that is a graph input (so deployments can move
//! the speed/accuracy knob without recompiling).

use crate::transform::builder::{GraphBuilder, attr_int};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Confidence {
    /// Largest softmax probability.
    Maxprob,
    /// 1 − H(p)/ln C: 1 for a one-hot prediction, 0 for a uniform one.
    Entropy,
    /// Top-1 minus top-2 probability.
    Margin,
}

impl Confidence {
    pub fn name(self) -> &'static str {
        match self {
            Confidence::Maxprob => "maxprob",
            Confidence::Entropy => "entropy",
            Confidence::Margin => "margin",
        }
    }
}

/// Graph-input names of one exit's knobs.
#[derive(Debug, Clone)]
pub struct Knobs {
    pub threshold: String,
    pub temperature: String,
}

/// The decision tensors of one exit.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Per-row bool: this row may exit here.
    pub row_ok: String,
    /// 0-D bool: every row may exit (the `If` condition).
    pub all_ok: String,
}

/// Adds the decision for `logits` (N × classes), its tensors named after
/// `base` (`eexc_exit{k}` for exit k).
pub fn build_decision(
    b: &mut GraphBuilder,
    base: &str,
    logits: &str,
    classes: i64,
    confidence: Confidence,
    knobs: &Knobs,
    never_exit_classes: &[i64],
) -> Decision {
    let scaled = b.op("Div", &format!("{base}_scaled"), &[logits, &knobs.temperature], vec![]);
    let probs = b.op(
        "Softmax",
        &format!("{base}_probs"),
        &[&scaled],
        vec![attr_int("axis", 1)],
    );
    let conf_name = format!("{base}_confidence");
    let conf = match confidence {
        Confidence::Maxprob => b.reduce("ReduceMax", &conf_name, &probs, &[1], false),
        Confidence::Entropy => {
            // Σ p·log p = −H; confidence = 1 + Σ p·log p / ln C.
            let logp = b.op(
                "LogSoftmax",
                &format!("{base}_logp"),
                &[&scaled],
                vec![attr_int("axis", 1)],
            );
            let plogp = b.op("Mul", &format!("{base}_plogp"), &[&probs, &logp], vec![]);
            let neg_h = b.reduce("ReduceSum", &format!("{base}_neg_entropy"), &plogp, &[1], false);
            let inv_ln_c = b.const_f32(&format!("{base}_inv_ln_classes"), &[], &[1.0 / (classes as f32).ln()]);
            let scaled_h = b.op("Mul", &format!("{base}_neg_entropy_norm"), &[&neg_h, &inv_ln_c], vec![]);
            let one = b.const_f32(&format!("{base}_one"), &[], &[1.0]);
            b.op("Add", &conf_name, &[&one, &scaled_h], vec![])
        }
        Confidence::Margin => {
            let top = b.top2_values(&format!("{base}_top2"), &probs);
            let i0 = b.const_i64(&format!("{base}_first"), &[], &[0]);
            let i1 = b.const_i64(&format!("{base}_second"), &[], &[1]);
            let p1 = b.op(
                "Gather",
                &format!("{base}_top1"),
                &[&top, &i0],
                vec![attr_int("axis", 1)],
            );
            let p2 = b.op(
                "Gather",
                &format!("{base}_top2nd"),
                &[&top, &i1],
                vec![attr_int("axis", 1)],
            );
            b.op("Sub", &conf_name, &[&p1, &p2], vec![])
        }
    };
    let mut row_ok = b.greater_or_equal(&format!("{base}_confident"), &conf, &knobs.threshold);
    if !never_exit_classes.is_empty() {
        // A row predicting a safety-critical class never exits early.
        let pred = b.op(
            "ArgMax",
            &format!("{base}_pred"),
            &[logits],
            vec![attr_int("axis", 1), attr_int("keepdims", 1)],
        );
        let classes_c = b.const_i64(
            &format!("{base}_never_exit_classes"),
            &[never_exit_classes.len() as i64],
            never_exit_classes,
        );
        let hit = b.op("Equal", &format!("{base}_critical_hit"), &[&pred, &classes_c], vec![]);
        let hit_f = b.cast(&format!("{base}_critical_hit_f"), &hit, 1);
        let blocked = b.reduce("ReduceMax", &format!("{base}_critical"), &hit_f, &[1], false);
        let half = b.const_f32(&format!("{base}_half"), &[], &[0.5]);
        let allowed = b.op("Less", &format!("{base}_not_critical"), &[&blocked, &half], vec![]);
        row_ok = b.op("And", &format!("{base}_may_exit"), &[&row_ok, &allowed], vec![]);
    }
    // Every row: min over the batch of the 0/1 flags (ReduceMin takes no
    // bool), back to a 0-D bool as TensorRT requires of an If condition.
    let ok_f = b.cast(&format!("{base}_may_exit_f"), &row_ok, 1);
    let all_f = b.reduce("ReduceMin", &format!("{base}_all_f"), &ok_f, &[0], false);
    let all_ok = b.cast(&format!("{base}_all_confident"), &all_f, 9);
    Decision { row_ok, all_ok }
}
