//! The `eexc` command: parse arguments, call the library, print. The
//! arguments and the commands live in [`cli`]; this file maps the outcome
//! to an exit code.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Printing into a closed pipe (`eexc ... | head`) ends the process
    // quietly, as for other command-line tools, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default action of a signal at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match cli::commands::run(cli::args::Cli::parse()) {
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
            // 1: the run worked but a gate failed (savings, or no certified
            // threshold); 2: it could not run.
            let gate = e.is::<cli::commands::GateFailed>()
                || matches!(
                    e.downcast_ref::<eexc::compile::CompileError>(),
                    Some(eexc::compile::CompileError::Calibrate(
                        eexc::calibrate::CalibrateError::NothingCertified { .. }
                    ))
                )
                || matches!(
                    e.downcast_ref::<eexc::calibrate::CalibrateError>(),
                    Some(eexc::calibrate::CalibrateError::NothingCertified { .. })
                );
            ExitCode::from(if gate { 1 } else { 2 })
        }
    }
}
