//! Writes the early-exit model: `multi` (original plus every exit's outputs,
//! for training and calibration) or `if` (nested `If`: exit k's `then`
//! branch returns its head's outputs, its `else` branch runs the rest).

use std::collections::{HashMap, HashSet};

use super::contract::{EXIT_INDEX, branch_names, continue_mask_name, exit_output_name, knobs, logits_name};
use super::decision::build_decision;
use super::head::{HeadWeights, build_head};
use super::{ExitError, ExitOptions};
use crate::analysis::classifier::Classifier;
use crate::exits::plan::{ExitPoint, Plan};
use crate::ir::{Dim, Graph, NameGenerator, NodeId, TensorType, ValueId};
use crate::onnx::proto::{
    GraphProto, ModelProto, NodeProto, TensorProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};
use crate::transform::builder::{GraphBuilder, attr_graph, attr_int, attr_ints, tensor_f32, type_proto, value_info};
use crate::transform::patch::ModelPatch;

/// Everything emission needs about the source model.
pub struct EmitContext<'a> {
    pub proto: &'a ModelProto,
    pub graph: &'a Graph,
    pub classifier: &'a Classifier,
    pub plan: &'a Plan,
    pub weights: &'a [HeadWeights],
    pub opset: i64,
    /// Heads as int8 Gemms (`--quantize-heads`; every exit is quantized).
    pub quantize_heads: bool,
}

pub(super) fn scalar_f32() -> TypeProto {
    type_proto(&TensorType::known_dims(crate::onnx::dtype::ElemType::FLOAT, &[]))
}

