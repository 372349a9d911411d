//! What each command does with its arguments: call the library, write the
//! files (the model first, then the reports), print the report's text.

use std::path::PathBuf;

use anyhow::Context;

use super::args::*;

pub fn fit(a: FitArgs) -> anyhow::Result<()> {
    let head = a.exits.head;
    let selection = a.exits.selection(None);
    if let Some(out) = &a.rows.pass_model {
        refuse_overwrite(&a.model, &[], &[Some(out)])?;
        let pass = crate::fit::write_pass_model(&a.model, &selection, head, a.logits.as_deref(), &a.dims.values, out)
            .map_err(|e| naming_input(&a.model, &[], e))?;
        print_pass_model(out, &pass);
        return Ok(());
    }
    let (Some(source), Some(output)) = (a.rows.source(), a.output) else {
        anyhow::bail!("fit needs --data or --outputs, and --output");
    };
    let options = crate::fit::FitOptions {
        source,
        save_outputs: a.rows.save_outputs.clone(),
        labels: a.labels,
        label_weight: a.label_weight,
        head,
        selection,
        logits: a.logits,
        batch: a.batch_size,
        seed: a.seed,
        held_out: a.held_out,
        dims: a.dims.values,
    };
    refuse_overwrite(
        &a.model,
        &[Some(&options.source.path().to_path_buf()), options.labels.as_ref()],
        &[Some(&output), a.report.as_ref()],
    )?;
    let (heads, report) = crate::fit::fit(&a.model, &options)
        .map_err(|e| naming_input(&a.model, &[Some(options.source.path()), options.labels.as_deref()], e))?;
    let report_json = serde_json::to_vec_pretty(&report).context("encoding the report")?;
    crate::fit::save_heads(&output, &heads, &report.exits, &report)?;
    if let Some(r) = &a.report {
        crate::onnx::write_atomically(r, &report_json)?;
    }
    println!("wrote {}", output.display());
    print!("{}", report.to_text());
    Ok(())
}

/// What a user does with a written pass model.
fn print_pass_model(out: &std::path::Path, pass: &crate::runtime::pass::PassModel) {
    println!(
        "wrote {} (the {} pass model, graph digest {})",
        out.display(),
        pass.command,
        pass.digest
    );
    println!("outputs: {}", pass.outputs.join(", "));
    println!(
        "next: run it over the rows (any runtime), save each batch's outputs as an .npz or .safetensors \
         shard in one folder (file names in row order), then `eexc manifest DIR --pass-model {}` and \
         `eexc {} ... --outputs DIR`",
        out.display(),
        pass.command
    );
}

/// `eexc manifest`: the manifest of a folder of shards.
pub fn manifest(dir: &std::path::Path, pass_model: &std::path::Path, labels: Option<&str>) -> anyhow::Result<()> {
    let (digest, outputs) = crate::runtime::pass::read_pass_info(pass_model)?;
    let manifest = crate::runtime::shards::write_manifest(dir, &digest, &outputs, labels)?;
    let rows: usize = manifest.shards.iter().map(|s| s.rows).sum();
    println!(
        "wrote {}: {} shards, {rows} rows",
        dir.join(crate::runtime::shards::MANIFEST).display(),
        manifest.shards.len()
    );
    Ok(())
}

pub fn calibrate(a: CalibrateArgs) -> anyhow::Result<()> {
    if let Some(out) = &a.rows.pass_model {
        refuse_overwrite(&a.model, &[], &[Some(out)])?;
        let pass = crate::calibrate::write_pass_model(&a.model, out)?;
        print_pass_model(out, &pass);
        return Ok(());
    }
    let Some(source) = a.rows.source() else {
        anyhow::bail!("calibrate needs --data or --outputs");
    };
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| a.model.with_extension("calibrated.onnx"));
    refuse_overwrite(
        &a.model,
        &[Some(&source.path().to_path_buf()), a.labels.as_ref()],
        &[
            Some(&out),
            a.report.as_ref(),
            a.curve.as_ref(),
            a.plot.as_ref(),
            a.summary.as_ref(),
        ],
    )?;
    let options = crate::calibrate::CalibrateOptions {
        source,
        save_outputs: a.rows.save_outputs.clone(),
        labels: a.labels,
        batch: a.batch_size,
        procedure: a.bound.procedure(crate::calibrate::Split {
            choosing_share: a.choosing_share,
            seed: a.seed,
        })?,
    };
    let c = crate::calibrate::calibrate(&a.model, &options)?;
    let source_dir = a.model.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    crate::onnx::save_model(&c.model, &out, Some(&source_dir))?;
    if let Some(r) = &a.report {
        let json = serde_json::to_vec_pretty(&c.report).context("encoding the report")?;
        crate::onnx::write_atomically(r, &json)?;
    }
    if let Some(p) = &a.curve {
        crate::onnx::write_atomically(p, crate::calibrate::curve_csv(&c.curve).as_bytes())?;
    }
    if let Some(p) = &a.plot {
        let svg = crate::report::plot::curve_svg(&c.curve, Some(&c.report.chosen), &c.title)?;
        crate::onnx::write_atomically(p, svg.as_bytes())?;
    }
    if let Some(p) = &a.summary {
        crate::report::summary::append(p, &c.report.to_markdown())?;
    }
    println!("wrote {}", out.display());
    print!("{}", c.report.to_text());
    Ok(())
}

