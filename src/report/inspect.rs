//! `eexc inspect`: everything a user wants to know about a classifier before
//! adding exits. JSON schema: docs/inspect-json.md (`schema` field below).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::table::{bytes, render, si};
use crate::analysis::cost::{Cost, CostStatus, graph_cost};
use crate::analysis::cuts::{NarrowCut, narrow_cuts};
use crate::analysis::shapes::ShapeReport;
use crate::error::Error;
use crate::ir::{Graph, Model, TensorType};
use crate::onnx::load_model;

/// Version tag of the JSON form; bump on any incompatible change.
pub const SCHEMA: &str = "eexc.inspect/1";

#[derive(Debug, Serialize)]
pub struct InspectReport {
    pub schema: &'static str,
    pub model: ModelInfo,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    /// Op type → node count, subgraphs included.
    pub ops: BTreeMap<String, usize>,
    pub totals: Totals,
    /// The named dimensions (other than the batch) the costs are counted
    /// at: from `--dim` or the model's declarations.
    pub dims: BTreeMap<String, u64>,
    pub nodes: Vec<NodeRow>,
    /// Op type → nodes whose cost is unknown (no rule or unknown shape).
    pub uncosted_ops: BTreeMap<String, usize>,
    pub shape_issues: ShapeIssues,
    pub exit_candidates: Vec<NarrowCut>,
}

#[derive(Debug, Serialize)]
pub struct ModelInfo {
    pub path: String,
    pub ir_version: i64,
    pub opsets: BTreeMap<String, i64>,
    pub producer: String,
    pub file_bytes: u64,
    pub external_data_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Io {
    pub name: String,
    pub ty: Option<TensorType>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub nodes: usize,
    /// Distinct weight tensors' elements.
    pub params: u64,
    pub macs: u64,
    pub flops: u64,
    pub weight_bytes_read: u64,
    pub activation_bytes_written: u64,
    /// Nodes computed from constants only (no per-sample cost).
    pub constant_nodes: usize,
}

#[derive(Debug, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub op_type: String,
    pub output: Option<TensorType>,
    pub status: CostStatus,
    #[serde(flatten)]
    pub cost: Cost,
}

#[derive(Debug, Serialize)]
pub struct ShapeIssues {
    pub unsupported_ops: Vec<String>,
    pub invalid_nodes: Vec<String>,
    /// "value: declared T, inferred U".
    pub declared_type_mismatches: Vec<String>,
    pub values_without_shape: usize,
}

