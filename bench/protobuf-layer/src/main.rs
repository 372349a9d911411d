//! `pb-bench CANDIDATE IN.onnx OUT.onnx [--repeat N]`: load IN with one
//! protobuf layer, save it as OUT, N times; prints timings as one JSON line.
//!
//! Candidates (all generated from the main crate's proto/onnx.proto, proto2, IR 14):
//! - `eexc`          eexc::onnx::load_model + eexc::onnx::save_model: rust-protobuf
//!                   3.7, plus eexc's checks, unknown-field re-sorting, copying of
//!                   external-data files, and atomic write with fsync.
//! - `rust-protobuf` the same rust-protobuf 3.7 types, plain
//!                   parse_from_bytes / write_to_bytes + fs::write.
//! - `prost`         prost 0.14 types (prost-build + protox), decode / encode_to_vec.
//!
//! onnx-protobuf 0.2.3 (protobuf =3.4.0) is the separate binary in onnx-protobuf/.

#[path = "common.rs"]
mod common;

mod rp {
    include!(concat!(env!("OUT_DIR"), "/rust_protobuf/mod.rs"));
}

mod prost_onnx {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use std::path::Path;

const USAGE: &str = "usage: pb-bench eexc|rust-protobuf|prost IN.onnx OUT.onnx [--repeat N]";

fn main() {
    let (pos, repeat) = common::args(USAGE);
    let [candidate, input, output] = pos.as_slice() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let result = match candidate.as_str() {
        "eexc" => common::bench(
            "eexc",
            input,
            output,
            repeat,
            |p| eexc::onnx::load_model(Path::new(p)).map_err(|e| e.to_string()),
            |m, out| {
                eexc::onnx::save_model(&m.proto, Path::new(out), Some(&m.base_dir)).map_err(|e| e.to_string())
            },
        ),
        "rust-protobuf" => common::bench(
            "rust-protobuf",
            input,
            output,
            repeat,
            |p| {
                use protobuf::Message;
                let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
                rp::onnx::ModelProto::parse_from_bytes(&bytes).map_err(|e| e.to_string())
            },
            |m, out| {
                use protobuf::Message;
                let bytes = m.write_to_bytes().map_err(|e| e.to_string())?;
                std::fs::write(out, bytes).map_err(|e| e.to_string())
            },
        ),
        "prost" => common::bench(
            "prost",
            input,
            output,
            repeat,
            |p| {
                use prost::Message;
                let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
                prost_onnx::ModelProto::decode(bytes.as_slice()).map_err(|e| e.to_string())
            },
            |m, out| {
                use prost::Message;
                std::fs::write(out, m.encode_to_vec()).map_err(|e| e.to_string())
            },
        ),
        other => Err(format!("unknown candidate {other:?}\n{USAGE}")),
    };
    if let Err(e) = result {
        eprintln!("pb-bench {candidate}: {e}");
        std::process::exit(1);
    }
}
