//! Loop mode: a run of identical layers becomes one ONNX `Loop`. Each
//! layer's differing constants are stacked along a new leading axis; the
//! body gathers iteration i's slice, runs the layer, then exit head i and its
//! decision, and stops the loop (`cond` false) when the batch is confident.
//! After the loop an `If` returns the last head's outputs or runs the rest
//! of the network.
//!
//! Exits sit after layers 1..L-1, with the knobs of `if` mode
//! (`eexc_threshold_k`, `eexc_temperature_k`). The body of iteration L has a
//! head too (a body is the same every iteration); its threshold is a
//! constant no confidence reaches, so the last layer never exits.

use std::collections::HashMap;
use std::path::Path;

use super::contract::{EXIT_INDEX, knobs};
use super::decision::{Knobs, build_decision};
use super::emit::EmitContext;
use super::head::{HeadWeights, build_head_from};
use super::repeat::RepeatedRun;
use super::{ExitError, ExitOptions};
use crate::ir::load_time::{self, StoredTensors};
use crate::ir::{NodeId, TensorType, ValueId};
use crate::onnx::dtype::ElemType;
use crate::onnx::proto::{GraphProto, ModelProto, TensorProto};
use crate::transform::builder::{GraphBuilder, attr_graph, attr_int};
use crate::transform::builder::{type_proto, value_info};
use crate::transform::patch::{GraphPatch, ModelPatch};

/// Above every confidence (all are at most 1): the last iteration never exits.
const NEVER: f32 = 2.0;

/// Where the stored data of constants lives.
pub struct ConstantData<'a> {
    /// The model's initializers with their data (insert-exits sets the large
    /// ones aside while it works).
    pub initializers: &'a [TensorProto],
    /// For external data.
    pub base_dir: &'a Path,
}