impl EmitContext<'_> {
    pub(super) fn main(&self) -> &GraphProto {
        // Loading already required a graph.
        self.proto.graph.as_ref().expect("model has a graph")
    }

    pub(super) fn original_node(&self, id: crate::ir::NodeId) -> &NodeProto {
        &self.main().node[id.0]
    }

    /// Declared type of the prediction output (falls back on inference).
    pub(super) fn output_type(&self) -> Result<TypeProto, ExitError> {
        let name = &self.graph.value(self.classifier.output).name;
        if let Some(t) = self
            .main()
            .output
            .iter()
            .find(|o| o.name() == name)
            .and_then(|o| o.type_.as_ref())
            && TensorType::from_proto(t).is_some_and(|t| t.shape.is_some())
        {
            return Ok(t.clone());
        }
        self.graph
            .value(self.classifier.output)
            .ty
            .as_ref()
            .map(type_proto)
            .ok_or_else(|| ExitError::UnknownShape(name.clone()))
    }

    pub(super) fn batch_dim(&self) -> Dim {
        self.classifier
            .logits_type
            .shape
            .as_ref()
            .and_then(|s| s.first().cloned())
            .unwrap_or(Dim::Unknown)
    }

    pub(super) fn exit_index_type(&self) -> TypeProto {
        type_proto(&TensorType::new(
            crate::onnx::dtype::ElemType::INT64,
            vec![self.batch_dim()],
        ))
    }

    pub(super) fn logits_type(&self) -> TypeProto {
        type_proto(&TensorType::new(
            crate::onnx::dtype::ElemType::FLOAT,
            vec![self.batch_dim(), Dim::Known(self.classifier.classes)],
        ))
    }

    /// A name generator that knows every name in the model and has claimed
    /// the fixed names of the output contract.
    pub(super) fn names(&self, fixed: &[String]) -> Result<NameGenerator, ExitError> {
        let mut names = NameGenerator::for_graph(self.graph);
        for n in &self.main().node {
            names.reserve(n.name());
        }
        for f in fixed {
            if !names.reserve(f) {
                return Err(ExitError::NameTaken(f.clone()));
            }
        }
        Ok(names)
    }

    /// Replicates the ops after the logits on `logits`, ending in `out`.
    pub(super) fn apply_tail(&self, b: &mut GraphBuilder, exit: usize, logits: &str, out: &str) {
        let mut current = logits.to_string();
        if self.classifier.logits_type.rank().is_some_and(|r| r > 2) {
            // Logits like N×C×1×1 (SqueezeNet): restore the trailing axes.
            let rank = self.classifier.logits_type.rank().unwrap_or(2) as i64;
            let axes: Vec<i64> = (2..rank).collect();
            current = b.unsqueeze(&format!("eexc_exit{exit}_logits_nd"), &current, &axes);
        }
        let tail = &self.classifier.tail;
        if tail.is_empty() {
            b.push("Identity", &[&current], &[out.to_string()], vec![]);
            return;
        }
        for (i, &id) in tail.iter().enumerate() {
            let orig = self.original_node(id);
            let mut n = orig.clone();
            n.input[0] = current.clone();
            let last = i + 1 == tail.len();
            let output = if last {
                out.to_string()
            } else {
                b.fresh(&format!("eexc_exit{exit}_{}", orig.op_type()))
            };
            n.output = vec![output.clone()];
            n.set_name(b.fresh(&format!("eexc_exit{exit}_{}", orig.op_type())));
            b.add_node(n);
            current = output;
        }
    }

    pub(super) fn knob_initializers(&self, options: &ExitOptions) -> (Vec<TensorProto>, Vec<ValueInfoProto>) {
        let mut inits = Vec::new();
        let mut inputs = Vec::new();
        for k in 1..=self.plan.exits.len() {
            let kn = knobs(k);
            inits.push(tensor_f32(&kn.threshold, &[], &[options.threshold(k)]));
            inits.push(tensor_f32(&kn.temperature, &[], &[options.temperature(k)]));
            inputs.push(value_info(&kn.threshold, scalar_f32()));
            inputs.push(value_info(&kn.temperature, scalar_f32()));
        }
        (inits, inputs)
    }

    /// Exit k's decision on its logits `z`, reading its own knobs.
    fn decision(&self, b: &mut GraphBuilder, k: usize, z: &str, options: &ExitOptions) -> super::decision::Decision {
        build_decision(
            b,
            &format!("eexc_exit{k}"),
            z,
            self.classifier.classes,
            options.confidence,
            &knobs(k),
            &options.never_exit_classes,
        )
    }

    /// Multi mode: the original graph untouched, plus each exit's head and
    /// its outputs.
    pub fn emit_multi(&self) -> Result<ModelProto, ExitError> {
        self.multi_graph(None)
    }

    /// The multi graph with each exit's decision added too (and its knobs):
    /// the flat form the cost model measures. Returns, per exit, the node
    /// index ranges of its head and its decision.
    pub fn emit_flat(&self, options: &ExitOptions) -> Result<ModelProto, ExitError> {
        self.multi_graph(Some(options))
    }

    fn multi_graph(&self, decisions: Option<&ExitOptions>) -> Result<ModelProto, ExitError> {
        let out_name = self.graph.value(self.classifier.output).name.clone();
        let k_count = self.plan.exits.len();
        let mut fixed = Vec::new();
        for k in 1..=k_count {
            fixed.push(exit_output_name(&out_name, k));
            fixed.push(logits_name(k));
            if decisions.is_some() {
                let kn = knobs(k);
                fixed.extend([kn.threshold, kn.temperature]);
            }
        }
        let names = self.names(&fixed)?;
        let out_type = self.output_type()?;
        let mut b = GraphBuilder::new(names, self.opset);
        let mut outputs = Vec::new();
        for (i, point) in self.plan.exits.iter().enumerate() {
            let k = i + 1;
            // The heads read what they read in the early-exit model (the
            // multi model trains and calibrates them).
            let mut point = point.clone();
            self.hand_over_channels_last(&mut b, k, &mut point);
            let tag_start = b.node_count();
            let z = build_head(
                &mut b,
                k,
                &point,
                self.classifier.classes,
                &self.weights[i],
                self.quantize_heads,
            );
            if let Some(options) = decisions {
                let d = self.decision(&mut b, k, &z, options);
                // Outputs here, so that nothing counts the decision as dead
                // code (the If that reads it in the real model is not built).
                let bool_of = |shape: Option<Vec<Dim>>| {
                    type_proto(&TensorType {
                        elem: crate::onnx::dtype::ElemType::BOOL,
                        shape,
                    })
                };
                outputs.push(value_info(&d.row_ok, bool_of(None)));
                outputs.push(value_info(&d.all_ok, bool_of(Some(Vec::new()))));
            }
            b.tag_from(tag_start, &crate::fuse::exit_tag(k));
            let o = exit_output_name(&out_name, k);
            self.apply_tail(&mut b, k, &z, &o);
            outputs.push(value_info(&o, out_type.clone()));
            outputs.push(value_info(&z, self.logits_type()));
        }
        let mut model = self.proto.clone();
        let mut patch = ModelPatch::new();
        patch.main.add_initializers(b.take_initializers());
        patch.main.append_nodes(b.into_nodes());
        patch.main.add_outputs(outputs);
        if let Some(options) = decisions {
            let (knob_inits, knob_inputs) = self.knob_initializers(options);
            patch.main.add_inputs(knob_inputs);
            patch.main.add_initializers(knob_inits);
        }
        patch.apply(&mut model)?;
        Ok(model)
    }

    /// If mode: nested `If`s, one per exit.
    pub fn emit_if(&self, options: &ExitOptions) -> Result<ModelProto, ExitError> {
        self.emit_nested(options, None)
    }

    /// Compact mode: nested `If`s as in `if` mode, but a batch continues
    /// past exit k with only its unconfident rows; their results are
    /// scattered back into place on the way out.
    pub fn emit_compact(&self, options: &ExitOptions) -> Result<ModelProto, ExitError> {
        if self.opset < 11 {
            return Err(ExitError::BadOption(format!(
                "--mode compact needs opset 11 or later (ScatterND, Compress on any axis); the model imports opset {}",
                self.opset
            )));
        }
        let crossing = self.crossing_values()?;
        self.emit_nested(options, Some(&crossing))
    }

    fn emit_nested(&self, options: &ExitOptions, compact: Option<&[Crossing]>) -> Result<ModelProto, ExitError> {
        let out_name = self.graph.value(self.classifier.output).name.clone();
        let mut fixed = vec![EXIT_INDEX.to_string()];
        for k in 1..=self.plan.exits.len() {
            let kn = knobs(k);
            fixed.extend([kn.threshold, kn.temperature, logits_name(k)]);
        }
        let names = self.names(&fixed)?;
        let out_type = self.output_type()?;
        let mut b = GraphBuilder::new(names, self.opset);
        for &c in &self.plan.constant_nodes {
            b.add_node(self.original_node(c).clone());
        }
        let level_outputs = vec![out_name.clone(), EXIT_INDEX.to_string()];
        let scope = NestingLevel {
            compact,
            rename: HashMap::new(),
        };
        self.build_level(&mut b, 1, &level_outputs, None, options, &out_type, &scope)?;

        let (knob_inits, knob_inputs) = self.knob_initializers(options);
        let mut model = self.proto.clone();
        let mut patch = ModelPatch::new();
        // The main graph is rebuilt: stage 1 and If_1 (which holds the rest).
        patch.main.remove_all_nodes(self.main().node.len());
        patch.main.add_initializers(knob_inits);
        patch.main.add_initializers(b.take_initializers());
        patch.main.append_nodes(b.into_nodes());
        patch.main.add_inputs(knob_inputs);
        patch.main.add_outputs([value_info(EXIT_INDEX, self.exit_index_type())]);
        patch.apply(&mut model)?;
        Ok(model)
    }

    /// Adds stage k's nodes, head k, decision k and `If_k` (whose outputs are
    /// `outputs`: the prediction and the exit index) to `b`.
    #[allow(clippy::too_many_arguments)]
    fn build_level(
        &self,
        b: &mut GraphBuilder,
        k: usize,
        outputs: &[String],
        zeros: Option<&str>,
        options: &ExitOptions,
        out_type: &TypeProto,
        scope: &NestingLevel,
    ) -> Result<(), ExitError> {
        for &n in &self.plan.stages[k - 1] {
            b.add_node(scope.node(self.original_node(n)));
        }
        let mut point = self.plan.exits[k - 1].clone();
        point.tensor = scope.name(&point.tensor).to_string();
        let channels_last = self.hand_over_channels_last(b, k, &mut point);
        let tag_start = b.node_count();
        let z = build_head(
            b,
            k,
            &point,
            self.classifier.classes,
            &self.weights[k - 1],
            self.quantize_heads,
        );
        let decision = self.decision(b, k, &z, options);
        b.tag_from(tag_start, &crate::fuse::exit_tag(k));
        // An int64 zero per row, from exit 1's logits, to build exit indices
        // (compact mode passes down the zeros of the rows that go on).
        let zeros = match zeros {
            Some(z) => z.to_string(),
            None => {
                let pred = b.op(
                    "ArgMax",
                    "eexc_rows",
                    &[&z],
                    vec![attr_int("axis", 1), attr_int("keepdims", 0)],
                );
                let zero = b.const_i64("eexc_zero", &[], &[0]);
                b.op("Mul", "eexc_row_zeros", &[&pred, &zero], vec![])
            }
        };
        // Below the first level a compacted batch has fewer rows than the
        // model's batch: its branch outputs get an unnamed row dimension.
        let row_dim_known = k == 1 || scope.compact.is_none();

        let mut then_b = b.branch();
        let then_out = then_b.fresh(&format!("eexc_exit{k}_prediction"));
        self.apply_tail(&mut then_b, k, &z, &then_out);
        let then_idx = self.exit_index(&mut then_b, &zeros, k);
        let then_g = self.branch_graph(
            &branch_names(k).0,
            then_b,
            &[&then_out, &then_idx],
            out_type,
            row_dim_known,
        );

        let mut else_b = b.branch();
        let else_outputs = match scope.compact {
            None => {
                let mut inner = NestingLevel {
                    compact: None,
                    rename: scope.rename.clone(),
                };
                if let Some(t) = &channels_last {
                    self.back_to_channels_first(&mut else_b, k, t, &mut inner);
                }
                self.anchor_layout(&mut else_b, k, &mut inner);
                self.continue_with(&mut else_b, k, &zeros, options, out_type, &inner)?
            }
            Some(crossing) => {
                // Only the rows that may not exit go on: every tensor the
                // rest of the network reads keeps those rows, in order.
                let base = format!("eexc_exit{k}");
                let keep = else_b.op("Not", &continue_mask_name(k), &[&decision.row_ok], vec![]);
                let found = else_b.op("NonZero", &format!("{base}_continue_at"), &[&keep], vec![]);
                let rows = else_b.op(
                    "Transpose",
                    &format!("{base}_continue_rows"),
                    &[&found],
                    vec![attr_ints("perm", &[1, 0])],
                );
                let mut inner = NestingLevel {
                    compact: scope.compact,
                    rename: scope.rename.clone(),
                };
                let exit_tensor = &self.plan.exits[k - 1].tensor;
                for name in &crossing[k - 1].compress {
                    let current = match &channels_last {
                        Some(t) if name == exit_tensor => t.clone(),
                        _ => scope.name(name).to_string(),
                    };
                    let kept = else_b.op(
                        "Compress",
                        &format!("{name}__rows{k}"),
                        &[&current, &keep],
                        vec![attr_int("axis", 0)],
                    );
                    inner.rename.insert(name.clone(), kept.clone());
                    if channels_last.is_some() && name == exit_tensor {
                        self.back_to_channels_first(&mut else_b, k, &kept, &mut inner);
                    }
                }
                for &n in &crossing[k - 1].recompute {
                    let mut node = inner.node(self.original_node(n));
                    for o in node.output.iter_mut().filter(|o| !o.is_empty()) {
                        let fresh = else_b.fresh(&format!("{o}__rows{k}"));
                        inner.rename.insert(o.clone(), fresh.clone());
                        *o = fresh;
                    }
                    node.set_name(else_b.fresh(&format!("{}__rows{k}", node.name())));
                    else_b.add_node(node);
                }
                self.anchor_layout(&mut else_b, k, &mut inner);
                let kept_zeros = else_b.op(
                    "Compress",
                    &format!("eexc_row_zeros_{k}"),
                    &[&zeros, &keep],
                    vec![attr_int("axis", 0)],
                );
                let [deeper_out, deeper_idx] =
                    self.continue_with(&mut else_b, k, &kept_zeros, options, out_type, &inner)?;
                // Exit k's answer for every row, overwritten where a row went on.
                let here_out = else_b.fresh(&format!("{base}_all_rows_prediction"));
                self.apply_tail(&mut else_b, k, &z, &here_out);
                let here_idx = self.exit_index(&mut else_b, &zeros, k);
                let merged_out = else_b.op(
                    "ScatterND",
                    &format!("{base}_merged_prediction"),
                    &[&here_out, &rows, &deeper_out],
                    vec![],
                );
                let merged_idx = else_b.op(
                    "ScatterND",
                    &format!("{base}_merged_index"),
                    &[&here_idx, &rows, &deeper_idx],
                    vec![],
                );
                [merged_out, merged_idx]
            }
        };
        let refs: Vec<&str> = else_outputs.iter().map(String::as_str).collect();
        let else_g = self.branch_graph(&branch_names(k).1, else_b, &refs, out_type, row_dim_known);

        let compact = scope.compact.is_some();
        b.push(
            "If",
            &[&decision.all_ok],
            outputs,
            vec![attr_graph("then_branch", then_g), attr_graph("else_branch", else_g)],
        );
        // What Netron shows beside the node: what the branches do.
        let otherwise = if compact {
            "the rows that are not go on through the rest of the network and the confident ones leave here"
        } else {
            "the rest of the network runs"
        };
        if let Some(n) = b.last_node_mut() {
            n.set_doc_string(format!(
                "eexc exit {k} at '{}': every row confident, {} (then); else {otherwise} (else)",
                self.plan.exits[k - 1].tensor,
                if compact {
                    "all leave here"
                } else {
                    "the batch leaves here"
                }
            ));
        }
        Ok(())
    }

    /// What follows exit k: the next level, or the rest of the network.
    /// Returns the prediction and exit-index tensors.
    fn continue_with(
        &self,
        b: &mut GraphBuilder,
        k: usize,
        zeros: &str,
        options: &ExitOptions,
        out_type: &TypeProto,
        scope: &NestingLevel,
    ) -> Result<[String; 2], ExitError> {
        if k < self.plan.exits.len() {
            let names = [
                b.fresh(&format!("eexc_after_exit{k}_prediction")),
                b.fresh(&format!("eexc_after_exit{k}_index")),
            ];
            self.build_level(b, k + 1, &names, Some(zeros), options, out_type, scope)?;
            Ok(names)
        } else {
            Ok(self.final_stage(b, zeros, self.plan.exits.len() + 1, scope))
        }
    }

    /// The rest of the original network, with the prediction renamed (its
    /// name belongs to the main graph's `If` output).
    fn final_stage(&self, b: &mut GraphBuilder, zeros: &str, index: usize, scope: &NestingLevel) -> [String; 2] {
        let out_name = &self.graph.value(self.classifier.output).name;
        let renamed = b.fresh(&format!("{out_name}__final"));
        for &n in self.plan.stages.last().map(Vec::as_slice).unwrap_or_default() {
            let mut node = scope.node(self.original_node(n));
            for name in node.output.iter_mut() {
                if name == out_name {
                    *name = renamed.clone();
                }
            }
            b.add_node(node);
        }
        let idx = self.exit_index(b, zeros, index);
        [renamed, idx]
    }

    /// The layout anchor after exit k, if one pays: the exit tensor's name and
    /// channel count. See [`EmitContext::anchor_layout`].
    pub(super) fn layout_anchor(&self, k: usize) -> Option<(String, i64)> {
        let g = self.graph;
        let point = self.plan.exits.get(k - 1)?;
        let shape = point.ty.shape.as_ref()?;
        let channels = match shape.as_slice() {
            [_, Dim::Known(c), _, _] if point.ty.elem == crate::onnx::dtype::ElemType::FLOAT => *c,
            _ => return None,
        };
        // ONNX Runtime's NCHWc blocks are 8 or 16 channels wide.
        if channels % 8 != 0 {
            return None;
        }
        let readers: Vec<&crate::ir::Node> = self.plan.stages[k..]
            .iter()
            .flatten()
            .map(|&n| g.node(n))
            .filter(|n| {
                n.inputs
                    .iter()
                    .flatten()
                    .chain(&n.implicit_inputs)
                    .any(|&v| v == point.value)
            })
            .collect();
        let is_conv = |n: &&crate::ir::Node| n.op_type == "Conv" && n.is_onnx_domain();
        (readers.iter().any(is_conv) && !readers.iter().all(is_conv)).then(|| (point.tensor.clone(), channels))
    }

    /// Whether exit k's tensor crosses into the branch channels-last: a 4-D
    /// quantized tensor with one scale. ONNX Runtime runs a QDQ model's
    /// int8 Convs channels-last (NHWC) and cancels the transposes between
    /// them; a tensor that crosses an `If` boundary in ONNX's NCHW costs
    /// a transpose on each side, and a residual Add that reads it keeps
    /// its whole block in NCHW with float transposes around it (measured
    /// on a QDQ ResNet-50: 20 extra transposes, 0.86× the original's speed
    /// when nothing exits). Handing the tensor over already channels-last
    /// lets those transposes cancel (docs/quantized.md).
    pub(super) fn channels_last(&self, k: usize) -> bool {
        let point = &self.plan.exits[k - 1];
        // Only the global pool reads the map channels-last.
        point.ty.rank() == Some(4)
            && point.head == super::plan::HeadKind::GapLinear
            && point.dequantize.as_ref().is_some_and(|d| d.per_tensor)
    }

    /// Where [`EmitContext::channels_last`] holds: the exit tensor transposed to
    /// N×H×W×C for the head (and the branch); returns its name.
    fn hand_over_channels_last(&self, b: &mut GraphBuilder, k: usize, point: &mut ExitPoint) -> Option<String> {
        self.channels_last(k).then(|| {
            let t = b.op(
                "Transpose",
                &format!("{}__channels_last", self.plan.exits[k - 1].tensor),
                &[&point.tensor],
                vec![attr_ints("perm", &[0, 2, 3, 1])],
            );
            point.tensor = t.clone();
            point.channels_last = true;
            t
        })
    }

    /// Where the branch after exit k starts: the channels-last exit tensor
    /// `t` back in ONNX's layout, read in place of the exit tensor.
    fn back_to_channels_first(&self, b: &mut GraphBuilder, k: usize, t: &str, scope: &mut NestingLevel) {
        let tensor = self.plan.exits[k - 1].tensor.clone();
        let back = b.op(
            "Transpose",
            &format!("{tensor}__channels_first"),
            &[t],
            vec![attr_ints("perm", &[0, 3, 1, 2])],
        );
        scope.rename.insert(tensor, back);
    }

    /// A layout anchor for ONNX Runtime: an identity depthwise 1×1 Conv on
    /// the exit tensor where the rest of the network starts, read in its
    /// place. The branch reads that tensor from the outer graph in NCHW,
    /// and ONNX Runtime's NCHWc layout transformer converts an Add (a
    /// residual) only when all its inputs come from NCHWc nodes: without an
    /// NCHWc source for the residual, the first block's Add and every block
    /// after it in the stage fall back to NCHW with reorders around them
    /// (measured: ResNet-50 0.965× → 0.98× the original's speed when
    /// nothing exits; docs/runtime-cost.md). The anchor computes x·1 (exact), costs one pass over
    /// the tensor, and needs the reorder the branch's first Conv makes anyway.
    fn anchor_layout(&self, b: &mut GraphBuilder, k: usize, scope: &mut NestingLevel) {
        let Some((tensor, channels)) = self.layout_anchor(k) else {
            return;
        };
        let ones = vec![1.0f32; channels as usize];
        let w = b.const_f32(&format!("{tensor}__layout_anchor_w"), &[channels, 1, 1, 1], &ones);
        let current = scope.name(&tensor).to_string();
        let anchored = b.op(
            "Conv",
            &format!("{tensor}__layout_anchor"),
            &[&current, &w],
            vec![attr_int("group", channels), attr_ints("kernel_shape", &[1, 1])],
        );
        scope.rename.insert(tensor, anchored);
    }

    pub(super) fn exit_index(&self, b: &mut GraphBuilder, zeros: &str, index: usize) -> String {
        let k = b.const_i64(&format!("eexc_index_{index}"), &[], &[index as i64]);
        b.op("Add", &format!("eexc_exit_index_{index}"), &[zeros, &k], vec![])
    }

    fn branch_graph(
        &self,
        name: &str,
        b: GraphBuilder,
        outputs: &[&str],
        out_type: &TypeProto,
        row_dim_known: bool,
    ) -> GraphProto {
        let mut g = GraphProto::new();
        g.set_name(name.into());
        g.node = b.into_nodes();
        let (mut out_ty, mut idx_ty) = (out_type.clone(), self.exit_index_type());
        if !row_dim_known {
            for ty in [&mut out_ty, &mut idx_ty] {
                forget_row_dim(ty);
            }
        }
        g.output.push(value_info(outputs[0], out_ty));
        g.output.push(value_info(outputs[1], idx_ty));
        g
    }

    /// Compact mode: per exit k, the non-constant tensors made at or before
    /// exit k that the rest of the network (or a later head) reads. Each must
    /// carry the batch on axis 0, or it could not be split by row.
    fn crossing_values(&self) -> Result<Vec<Crossing>, ExitError> {
        let g = self.graph;
        let batch = self.batch_dim();
        // A symbolic input batch with a fixed logits batch means stale
        // declared shapes (value_info from a batch-1 export).
        if let Some(input) = g.inputs.iter().find(|&&v| !g.value(v).is_constant)
            && let Some(first) = g
                .value(*input)
                .ty
                .as_ref()
                .and_then(|t| t.shape.as_ref())
                .and_then(|s| s.first())
            && *first != batch
        {
            return Err(ExitError::BadOption(format!(
                "--mode compact: input '{}' has batch {first} but the logits '{}' have batch {batch}; \
                 the model's declared shapes (value_info) disagree with its inputs",
                g.value(*input).name,
                g.value(self.classifier.logits).name
            )));
        }
        match &batch {
            Dim::Sym(_) | Dim::Known(1) => {}
            other => {
                return Err(ExitError::BadOption(format!(
                    "--mode compact needs a symbolic batch dimension (or batch 1); the logits '{}' have batch {}",
                    g.value(self.classifier.logits).name,
                    match other {
                        Dim::Known(v) => v.to_string(),
                        _ => "unknown".into(),
                    }
                )));
            }
        }
        let mut available: HashSet<ValueId> = g.inputs.iter().copied().filter(|&v| !g.value(v).is_constant).collect();
        let k_count = self.plan.exits.len();
        let mut all = Vec::with_capacity(k_count);
        for k in 0..k_count {
            for &n in &self.plan.stages[k] {
                available.extend(g.node(n).outputs.iter().flatten().copied());
            }
            let mut read_later: Vec<ValueId> = self.plan.stages[k + 1..]
                .iter()
                .flatten()
                .flat_map(|&n| {
                    let node = g.node(n);
                    node.inputs.iter().flatten().chain(&node.implicit_inputs).copied()
                })
                .chain(self.plan.exits[k + 1..].iter().map(|e| e.value))
                .filter(|v| available.contains(v) && !g.value(*v).is_constant)
                .collect();
            read_later.sort();
            read_later.dedup();
            let mut crossing = Crossing::default();
            let mut sources = Vec::new();
            for v in read_later {
                let value = g.value(v);
                if self.leads_with_batch(v, &batch) {
                    crossing.compress.push(value.name.clone());
                    continue;
                }
                // A shape vector (Shape → Gather → Concat ...) has no rows to
                // compact: it is recomputed from the compacted tensors.
                match self.shape_chain(v) {
                    Some((nodes, from)) if from.iter().all(|&s| self.leads_with_batch(s, &batch)) => {
                        crossing.recompute.extend(nodes);
                        sources.extend(from);
                    }
                    _ => {
                        return Err(ExitError::NotRowwise {
                            tensor: value.name.clone(),
                            exit: k + 1,
                            shape: value.ty.as_ref().map_or_else(|| "unknown".into(), |t| t.to_string()),
                        });
                    }
                }
            }
            for s in sources {
                let name = &g.value(s).name;
                if !crossing.compress.contains(name) {
                    crossing.compress.push(name.clone());
                }
            }
            let order: HashMap<NodeId, usize> = g.topo.iter().enumerate().map(|(i, &n)| (n, i)).collect();
            crossing.recompute.sort_by_key(|n| order[n]);
            crossing.recompute.dedup();
            all.push(crossing);
        }
        Ok(all)
    }

    fn leads_with_batch(&self, v: ValueId, batch: &Dim) -> bool {
        let value = self.graph.value(v);
        value.ty.as_ref().and_then(|t| t.shape.as_ref()).and_then(|s| s.first()) == Some(batch)
    }

    /// If `v` is computed only from constants and `Shape`/`Size` of
    /// non-constant tensors, the nodes computing it and those tensors.
    fn shape_chain(&self, v: ValueId) -> Option<(Vec<NodeId>, Vec<ValueId>)> {
        let g = self.graph;
        let mut nodes = Vec::new();
        let mut sources = Vec::new();
        let mut stack = vec![v];
        let mut seen = HashSet::new();
        while let Some(x) = stack.pop() {
            if !seen.insert(x) || g.value(x).is_constant {
                continue;
            }
            let p = g.producer(x)?;
            let node = g.node(p);
            if !node.subgraphs.is_empty() {
                return None;
            }
            nodes.push(p);
            if matches!(node.op_type.as_str(), "Shape" | "Size") && node.is_onnx_domain() {
                sources.push(node.inputs.first().copied().flatten()?);
            } else {
                stack.extend(node.inputs.iter().flatten().copied());
            }
        }
        nodes.sort();
        nodes.dedup();
        Some((nodes, sources))
    }
}

