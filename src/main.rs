//! The `eexc` command: parse arguments, call the library, print.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// eexc — early-exit compiler for ONNX classifiers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inputs/outputs, op histogram, per-node and total cost, exit candidates.
    Inspect {
        model: PathBuf,
        /// Print the versioned JSON report (docs/inspect-json.md) instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Print the model in ONNX textual syntax (as onnx.printer.to_text).
    Print { model: PathBuf },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Inspect { model, json } => {
            let report = eexc::report::inspect::inspect(&model)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding JSON report")?
                );
            } else {
                print!("{}", report.to_text());
            }
        }
        Command::Print { model } => {
            // Shown as stored: external-data files are not needed to print.
            let loaded = eexc::onnx::read_model(&model)?;
            print!("{}", eexc::onnx::printer::model_to_text(&loaded.proto));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error, then any cause its message does not already say.
            let mut line = e.to_string();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !line.contains(&cause) {
                    line = format!("{line}: {cause}");
                }
            }
            eprintln!("eexc: error: {line}");
            ExitCode::from(2)
        }
    }
}
