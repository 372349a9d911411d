//! `eexc inspect`: snapshots of the human report and the JSON schema, and the
//! exit-point candidates on real structures.

mod common;

use common::{eexc, testdata};

#[test]
fn inspect_text_snapshots() {
    for name in ["bvlc_alexnet", "squeezenet", "resnet50"] {
        let path = format!("testdata/models/{name}.onnx");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_eexc"))
            .current_dir(common::repo())
            .args(["inspect", &path])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        insta::assert_snapshot!(format!("inspect_{name}"), String::from_utf8(out.stdout).unwrap());
    }
}

#[test]
fn inspect_json_snapshot() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eexc"))
        .current_dir(common::repo())
        .args(["inspect", "--json", "testdata/models/squeezenet.onnx"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema"], "eexc.inspect/1");
    insta::assert_json_snapshot!("inspect_json_squeezenet", json);
}

#[test]
fn resnet50_exit_candidates_are_the_block_outputs() {
    let report = eexc::report::inspect::inspect(&testdata("models/resnet50.onnx")).unwrap();
    // Narrow cuts inside ResNet-50: the 16 bottleneck outputs (after the
    // residual Sum + Relu) and the stem, plus the linear tail.
    let after_sum: Vec<_> = report.exit_candidates.iter().filter(|c| c.op_type == "Relu").collect();
    assert!(
        after_sum.len() >= 16,
        "{:?}",
        report.exit_candidates.iter().map(|c| &c.tensor).collect::<Vec<_>>()
    );
    let shares: Vec<f64> = report.exit_candidates.iter().map(|c| c.flop_share).collect();
    assert!(
        shares.windows(2).all(|w| w[0] <= w[1]),
        "FLOP share must grow along the graph"
    );
    assert!(shares.iter().all(|&s| (0.0..=1.0).contains(&s)));
}

#[test]
fn inspect_never_touches_the_input() {
    let path = testdata("models/squeezenet.onnx");
    let before = std::fs::read(&path).unwrap();
    assert!(eexc(&["inspect", path.to_str().unwrap()]).status.success());
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
