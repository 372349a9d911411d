use eexc::analysis::shapes::infer_model;
use eexc::ir::{Dim, Model};

#[test]
fn light_models() {
    let mut paths: Vec<_> = std::fs::read_dir("/work/shared/models/onnx-light")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    paths.sort();
    for p in paths {
        let loaded = eexc::onnx::load_model(&p).unwrap();
        let mut proto = loaded.proto.clone();
        if std::env::var("SYM").is_ok() {
            use eexc::onnx::proto::{tensor_shape_proto, type_proto};
            let g = proto.graph.as_mut().unwrap();
            for i in g.input.iter_mut() {
                if let Some(type_proto::Value::TensorType(tt)) = i.type_.as_mut().and_then(|t| t.value.as_mut()) {
                    if let Some(d) = tt.shape.as_mut().and_then(|s| s.dim.get_mut(0)) {
                        d.value = Some(tensor_shape_proto::dimension::Value::DimParam("N".into()));
                    }
                }
            }
            for o in g.output.iter_mut() {
                o.type_ = Default::default();
            }
            g.value_info.clear();
        }
        let mut m = Model::from_proto(&proto).unwrap();
        let r = infer_model(&mut m);
        let g = &m.graph;
        let unknown: Vec<String> = g
            .values
            .iter()
            .filter(|v| {
                v.ty.as_ref()
                    .and_then(|t| t.shape.as_ref())
                    .is_none_or(|s| s.iter().any(|d| !matches!(d, Dim::Known(_) | Dim::Sym(_))))
            })
            .map(|v| format!("{}:{:?}", v.name, v.ty))
            .take(5)
            .collect();
        let out = g.value(g.outputs[0]).ty.clone();
        let folded = g.values.iter().filter(|v| v.folded.is_some()).count();
        println!(
            "{}: opset {:?} nodes {} unsupported {:?} invalid {:?} mismatches {} without_shape {} not_fully_known {:?} out {} folded {}",
            p.file_name().unwrap().to_string_lossy(),
            m.opsets,
            g.nodes.len(),
            r.unsupported_ops,
            r.invalid,
            r.mismatches.len(),
            r.values_without_shape,
            unknown,
            out.map(|t| t.to_string()).unwrap_or_default(),
            folded
        );
        for mm in r.mismatches.iter().take(3) {
            println!("   mismatch {:?}", mm);
        }
    }
}

#[test]
fn dump_reshapes() {
    for name in ["light_resnet50", "light_vgg19", "light_inception_v1"] {
        let p = std::path::PathBuf::from(format!("/work/shared/models/onnx-light/{name}.onnx"));
        let loaded = eexc::onnx::load_model(&p).unwrap();
        let m = Model::from_proto(&loaded.proto).unwrap();
        let g = &m.graph;
        let mut ops = std::collections::BTreeMap::new();
        for n in &g.nodes {
            *ops.entry(n.op_type.clone()).or_insert(0) += 1;
        }
        println!("{name}: {ops:?}");
        for n in g
            .nodes
            .iter()
            .filter(|n| matches!(n.op_type.as_str(), "Reshape" | "Flatten" | "Gemm"))
        {
            let ins: Vec<_> = n
                .inputs
                .iter()
                .flatten()
                .map(|&v| {
                    (
                        g.value(v).name.clone(),
                        g.value(v).folded.clone(),
                        g.value(v).ty.as_ref().map(|t| t.to_string()),
                    )
                })
                .collect();
            println!(
                "  {} {:?} attrs {:?}",
                n.op_type,
                ins,
                n.attributes.iter().map(|a| a.name().to_string()).collect::<Vec<_>>()
            );
        }
    }
}
