//! Markdown summaries of `compile`, `calibrate` and `eval` for CI job pages
//! (`--summary FILE.md`): one section per run, appended to the file, as
//! GitHub's `$GITHUB_STEP_SUMMARY` and GitLab's report artifacts expect.

use std::fmt::Write;
use std::path::Path;

use crate::calibrate::{CalibrationReport, thresholds_text};
use crate::compile::CompileReport;
use crate::eval::EvalReport;
use crate::onnx::OnnxError;

/// A Markdown table; cells have `|` escaped.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |c: &str| c.replace('|', "\\|");
    let mut out = format!(
        "| {} |\n",
        header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(out, "|{}", " --- |".repeat(header.len()));
    for row in rows {
        let _ = writeln!(
            out,
            "| {} |",
            row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

fn target_text(r: &CalibrationReport) -> String {
    use crate::calibrate::choose::Target;
    match r.target {
        Target::MaxDrop(e) => format!("accuracy drop ≤ {}", pct(e)),
        Target::MaxDisagree(e) => format!("disagreement with the full model ≤ {}", pct(e)),
    }
}

/// The certificate and the per-exit thresholds (shared by calibrate and compile).
fn calibration_body(r: &CalibrationReport, out: &mut String) {
    let _ = writeln!(
        out,
        "- **Certified**: {} with probability ≥ {} (δ = {}): risk {:.4} on {} tested rows, p = {:.2e}; {}",
        target_text(r),
        1.0 - r.delta,
        r.delta,
        r.chosen.risk,
        r.testing_rows,
        r.chosen.p_value,
        r.guarantee
    );
    if let (Some(full), Some(ee)) = (r.full_model_accuracy, r.chosen.accuracy) {
        let _ = writeln!(
            out,
            "- **Accuracy** on the calibration rows: full model {:.2}%, early-exit {:.2}%",
            100.0 * full,
            100.0 * ee
        );
    }
    let _ = writeln!(
        out,
        "- **Expected savings**: {} of the FLOPs{}",
        pct(r.chosen.savings),
        r.cost.time.saving.map_or(String::new(), |t| format!(
            ", {} of the time (cost model, ONNX Runtime CPU)",
            pct(t)
        ))
    );
    out.push('\n');
    let rows: Vec<Vec<String>> = r
        .exits
        .iter()
        .zip(&r.thresholds)
        .map(|(e, &t)| {
            vec![
                e.index.to_string(),
                format!("`{}`", e.tensor),
                thresholds_text(&[t]),
                format!("{:.3}", e.temperature),
                pct(e.exit_rate),
                e.accuracy_of_exits.map_or("-".into(), pct),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "exit",
            "tensor",
            "threshold",
            "temperature",
            "rows leaving",
            "right when leaving",
        ],
        &rows,
    ));
}

impl CalibrationReport {
    /// The `--summary` section of `eexc calibrate`.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("## eexc calibrate: `{}`\n\n", self.model);
        calibration_body(self, &mut out);
        out
    }
}

impl CompileReport {
    /// The `--summary` section of `eexc compile`.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("## eexc compile: `{}`\n\n", self.model);
        let _ = writeln!(
            out,
            "- **Rows**: heads fitted on {}, thresholds on {} (a certificate needs at least {})",
            self.fit_rows, self.calibration_rows, self.calibration_rows_needed
        );
        calibration_body(&self.calibration, &mut out);
        if !self.exits_tried.is_empty() {
            let rows: Vec<Vec<String>> = self
                .exits_tried
                .iter()
                .map(|v| {
                    vec![
                        format!("`{}`", v.tensor),
                        v.head.name().to_string(),
                        if v.kept { "kept" } else { "dropped" }.to_string(),
                        pct(v.expected_saving_with),
                        pct(v.expected_saving_without),
                    ]
                })
                .collect();
            let _ = write!(
                out,
                "\nExits tried (expected {} saving of a certificate, on the choosing rows):\n\n",
                match self.objective {
                    crate::calibrate::Objective::Time => "time",
                    crate::calibrate::Objective::Flops => "FLOP",
                }
            );
            out.push_str(&table(&["cut", "head", "verdict", "with it", "without it"], &rows));
        }
        if let Some(m) = &self.measured {
            let _ = write!(out, "\nMeasured against the original:\n\n{}", eval_body(m));
        }
        out
    }
}

fn eval_body(r: &EvalReport) -> String {
    let mut out = String::new();
    let accuracy = |a: Option<f64>| a.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a));
    let mut rows = vec![vec![
        "early-exit".to_string(),
        accuracy(r.early_exit.accuracy),
        format!("{:.3}", r.early_exit.timing.mean_ms),
        format!("{:.3}", r.early_exit.timing.p90_ms),
    ]];
    if let Some(b) = &r.baseline {
        rows.push(vec![
            "original".into(),
            accuracy(b.accuracy),
            format!("{:.3}", b.timing.mean_ms),
            format!("{:.3}", b.timing.p90_ms),
        ]);
    }
    out.push_str(&table(&["model", "accuracy", "mean ms", "p90 ms"], &rows));
    let _ = writeln!(out, "\n- **Runtime**: {} ({} rows)", r.runtime, r.rows);
    if let Some(a) = r.agreement {
        let _ = writeln!(out, "- **Agreement** with the original: {:.2}%", 100.0 * a);
    }
    let _ = writeln!(
        out,
        "- **Rows leaving at exits 1..K, then the full model**: {:?}",
        r.exit_histogram
    );
    let _ = writeln!(
        out,
        "- **Time saving**: measured {}, cost model {}; FLOP saving {}",
        r.measured_time_saving.map_or("-".into(), pct),
        r.predicted_time_saving.map_or("-".into(), pct),
        pct(r.predicted_flop_saving)
    );
    out
}

impl EvalReport {
    /// The `--summary` section of `eexc eval`.
    pub fn to_markdown(&self) -> String {
        format!("## eexc eval: `{}`\n\n{}", self.model, eval_body(self))
    }
}

/// Appends `section` to the summary file at `path` (created if missing),
/// atomically: the file is the old bytes plus the section, or unchanged.
pub fn append(path: &Path, section: &str) -> Result<(), OnnxError> {
    let mut bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(OnnxError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !bytes.is_empty() && !bytes.ends_with(b"\n\n") {
        bytes.extend_from_slice(if bytes.ends_with(b"\n") { b"\n" } else { b"\n\n" });
    }
    bytes.extend_from_slice(section.as_bytes());
    crate::onnx::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_escape_pipes_and_append_keeps_what_was_there() {
        let t = table(&["a", "b"], &[vec!["x|y".into(), "1".into()]]);
        assert_eq!(t, "| a | b |\n| --- | --- |\n| x\\|y | 1 |\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        append(&path, "## one\n").unwrap();
        append(&path, "## two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "## one\n\n## two\n");
    }
}
