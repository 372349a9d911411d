//! Generates the ONNX message types from `proto/onnx.proto` (proto2, so field
//! presence and unknown fields survive a load/save round trip) with the
//! pure-Rust protobuf parser: no `protoc` needed on the build machine.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/onnx.proto")
        // `bytes` fields as `bytes::Bytes`: decoding from a memory-mapped file
        // then shares the weights with the mapping instead of copying them.
        .customize(protobuf_codegen::Customize::default().tokio_bytes(true))
        .cargo_out_dir("onnx_proto")
        .run_from_script();

    // Reports say which runtime measured, by version: tract's exact one
    // comes from the lock file.
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let tract = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"tract-onnx\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .map_or("unknown", |v| v.trim_end_matches('"'));
    println!("cargo:rustc-env=EEXC_TRACT_VERSION={tract}");
}
