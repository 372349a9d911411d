//! Generates two sets of ONNX types from the main crate's proto/onnx.proto
//! (proto2, IR 14), both without protoc:
//! - rust-protobuf 3.7 (pure parser), as eexc's own build.rs does;
//! - prost 0.14, from a FileDescriptorSet that protox (pure Rust) compiles.

use std::path::PathBuf;

fn main() {
    let proto_dir = PathBuf::from("../../proto");
    let proto = proto_dir.join("onnx.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    protobuf_codegen::Codegen::new()
        .pure()
        .include(&proto_dir)
        .input(&proto)
        .cargo_out_dir("rust_protobuf")
        .run_from_script();

    let fds = protox::compile([&proto], [&proto_dir]).expect("protox: compile onnx.proto");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("prost-build: generate code");
}
