//! `pb-bench-onnx-protobuf IN.onnx OUT.onnx [--repeat N]`: load IN with
//! onnx-protobuf 0.2.3 (protobuf 3.4.0), save it as OUT, N times.

#[path = "../../src/common.rs"]
mod common;

use onnx_protobuf::{Message, ModelProto};

const USAGE: &str = "usage: pb-bench-onnx-protobuf IN.onnx OUT.onnx [--repeat N]";

fn main() {
    let (pos, repeat) = common::args(USAGE);
    let [input, output] = pos.as_slice() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let result = common::bench(
        "onnx-protobuf",
        input,
        output,
        repeat,
        |p| {
            let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
            ModelProto::parse_from_bytes(&bytes).map_err(|e| e.to_string())
        },
        |m, out| {
            let bytes = m.write_to_bytes().map_err(|e| e.to_string())?;
            std::fs::write(out, bytes).map_err(|e| e.to_string())
        },
    );
    if let Err(e) = result {
        eprintln!("pb-bench-onnx-protobuf: {e}");
        std::process::exit(1);
    }
}
