//! The `eexc` command: everything is in the library's [`eexc::cli`]; this
//! file only sets up the process and maps the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Printing into a closed pipe (`eexc ... | head`) ends the process
    // quietly, as for other command-line tools, instead of panicking.
    #[cfg(unix)]
    // SAFETY: restoring the default action of a signal at start-up, before
    // any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    ExitCode::from(eexc::cli::main_with(std::env::args_os()).0)
}
