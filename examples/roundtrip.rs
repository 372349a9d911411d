//! Loads a model and saves it again: `cargo run --example roundtrip IN OUT`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let loaded = eexc::onnx::load_model(args[1].as_ref()).expect("load");
    eexc::onnx::save_model(&loaded.proto, args[2].as_ref(), Some(&loaded.base_dir)).expect("save");
}
