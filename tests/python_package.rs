//! The Python package (python/: maturin, PyO3), as pip installs it:
//! scripts/test.sh builds the wheel and installs it into .venv, then this
//! runs tests/python/test_package.py with pytest against the library's
//! real outputs (onnx's checker, ONNX Runtime).

mod common;

use std::path::Path;

use common::{python, repo};

#[test]
fn the_python_api_fits_inserts_calibrates_and_evaluates() {
    let py = python();
    let import = std::process::Command::new(&py)
        .args(["-c", "import eexc, sys; sys.stdout.write(eexc.__version__)"])
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "the eexc wheel is not installed in {} (scripts/test.sh builds and installs it): {}",
        py.display(),
        String::from_utf8_lossy(&import.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&import.stdout), env!("CARGO_PKG_VERSION"));
    let script = Path::new("tests/python/test_package.py");
    // Every test in the file ran and passed (none skipped or left uncollected).
    let tests = std::fs::read_to_string(repo().join(script))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("def test_"))
        .count();
    let out = std::process::Command::new(&py)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(script)
        .current_dir(repo())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("{tests} passed")) && !text.contains("failed"),
        "{text}"
    );
}