pub fn eval(a: EvalArgs) -> anyhow::Result<()> {
    refuse_overwrite(
        &a.model,
        &[Some(&a.data), a.labels.as_ref(), a.baseline.as_ref()],
        &[a.predictions.as_ref(), a.summary.as_ref(), a.plot.as_ref()],
    )?;
    let options = crate::eval::EvalOptions {
        data: a.data,
        labels: a.labels,
        baseline: a.baseline,
        runtime: a.runtime,
        threads: usize::from(a.threads),
        ort_library: a.ort_library,
    };
    let e = crate::eval::eval(&a.model, &options)?;
    if let Some(p) = &a.predictions {
        crate::eval::save_predictions(p, &e.predictions)?;
    }
    if let Some(p) = &a.summary {
        crate::report::summary::append(p, &e.report.to_markdown())?;
    }
    if let Some(p) = &a.plot {
        let title = format!("{}: where {} rows left", file_name(&a.model), e.report.rows);
        let svg = crate::report::plot::exit_histogram_svg(&e.report.exit_histogram, &title)?;
        crate::onnx::write_atomically(p, svg.as_bytes())?;
    }
    emit(&e.report, a.json, e.report.to_text())
}

/// The savings gate failed: the run worked, its result is not good enough.
#[derive(Debug)]
pub struct GateFailed(String);

impl std::fmt::Display for GateFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GateFailed {}

pub fn compile(a: CompileArgs) -> anyhow::Result<()> {
    use crate::exits::Mode;
    if !matches!(a.mode, Mode::If | Mode::Compact) {
        anyhow::bail!("compile emits --mode if or compact");
    }
    refuse_overwrite(
        &a.model,
        &[
            Some(&a.data),
            a.labels.as_ref(),
            a.calib_data.as_ref(),
            a.calib_labels.as_ref(),
            a.measure.as_ref(),
            a.measure_labels.as_ref(),
        ],
        &[Some(&a.output), a.report.as_ref(), a.summary.as_ref()],
    )?;
    let options = crate::compile::CompileOptions {
        data: a.data,
        labels: a.labels,
        head: a.exits.head,
        selection: a.exits.selection(Some(3)),
        mode: a.mode,
        confidence: a.confidence,
        procedure: a.bound.procedure(crate::calibrate::Split {
            choosing_share: 0.2,
            seed: a.seed,
        })?,
        fit_share: a.fit_share,
        calibration: a.calib_data.map(|x| (x, a.calib_labels)),
        seed: a.seed,
        batch: a.batch_size,
        keep_exits: a.keep_exits,
        objective: a.objective,
        head_variants: a.head_variants,
        quantize_heads: a.quantize_heads,
        dims: a.dims.values,
    };
    println!(
        "a certificate at {}% with δ = {} needs at least {} calibration rows ({}% of them choose the candidates, the rest test them)",
        100.0 * options.procedure.target.epsilon(),
        options.procedure.delta,
        options.procedure.rows_needed(),
        100.0 * options.procedure.split.choosing_share
    );
    let (model, mut report) = crate::compile::compile(&a.model, &options)?;
    let write_report = |report: &crate::compile::CompileReport| -> anyhow::Result<()> {
        if let Some(r) = &a.report {
            let json = serde_json::to_vec_pretty(report).context("encoding the report")?;
            crate::onnx::write_atomically(r, &json)?;
        }
        Ok(())
    };
    write_report(&report)?;
    print!("{}", report.to_text());
    if let Some(gate) = a.fail_under_savings
        && report.savings < gate
    {
        let failed = format!(
            "gate failed: expected FLOP savings {:.1}% are under --fail-under-savings {:.1}%; no model written",
            100.0 * report.savings,
            100.0 * gate
        );
        if let Some(p) = &a.summary {
            let section = format!(
                "{}
**{failed}**
",
                report.to_markdown()
            );
            crate::report::summary::append(p, &section)?;
        }
        return Err(GateFailed(failed).into());
    }
    let source_dir = a.model.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    crate::onnx::save_model(&model, &a.output, Some(&source_dir))?;
    println!("wrote {}", a.output.display());
    if let Some(data) = a.measure {
        let measured = crate::eval::eval(
            &a.output,
            &crate::eval::EvalOptions {
                data,
                labels: a.measure_labels,
                baseline: Some(a.model.clone()),
                runtime: crate::eval::RuntimeChoice::Auto,
                threads: 1,
                ort_library: None,
            },
        )?;
        report.measured = Some(measured.report);
        print!("{}", report.measured_text().unwrap_or_default());
        write_report(&report)?;
    }
    if let Some(p) = &a.summary {
        crate::report::summary::append(p, &report.to_markdown())?;
    }
    Ok(())
}

