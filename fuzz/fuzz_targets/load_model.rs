//! Arbitrary bytes through the whole read-only pipeline: decode, printer, IR,
//! shape inference, cost, narrow cuts. Every stage must answer malformed
//! input with an error (or a partial result), never a panic, a hang or an
//! unbounded allocation.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(proto) = eexc::onnx::load_model_from_bytes(data, Path::new("fuzz.onnx")) else {
        return;
    };
    // The printer takes any decoded proto, even one the IR rejects.
    let _ = eexc::onnx::printer::model_to_text(&proto);
    let Ok(mut model) = eexc::ir::Model::from_proto(&proto) else {
        return;
    };
    let _ = eexc::analysis::shapes::infer_model(&mut model);
    let cost = eexc::analysis::cost::graph_cost(&model.graph);
    let _ = eexc::analysis::cuts::narrow_cuts(&model.graph, &cost);
});