impl EmitContext<'_> {
    /// Loop mode. `self.plan` has one exit after each layer but the last.
    pub fn emit_loop(
        &self,
        options: &ExitOptions,
        run: &RepeatedRun,
        data: &ConstantData,
    ) -> Result<ModelProto, ExitError> {
        if self.opset < 11 {
            return Err(ExitError::BadOption(format!(
                "--mode loop needs opset 11 or later (Loop scan outputs, Gather with index -1); the model imports opset {}",
                self.opset
            )));
        }
        if let Some(e) = self
            .plan
            .exits
            .iter()
            .find(|e| e.head == super::plan::HeadKind::ConvGrid)
        {
            return Err(ExitError::BadOption(format!(
                "--mode loop: the exit at '{}' has a conv-grid head, whose convolution the loop body cannot gather per iteration; use --mode if, or another head",
                e.tensor
            )));
        }
        let g = self.graph;
        let layers = run.layers.len();
        let out_name = g.value(self.classifier.output).name.clone();
        let mut fixed = vec![EXIT_INDEX.to_string()];
        for k in 1..layers {
            let kn = knobs(k);
            fixed.extend([kn.threshold, kn.temperature]);
        }
        let names = self.names(&fixed)?;
        let out_type = self.output_type()?;
        let mut b = GraphBuilder::new(names, self.opset);

        let mut cut_points = vec![run.entry];
        cut_points.extend(run.layers.iter().map(|l| l.output));
        let (parts, constant_nodes) = crate::exits::plan::split_at(g, &cut_points);
        for &c in &constant_nodes {
            b.add_node(self.original_node(c).clone());
        }
        for &n in &parts[0] {
            b.add_node(self.original_node(n).clone());
        }
        // Context the layers read (a mask's bias, a batch size) but first
        // needed inside the run: computed once, before the loop. Layers
        // 2..L's own copies are dropped below unless the rest reads them.
        let in_layers: std::collections::HashSet<_> = run.layers.iter().flat_map(|l| l.nodes.iter().copied()).collect();
        let hoisted: Vec<NodeId> = parts[1..=layers]
            .iter()
            .flatten()
            .copied()
            .filter(|n| !in_layers.contains(n))
            .collect();
        for &n in &hoisted {
            b.add_node(self.original_node(n).clone());
        }

        // Per-iteration knobs and heads, gathered by the iteration number.
        let stack_knob = |b: &mut GraphBuilder, base: &str, per_exit: Vec<String>, last: f32| {
            let mut pieces: Vec<String> = per_exit
                .iter()
                .map(|k| b.unsqueeze(&format!("{k}_1d"), k, &[0]))
                .collect();
            pieces.push(b.const_f32(&format!("{base}_last"), &[1], &[last]));
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            b.op("Concat", base, &refs, vec![attr_int("axis", 0)])
        };
        let thresholds = stack_knob(
            &mut b,
            "eexc_loop_thresholds",
            (1..layers).map(|k| knobs(k).threshold).collect(),
            NEVER,
        );
        let temperatures = stack_knob(
            &mut b,
            "eexc_loop_temperatures",
            (1..layers).map(|k| knobs(k).temperature).collect(),
            1.0,
        );
        let point = &self.plan.exits[0];
        let classes = self.classifier.classes;
        let mut heads: Vec<&HeadWeights> = self.weights.iter().collect();
        let unused_head = HeadWeights {
            weight: vec![0.0; (classes * point.features) as usize],
            bias: vec![0.0; classes as usize],
            refine: None,
        };
        heads.push(&unused_head);
        let head_w = b.const_f32(
            "eexc_loop_head_weight",
            &[layers as i64, classes, point.features],
            &heads.iter().flat_map(|h| h.weight.iter().copied()).collect::<Vec<_>>(),
        );
        let head_b = b.const_f32(
            "eexc_loop_head_bias",
            &[layers as i64, classes],
            &heads.iter().flat_map(|h| h.bias.iter().copied()).collect::<Vec<_>>(),
        );
        let constants = self.layer_constants(&mut b, run, data)?;

        // The body: (iteration, cond, h) -> (cond, h', logits, all confident).
        let mut body = b.branch();
        let iter = body.fresh("eexc_loop_iteration");
        let cond_in = body.fresh("eexc_loop_cond_in");
        let h_in = body.fresh("eexc_loop_state");
        let gather = |body: &mut GraphBuilder, stacked: &str| {
            body.op(
                "Gather",
                &format!("{stacked}_i"),
                &[stacked, &iter],
                vec![attr_int("axis", 0)],
            )
        };
        let mut rename: HashMap<String, String> = HashMap::new();
        rename.insert(g.value(run.entry).name.clone(), h_in.clone());
        for (name, c) in &constants {
            let local = match c {
                LayerConstant::Shared(n) => n.clone(),
                LayerConstant::Stacked(s) => gather(&mut body, s),
            };
            rename.insert(name.clone(), local);
        }
        let first = &run.layers[0];
        for &n in &first.nodes {
            // Shape arithmetic that comes out as fixed numbers (the layer's
            // width, its head count): constants, which ONNX Runtime folds in
            // a main graph but would compute again in every iteration.
            let outputs: Vec<ValueId> = g.node(n).outputs.iter().flatten().copied().collect();
            let numbers: Option<Vec<TensorProto>> = outputs.iter().map(|&o| load_time::folded_tensor(g, o)).collect();
            if let Some(numbers) = numbers.filter(|t| !t.is_empty()) {
                for (&o, t) in outputs.iter().zip(numbers) {
                    let name = &g.value(o).name;
                    let c = body.constant(t, &format!("eexc_loop_{name}"));
                    rename.insert(name.clone(), c);
                }
                continue;
            }
            let mut node = self.original_node(n).clone();
            for i in node.input.iter_mut() {
                if let Some(r) = rename.get(i) {
                    *i = r.clone();
                }
            }
            for o in node.output.iter_mut().filter(|o| !o.is_empty()) {
                let fresh = body.fresh(&format!("eexc_loop_{o}"));
                rename.insert(o.clone(), fresh.clone());
                *o = fresh;
            }
            node.set_name(body.fresh(&format!("eexc_loop_{}", node.name())));
            body.add_node(node);
        }
        let h_out = rename[&g.value(first.output).name].clone();
        let w_i = gather(&mut body, &head_w);
        let b_i = gather(&mut body, &head_b);
        let mut head_point = point.clone();
        head_point.tensor = h_out.clone();
        let z = body.fresh("eexc_loop_logits");
        let tag_start = body.node_count();
        build_head_from(&mut body, "eexc_loop_head", &head_point, &w_i, &b_i, &z);
        let loop_knobs = Knobs {
            threshold: gather(&mut body, &thresholds),
            temperature: gather(&mut body, &temperatures),
        };
        let decision = build_decision(
            &mut body,
            "eexc_loop",
            &z,
            classes,
            options.confidence,
            &loop_knobs,
            &options.never_exit_classes,
        );
        body.tag_from(tag_start, &crate::fuse::exit_tag("loop"));
        let cond_out = body.op("Not", "eexc_loop_go_on", &[&decision.all_ok], vec![]);
        let ok_out = body.op("Identity", "eexc_loop_exited", &[&decision.all_ok], vec![]);
        let state_type = g
            .value(run.entry)
            .ty
            .as_ref()
            .map(type_proto)
            .ok_or_else(|| ExitError::UnknownShape(g.value(run.entry).name.clone()))?;
        let bool_scalar = type_proto(&TensorType::known_dims(ElemType::BOOL, &[]));
        let mut body_g = GraphProto::new();
        body_g.set_name("eexc_loop_body".into());
        body_g.node = body.take_nodes();
        body_g.input = vec![
            value_info(&iter, type_proto(&TensorType::known_dims(ElemType::INT64, &[]))),
            value_info(&cond_in, bool_scalar.clone()),
            value_info(&h_in, state_type.clone()),
        ];
        body_g.output = vec![
            value_info(&cond_out, bool_scalar),
            value_info(&h_out, state_type),
            value_info(&z, self.logits_type()),
            value_info(&ok_out, type_proto(&TensorType::known_dims(ElemType::BOOL, &[]))),
        ];
        // The Shapes whose every reader became a constant above.
        let mut unread = GraphPatch::new();
        unread.remove_unread_nodes(|_| true);
        unread.apply(&mut body_g, &std::collections::HashSet::new())?;

        let trips = b.const_i64("eexc_loop_layers", &[], &[layers as i64]);
        let go = b.constant(bool_tensor(true), "eexc_loop_start");
        let last_out = g.value(run.layers[layers - 1].output).name.clone();
        let all_logits = b.fresh("eexc_loop_all_logits");
        let all_exited = b.fresh("eexc_loop_all_exited");
        b.push(
            "Loop",
            &[&trips, &go, &g.value(run.entry).name],
            &[last_out, all_logits.clone(), all_exited.clone()],
            vec![attr_graph("body", body_g)],
        );

        // After the loop: did the last iteration run stop it?
        let last = b.const_i64("eexc_loop_last", &[], &[-1]);
        let exited = b.op(
            "Gather",
            "eexc_loop_exited_early",
            &[&all_exited, &last],
            vec![attr_int("axis", 0)],
        );
        let z_last = b.op(
            "Gather",
            "eexc_loop_last_logits",
            &[&all_logits, &last],
            vec![attr_int("axis", 0)],
        );
        let done = b.op("Shape", "eexc_loop_iterations", &[&all_exited], vec![]);
        let pred = b.op(
            "ArgMax",
            "eexc_rows",
            &[&z_last],
            vec![attr_int("axis", 1), attr_int("keepdims", 0)],
        );
        let zero = b.const_i64("eexc_zero", &[], &[0]);
        let zeros = b.op("Mul", "eexc_row_zeros", &[&pred, &zero], vec![]);

        let mut then_b = b.branch();
        let then_out = then_b.fresh("eexc_loop_exit_prediction");
        self.apply_tail(&mut then_b, 0, &z_last, &then_out);
        let then_idx = then_b.op("Add", "eexc_loop_exit_index", &[&zeros, &done], vec![]);
        let mut then_g = GraphProto::new();
        then_g.set_name("eexc_loop_exit".into());
        then_g.node = then_b.into_nodes();
        then_g.output = vec![
            value_info(&then_out, out_type.clone()),
            value_info(&then_idx, self.exit_index_type()),
        ];

        let mut else_b = b.branch();
        let final_out = else_b.fresh(&format!("{out_name}__final"));
        for &n in &parts[layers + 1] {
            let mut node = self.original_node(n).clone();
            for o in node.output.iter_mut().filter(|o| **o == out_name) {
                *o = final_out.clone();
            }
            else_b.add_node(node);
        }
        let final_idx = self.exit_index(&mut else_b, &zeros, layers);
        let mut else_g = GraphProto::new();
        else_g.set_name("eexc_loop_rest".into());
        else_g.node = else_b.into_nodes();
        else_g.output = vec![
            value_info(&final_out, out_type.clone()),
            value_info(&final_idx, self.exit_index_type()),
        ];
        b.push(
            "If",
            &[&exited],
            &[out_name, EXIT_INDEX.to_string()],
            vec![attr_graph("then_branch", then_g), attr_graph("else_branch", else_g)],
        );

        let (knob_inits, knob_inputs) = self.knob_initializers(options);
        // The layers' weights now come from the stacked tensors, and the
        // body reads layer 1's context: the load-time nodes that computed
        // weights for layers 2..L, and their context copies, go.
        let load_time: std::collections::HashSet<String> = constant_nodes
            .iter()
            .chain(&hoisted)
            .flat_map(|&c| self.original_node(c).output.iter().cloned())
            .collect();
        let mut model = self.proto.clone();
        let mut patch = ModelPatch::new();
        patch.main.remove_all_nodes(self.main().node.len());
        patch.main.append_nodes(b.take_nodes());
        patch
            .main
            .remove_unread_nodes(move |n| n.output.iter().all(|o| load_time.contains(o.as_str())));
        patch.main.add_inputs(knob_inputs);
        patch.main.add_initializers(knob_inits);
        patch.main.add_initializers(b.take_initializers());
        patch.main.add_outputs([value_info(EXIT_INDEX, self.exit_index_type())]);
        patch.apply(&mut model)?;
        Ok(model)
    }

    /// Each constant input of layer 1, by name: shared when every layer
    /// reads the same value, else stacked (a new initializer, layers on axis 0).
    fn layer_constants(
        &self,
        b: &mut GraphBuilder,
        run: &RepeatedRun,
        data: &ConstantData,
    ) -> Result<Vec<(String, LayerConstant)>, ExitError> {
        let g = self.graph;
        let stored = StoredTensors {
            initializers: data.initializers.iter().map(|t| (t.name(), t)).collect(),
            base_dir: data.base_dir,
        };
        let mut out: Vec<(String, LayerConstant)> = Vec::new();
        let first = &run.layers[0];
        for (pos, &n) in first.compared.iter().enumerate() {
            for (slot, input) in g.node(n).inputs.iter().enumerate() {
                let Some(v) = input else { continue };
                if !g.value(*v).is_constant {
                    continue;
                }
                let name = g.value(*v).name.clone();
                if out.iter().any(|(k, _)| *k == name) {
                    continue;
                }
                let same_position: Vec<ValueId> = run
                    .layers
                    .iter()
                    .map(|l| g.node(l.compared[pos]).inputs[slot].expect("same structure"))
                    .collect();
                if same_position.iter().all(|&x| x == *v) {
                    out.push((name, LayerConstant::Shared(g.value(*v).name.clone())));
                    continue;
                }
                // Each layer's value as its readers see it: weights behind
                // an exporter's Identity alias, Reshape or Transpose are
                // evaluated, so the stack holds what the layer reads.
                let tensors: Vec<TensorProto> = same_position
                    .iter()
                    .map(|&x| {
                        load_time::evaluate(g, x, &stored).map_err(|reason| {
                            ExitError::BadOption(format!("--mode loop: layer constant '{}': {reason}", g.value(x).name))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let bytes: Vec<&[u8]> = tensors.iter().map(|t| t.raw_data()).collect();
                if tensors
                    .iter()
                    .any(|t| t.dims != tensors[0].dims || t.data_type() != tensors[0].data_type())
                {
                    return Err(ExitError::BadOption(format!(
                        "--mode loop: layer constant '{name}' differs in type or shape between layers"
                    )));
                }
                if bytes.iter().all(|x| *x == bytes[0]) {
                    out.push((name.clone(), LayerConstant::Shared(name)));
                    continue;
                }
                let mut stacked = TensorProto::new();
                stacked.set_data_type(tensors[0].data_type());
                stacked.dims = std::iter::once(run.layers.len() as i64)
                    .chain(tensors[0].dims.iter().copied())
                    .collect();
                stacked.set_raw_data(bytes.concat().into());
                let stacked_name = b.constant(stacked, &format!("eexc_loop_{name}_stacked"));
                out.push((name, LayerConstant::Stacked(stacked_name)));
            }
        }
        Ok(out)
    }
}

enum LayerConstant {
    /// Every layer reads this value.
    Shared(String),
    /// Per-layer values stacked on axis 0 under this name.
    Stacked(String),
}

fn bool_tensor(v: bool) -> TensorProto {
    let mut t = TensorProto::new();
    t.set_data_type(ElemType::BOOL.0);
    t.set_raw_data(vec![u8::from(v)].into());
    t
}