/// `error`, named after the model it is about when its message names none
/// of the files the command was given (an exit tensor, a head, an option
/// that does not fit the model); a message about a data or weights file
/// already names that file.
fn naming_input<E: std::error::Error + Send + Sync + 'static>(
    model: &std::path::Path,
    given: &[Option<&std::path::Path>],
    error: E,
) -> anyhow::Error {
    let text = error.to_string();
    let named = std::iter::once(Some(model))
        .chain(given.iter().copied())
        .flatten()
        .any(|p| text.contains(&p.display().to_string()));
    if named {
        anyhow::Error::new(error)
    } else {
        anyhow::Error::new(error).context(model.display().to_string())
    }
}

pub fn insert_exits(a: InsertArgs) -> anyhow::Result<()> {
    use crate::exits::{ExitOptions, WeightSource};
    let options = ExitOptions {
        head: a.exits.head,
        selection: a.exits.selection(None),
        mode: a.mode,
        weights: match (a.weights, a.weights_from) {
            (Some(f), _) => WeightSource::File(f),
            (None, Some(m)) => WeightSource::FromModel(m),
            (None, None) => WeightSource::Seeded(a.seed),
        },
        confidence: a.confidence,
        thresholds: a.threshold,
        temperatures: a.temperature,
        never_exit_classes: a.never_exit_classes,
        logits: a.logits,
        exit_distribution: a.exit_dist,
        fuse: (!a.no_fuse).then(|| a.limits.options(false)),
        quantize_heads: a.quantize_heads,
        dims: a.dims.values,
    };
    let out = a.output.unwrap_or_else(|| a.model.with_extension("ee.onnx"));
    refuse_overwrite(&a.model, &[], &[Some(&out), a.report.as_ref()])?;
    let weights_file = match &options.weights {
        WeightSource::File(f) | WeightSource::FromModel(f) => Some(f.as_path()),
        _ => None,
    };
    let (model, summary) =
        crate::exits::insert_exits(&a.model, &options).map_err(|e| naming_input(&a.model, &[weights_file], e))?;
    let source_dir = a.model.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let report_json = serde_json::to_vec_pretty(&summary).context("encoding the report")?;
    // The model first: a report never describes a model that was not written.
    crate::onnx::save_model(&model, &out, Some(&source_dir))?;
    if let Some(r) = &a.report {
        crate::onnx::write_atomically(r, &report_json)?;
    }
    for w in &summary.warnings {
        eprintln!("eexc: WARNING: {w}");
    }
    println!("wrote {}", out.display());
    print!("{}", summary.to_text());
    Ok(())
}