/// Loads, analyses and reports on the model at `path`.
/// `dims`: values of the model's named dimensions (`--dim`).
pub fn inspect(path: &Path, dims: &[(String, u64)]) -> Result<InspectReport, Error> {
    let loaded = load_model(path)?;
    let mut model = Model::from_proto(&loaded.proto).map_err(|source| Error::Ir {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let (shapes, dims) = crate::analysis::infer_for_costs(&mut model, dims).map_err(|source| Error::Dims {
        path: path.to_path_buf(),
        source,
    })?;
    let graph = &model.graph;
    let cost = graph_cost(graph, &dims);
    let cuts = narrow_cuts(graph, &cost);

    let io = |ids: &[crate::ir::ValueId]| -> Vec<Io> {
        ids.iter()
            .map(|&v| Io {
                name: graph.value(v).name.clone(),
                ty: graph.value(v).ty.clone(),
            })
            .collect()
    };
    let mut ops = BTreeMap::new();
    count_ops(graph, &mut ops);
    let nodes: Vec<NodeRow> = graph
        .topo
        .iter()
        .filter(|&&id| cost.node(id).status != CostStatus::Constant)
        .map(|&id| {
            let n = graph.node(id);
            NodeRow {
                name: if n.name.is_empty() {
                    format!("#{}", id.0)
                } else {
                    n.name.clone()
                },
                op_type: n.op_type.clone(),
                output: n
                    .outputs
                    .iter()
                    .flatten()
                    .next()
                    .and_then(|&o| graph.value(o).ty.clone()),
                status: cost.node(id).status,
                cost: cost.node(id).cost,
            }
        })
        .collect();
    let constant_nodes = cost.nodes.iter().filter(|n| n.status == CostStatus::Constant).count();
    Ok(InspectReport {
        schema: SCHEMA,
        model: ModelInfo {
            path: path.display().to_string(),
            ir_version: model.ir_version,
            opsets: model.opsets.clone(),
            producer: format!("{} {}", loaded.proto.producer_name(), loaded.proto.producer_version())
                .trim()
                .to_string(),
            file_bytes: loaded.file_bytes,
            external_data_bytes: loaded.external_bytes,
        },
        inputs: io(&graph.inputs),
        outputs: io(&graph.outputs),
        ops,
        totals: Totals {
            nodes: graph.nodes.len(),
            params: cost.unique_params,
            macs: cost.total.macs,
            flops: cost.total.flops,
            weight_bytes_read: cost.total.weight_bytes,
            activation_bytes_written: cost.total.activation_bytes,
            constant_nodes,
        },
        dims: dims.bound().map(|(k, v)| (k.to_string(), v)).collect(),
        nodes,
        uncosted_ops: cost.uncosted.clone(),
        shape_issues: shape_issues(&shapes),
        exit_candidates: cuts,
    })
}

fn count_ops(graph: &Graph, ops: &mut BTreeMap<String, usize>) {
    for n in &graph.nodes {
        let key = if n.is_onnx_domain() {
            n.op_type.clone()
        } else {
            format!("{}::{}", n.domain, n.op_type)
        };
        *ops.entry(key).or_insert(0) += 1;
        for s in &n.subgraphs {
            count_ops(&s.graph, ops);
        }
    }
}

fn shape_issues(r: &ShapeReport) -> ShapeIssues {
    ShapeIssues {
        unsupported_ops: r.unsupported_ops.iter().cloned().collect(),
        invalid_nodes: r.invalid.clone(),
        declared_type_mismatches: r
            .mismatches
            .iter()
            .map(|m| format!("{}: declared {}, inferred {}", m.value, m.declared, m.inferred))
            .collect(),
        values_without_shape: r.values_without_shape,
    }
}

fn ty_text(t: &Option<TensorType>) -> String {
    t.as_ref().map_or_else(|| "?".to_string(), TensorType::to_string)
}

impl InspectReport {
    /// The human-readable form printed by `eexc inspect`.
    pub fn to_text(&self) -> String {
        let m = &self.model;
        let opsets: Vec<String> = m
            .opsets
            .iter()
            .map(|(d, v)| format!("{}={v}", if d.is_empty() { "ai.onnx" } else { d }))
            .collect();
        let mut out = format!(
            "model      {}\nformat     IR {}, opsets {}, producer '{}'\nsize       {} file, {} external data\n\n",
            m.path,
            m.ir_version,
            opsets.join(" "),
            m.producer,
            bytes(m.file_bytes),
            bytes(m.external_data_bytes)
        );
        for (label, list) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            let rows: Vec<Vec<String>> = list.iter().map(|io| vec![io.name.clone(), ty_text(&io.ty)]).collect();
            out += &render(&[label, "type"], &rows, &[]);
            out += "\n";
        }
        let t = &self.totals;
        let at: String = self.dims.iter().map(|(k, v)| format!(", {k}={v}")).collect();
        out += &format!(
            "totals (per sample{at})\n  nodes        {} ({} constant, computed once at load)\n  parameters   {}\n  MACs         {} ({})\n  FLOPs        {} ({})\n  weights read {}\n  activations  {}\n\n",
            t.nodes,
            t.constant_nodes,
            si(t.params),
            si(t.macs),
            t.macs,
            si(t.flops),
            t.flops,
            bytes(t.weight_bytes_read),
            bytes(t.activation_bytes_written)
        );
        let rows: Vec<Vec<String>> = self.ops.iter().map(|(op, n)| vec![op.clone(), n.to_string()]).collect();
        out += &render(&["op", "count"], &rows, &[1]);
        out += "\n";
        if !self.uncosted_ops.is_empty() || !self.shape_issues.unsupported_ops.is_empty() {
            let list: Vec<String> = self.uncosted_ops.iter().map(|(op, n)| format!("{op} ×{n}")).collect();
            out += &format!("NOT COSTED (totals exclude these): {}\n", list.join(", "));
            out += &format!("no shape rule: {}\n\n", self.shape_issues.unsupported_ops.join(", "));
        }
        for issue in self
            .shape_issues
            .invalid_nodes
            .iter()
            .chain(&self.shape_issues.declared_type_mismatches)
        {
            out += &format!("shape issue: {issue}\n");
        }
        let rows: Vec<Vec<String>> = self
            .nodes
            .iter()
            .map(|n| {
                let c = &n.cost;
                let mark = if n.status == CostStatus::Counted {
                    ""
                } else {
                    " (not costed)"
                };
                vec![
                    n.name.clone(),
                    format!("{}{mark}", n.op_type),
                    ty_text(&n.output),
                    c.macs.to_string(),
                    c.flops.to_string(),
                    c.params.to_string(),
                    c.weight_bytes.to_string(),
                    c.activation_bytes.to_string(),
                ]
            })
            .collect();
        out += &render(
            &["node", "op", "output", "MACs", "FLOPs", "params", "weight B", "act B"],
            &rows,
            &[3, 4, 5, 6, 7],
        );
        out += "\nexit candidates (narrow cuts)\n";
        let rows: Vec<Vec<String>> = self
            .exit_candidates
            .iter()
            .map(|c| {
                vec![
                    c.tensor.clone(),
                    c.op_type.clone(),
                    ty_text(&c.shape),
                    c.bytes.map_or_else(|| "?".into(), bytes),
                    format!("{:.1}%", 100.0 * c.flop_share),
                ]
            })
            .collect();
        out += &render(&["tensor", "after", "shape", "size", "FLOPs before"], &rows, &[3, 4]);
        out
    }
}
