//! The command line itself: version and shell completions.

mod common;

use common::eexc;

#[test]
fn version_and_completions_come_from_the_argument_definitions() {
    let o = eexc(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("eexc {}", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = eexc(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", String::from_utf8_lossy(&o.stderr));
        let script = String::from_utf8(o.stdout).unwrap();
        // Every command, and a flag added late, are completed.
        for word in ["insert-exits", "calibrate", "compile", "head-variants", "summary"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let o = eexc(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("tcsh"));
}
