//! `eexc._eexc`: the eexc command line, run in-process from Python. The
//! typed API in `python/eexc/__init__.py` builds the arguments, reads the
//! reports back, and raises `eexc.EexcError` with the command's one-line
//! message; this module only runs a command line.

use pyo3::prelude::*;

/// Runs `eexc ARGS...` in this process; returns the exit code (0 done,
/// 1 a gate failed, 2 it could not run) and the error line, if any.
/// Output goes to this process's stdout and stderr, as the command's does.
#[pyfunction]
fn run(py: Python<'_>, args: Vec<String>) -> (u8, Option<String>) {
    let argv: Vec<String> = std::iter::once("eexc".to_string()).chain(args).collect();
    // The work is Rust only: let other Python threads run meanwhile.
    py.detach(|| eexc::cli::main_with(argv))
}

#[pymodule]
fn _eexc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