pub fn optimize(a: OptimizeArgs) -> anyhow::Result<()> {
    let out = a.output.unwrap_or_else(|| a.model.with_extension("opt.onnx"));
    refuse_overwrite(&a.model, &[], &[Some(&out), a.report.as_ref()])?;
    let loaded = crate::onnx::load_model_for_transform(&a.model)?;
    let mut model = loaded.proto;
    let options = crate::fuse::FuseOptions {
        dims: a.dims.values,
        ..a.limits.options(a.freeze_knobs)
    };
    let knobs = crate::exits::knob_names(&model);
    if a.freeze_knobs && knobs.is_empty() {
        anyhow::bail!(
            "{}: --freeze-knobs: the model has no eexc knobs (not made by insert-exits)",
            a.model.display()
        );
    }
    let report = crate::fuse::fuse_model(&mut model, crate::fuse::Regions::Whole, &options, &knobs)
        .with_context(|| format!("{}", a.model.display()))?;
    let report_json = serde_json::to_vec_pretty(&report).context("encoding the report")?;
    crate::onnx::save_model(&model, &out, Some(&loaded.base_dir))?;
    if let Some(r) = &a.report {
        crate::onnx::write_atomically(r, &report_json)?;
    }
    if a.json {
        println!("{}", String::from_utf8_lossy(&report_json));
    } else {
        println!("wrote {}", out.display());
        print!("{}", report.to_text());
    }
    Ok(())
}

pub fn cost(model: PathBuf, exit_dist: Option<Vec<f64>>, json: bool, plot: Option<PathBuf>) -> anyhow::Result<()> {
    refuse_overwrite(&model, &[], &[plot.as_ref()])?;
    let loaded = crate::onnx::read_model(&model)?;
    let meta = crate::exits::metadata_of(&loaded.proto).map_err(|e| anyhow::anyhow!("{}: {e}", model.display()))?;
    if let Some(d) = &exit_dist {
        crate::exits::cost::check_distribution(d, meta.exits.len()).map_err(|e| anyhow::anyhow!(e))?;
    }
    let report = crate::exits::cost::CostReport::new(&meta.cost, exit_dist.as_deref());
    if let Some(p) = &plot {
        let title = format!("{}: what a row costs by where it leaves", file_name(&model));
        let svg = crate::report::plot::exit_cost_svg(&report, &title)?;
        crate::onnx::write_atomically(p, svg.as_bytes())?;
    }
    emit(&report, json, report.to_text())
}

/// The file name of `path`, for titles.
fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |f| f.to_string_lossy().into_owned())
}

/// Fails when an output would replace the model or another input file:
/// inputs are never modified.
pub fn refuse_overwrite(
    model: &std::path::Path,
    inputs: &[Option<&PathBuf>],
    outputs: &[Option<&PathBuf>],
) -> anyhow::Result<()> {
    for out in outputs.iter().flatten() {
        if same_file(out, model) {
            anyhow::bail!("{}: refusing to overwrite the input model", out.display());
        }
        if inputs.iter().flatten().any(|input| same_file(out, input)) {
            anyhow::bail!("{}: refusing to overwrite an input file", out.display());
        }
    }
    Ok(())
}

/// True when `a` and `b` name the same existing file (through links or
/// relative paths alike).
pub fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Prints a report as pretty JSON or as its text form.
pub fn emit(report: &impl serde::Serialize, json: bool, text: String) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("encoding JSON report")?
        );
    } else {
        print!("{text}");
    }
    Ok(())
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { model, json, dims } => {
            let report = crate::report::inspect::inspect(&model, &dims.values)?;
            emit(&report, json, report.to_text())?;
        }
        Command::InsertExits(args) => insert_exits(*args)?,
        Command::Optimize(args) => optimize(*args)?,
        Command::Fit(args) => fit(*args)?,
        Command::Calibrate(args) => calibrate(*args)?,
        Command::Eval(args) => eval(*args)?,
        Command::Compile(args) => compile(*args)?,
        Command::Cost {
            model,
            exit_dist,
            json,
            plot,
        } => cost(model, exit_dist, json, plot)?,
        Command::Manifest {
            dir,
            pass_model,
            labels,
        } => manifest(&dir, &pass_model, labels.as_deref())?,
        Command::Completions { shell } => {
            let mut cli = <crate::cli::args::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "eexc", &mut std::io::stdout());
        }
        Command::Print { model, elide_data_over } => {
            // Shown as stored: external-data files are not needed to print.
            let loaded = crate::onnx::read_model(&model)?;
            let options = crate::onnx::printer::PrintOptions { elide_data_over };
            print!("{}", crate::onnx::printer::model_to_text_with(&loaded.proto, &options));
        }
    }
    Ok(())
}