/// What compact mode does at one exit with the tensors the rest reads.
#[derive(Debug, Default, Clone)]
pub(super) struct Crossing {
    /// Tensors with the batch on axis 0: keep the rows that go on.
    compress: Vec<String>,
    /// Nodes computing shape vectors from such tensors, run again on the
    /// compacted ones (topological order).
    recompute: Vec<NodeId>,
}

/// Names visible at one nesting level: in compact mode, tensors that were
/// compacted on the way down are read under their compacted names.
struct NestingLevel<'c> {
    compact: Option<&'c [Crossing]>,
    rename: HashMap<String, String>,
}

impl NestingLevel<'_> {
    fn name<'a>(&'a self, original: &'a str) -> &'a str {
        self.rename.get(original).map_or(original, String::as_str)
    }

    /// A copy of an original node reading the current names, also inside
    /// its subgraphs (which read outer tensors by name).
    fn node(&self, original: &NodeProto) -> NodeProto {
        let mut n = original.clone();
        if !self.rename.is_empty() {
            rename_inputs(&mut n, &self.rename);
        }
        n
    }
}

fn rename_inputs(node: &mut NodeProto, rename: &HashMap<String, String>) {
    for name in node.input.iter_mut() {
        if let Some(r) = rename.get(name.as_str()) {
            *name = r.clone();
        }
    }
    for attr in node.attribute.iter_mut() {
        let graphs = attr.g.as_mut().into_iter().chain(attr.graphs.iter_mut());
        for g in graphs {
            for inner in g.node.iter_mut() {
                rename_inputs(inner, rename);
            }
            for out in g.output.iter_mut() {
                if let Some(r) = rename.get(out.name()) {
                    out.set_name(r.clone());
                }
            }
        }
    }
}

/// Drops the size of axis 0 from a tensor type (compacted rows).
fn forget_row_dim(ty: &mut TypeProto) {
    if let Some(type_proto::Value::TensorType(t)) = ty.value.as_mut()
        && let Some(shape) = t.shape.as_mut()
        && let Some(first) = shape.dim.first_mut()
    {
        *first = tensor_shape_proto::Dimension::new();
    }
}
