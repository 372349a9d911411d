//! The `eexc` command line: [`args`] says what each command takes,
//! [`commands`] what it does with it, and [`main_with`] runs one command
//! line to an exit code. The binary (`src/main.rs`) and the Python package
//! (`python/`) both call [`main_with`], so they take the same arguments and
//! print the same messages.

pub mod args;
pub mod commands;

use std::ffi::OsString;

use clap::Parser;

/// Parses `argv` (program name first) and runs the command. Returns the
/// exit code: 0 done, 1 the run worked but a gate failed (savings, or no
/// certified threshold), 2 it could not run. Errors are printed to stderr
/// as one line, `eexc: error: ...`, and returned with the code.
pub fn main_with<I, T>(argv: I) -> (u8, Option<String>)
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" that exit 0.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return (
                code,
                (code != 0).then(|| e.to_string().lines().next().unwrap_or("").to_string()),
            );
        }
    };
    match commands::run(cli) {
        Ok(()) => (0, None),
        Err(e) => {
            // One line: the error, then any cause its message does not already say.
            let mut line = e.to_string();
            for cause in e.chain().skip(1).map(|c| c.to_string()) {
                if !line.contains(&cause) {
                    line = format!("{line}: {cause}");
                }
            }
            eprintln!("eexc: error: {line}");
            let gate = e.is::<commands::GateFailed>()
                || matches!(
                    e.downcast_ref::<crate::compile::CompileError>(),
                    Some(crate::compile::CompileError::Calibrate(
                        crate::calibrate::CalibrateError::NothingCertified { .. }
                    ))
                )
                || matches!(
                    e.downcast_ref::<crate::calibrate::CalibrateError>(),
                    Some(crate::calibrate::CalibrateError::NothingCertified { .. })
                );
            (if gate { 1 } else { 2 }, Some(line))
        }
    }
}
