"""Write synthetic ONNX models that exercise what a lossless ONNX loader must keep.

Usage:
    python tests/python/make_synthetic_models.py OUTDIR

Files (all deterministic: fixed seeds, no uuids, no timestamps):

  all_dtypes.onnx     one initializer per TensorProto data type the installed onnx
                      defines, each stored both in raw_data and in its typed field
                      (float_data, int32_data, int64_data, string_data, double_data,
                      uint64_data); special values (NaN, -0.0, inf, int64/uint64
                      extremes), 0-D and empty tensors, sparse initializers (linear
                      and COO indices), doc strings and metadata_props on model,
                      graph, node, value_info and tensor, value_info with dim_param, unknown dims,
                      unknown rank, denotations, sequence and optional types, a
                      quantization annotation. Runs in onnxruntime.
  all_attrs.onnx      every AttributeProto kind (on a custom-domain node, and on the
                      standard ops that carry them: Constant, If), empty lists, a
                      non-UTF-8 STRING, attribute doc strings, and a local function
                      with attribute parameters (defaults and ref_attr_name). Passes
                      the checker; not runnable (custom op).
  subgraphs.onnx      runnable: Loop whose body holds an If, both capturing outer-scope
                      values (two levels up), a Scan, a local function (custom domain,
                      with an attribute reference), an ai.onnx.ml op, several opset
                      domains, model metadata, producer fields, doc strings and
                      training_info (initialization + algorithm graphs with bindings).
  newer_fields.onnx   runnable; carries every field of the installed onnx.proto that
                      the IR-10 schema (onnx 1.17.0's onnx-ml.proto) lacks, found by
                      diffing the two files:
        ModelProto.configuration (26): DeviceConfigurationProto {name, num_devices,
            device}, two entries                                            [IR 11]
        NodeProto.device_configurations (10): NodeDeviceConfigurationProto
            {configuration_id, sharding_spec, pipeline_stage}, on main-graph nodes
            (two on one node), on a node in an If branch and on a node in a
            FunctionProto body                                              [IR 11]
        ShardingSpecProto {tensor_name, device, index_to_device_group_map,
            sharded_dim}; IntIntListEntryProto {key, value}; ShardedDimProto
            {axis, simple_sharding}; SimpleShardedDimProto {dim_value | dim_param,
            num_shards}                                                     [IR 11]
        TensorProto.DataType FLOAT4E2M1=23 [IR 11], FLOAT8E8M0=24 [IR 12], UINT2=25,
            INT2=26 [IR 13], FLOAT6E2M3=27, FLOAT6E3M2=28 [IR 14]: initializers in
            raw_data and int32_data, and value_info elem_types of those types.
      An IR-10 reader sees the first two as unknown fields (6 occurrences); the data
      types are only new values of an int32 field. (ValueInfoProto/GraphProto/
      FunctionProto value_info and metadata_props already exist in IR 10.)
  future_fields.onnx  runnable; carries protobuf fields unknown even to the installed
                      onnx (field numbers >= 1000, all four wire types) on many
                      message kinds, nested inside subgraphs and functions too.
  external/external.onnx
                      runnable; large initializers (and a Constant's tensor) in one
                      external file under a subfolder (data/weights.bin), one tensor in
                      a separate file (data/extra/w2.bin) at a non-zero offset with
                      length and checksum keys; small tensors stay inline.

IR versions: models that only use IR-10 features are written as IR 10 / opset 21 so an
IR-10 reader must see no unknown field in them; all_dtypes and newer_fields use the
installed onnx's IR version because they use newer data types / fields.
"""

import argparse
import hashlib
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 21  # the opset of IR 10 (onnx 1.16/1.17); ORT supports it
IR_STABLE = 10
IR_NEWEST = onnx.IR_VERSION
ML_OPSET = 3


FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
BOOL = TensorProto.BOOL


def meta(**kv):
    """StringStringEntryProto list, in the given order."""
    return [onnx.StringStringEntryProto(key=k, value=v) for k, v in kv.items()]


def set_meta(msg, **kv):
    msg.metadata_props.extend(meta(**kv))
    return msg


def opsets(*extra):
    return [helper.make_opsetid("", OPSET), *(helper.make_opsetid(d, v) for d, v in extra)]


def sample_values(dt):
    """Three values representable in data type `dt`, as a numpy array of shape (1, 3).

    Three is odd on purpose: 4-bit, 2-bit and 6-bit types then need padding bits."""
    name = TensorProto.DataType.Name(dt)
    npdt = helper.tensor_dtype_to_np_dtype(dt)
    if dt == TensorProto.STRING:
        vals = np.array([b"a", b"", "\u00fc\u4e2d".encode()], dtype=object)
    elif dt in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        vals = np.array([1 + 2j, -0.5j, 3], dtype=npdt)
    elif dt == TensorProto.BOOL:
        vals = np.array([True, False, True])
    elif name == "FLOAT8E8M0":  # unsigned powers of two only
        vals = np.array([0.5, 1.0, 2.0]).astype(npdt)
    elif name.startswith("UINT"):
        vals = np.array([3, 0, 1]).astype(npdt)
    elif "INT" in name:  # signed ints down to INT2's range [-2, 1]
        vals = np.array([1, 0, -2]).astype(npdt)
    else:
        vals = np.array([0.5, -1.0, 2.0]).astype(npdt)
    return vals.reshape(1, 3)


def dtype_initializers(dtypes):
    """For each data type: `<NAME>_typed` (typed field) and `<NAME>_raw` (raw_data)."""
    out = []
    for dt in dtypes:
        name = TensorProto.DataType.Name(dt)
        vals = sample_values(dt)
        typed = helper.make_tensor(f"{name}_typed", dt, vals.shape, vals)
        assert not typed.HasField("raw_data"), name
        out.append(typed)
        if dt != TensorProto.STRING:  # STRING has no raw_data form
            raw = numpy_helper.from_array(vals, f"{name}_raw")
            assert raw.HasField("raw_data") and raw.data_type == dt, name
            out.append(raw)
    return out


def all_data_types():
    return [v for k, v in TensorProto.DataType.items() if k != "UNDEFINED"]


def tensor_vi(name, elem, shape, doc=None, denotation=None):
    vi = helper.make_tensor_value_info(name, elem, shape, doc_string=doc or "")
    if denotation:
        vi.type.denotation = denotation
    return vi


# --------------------------------------------------------------------------- all_dtypes
def make_all_dtypes():
    inits = dtype_initializers(all_data_types())
    # Bit patterns a float round trip through text or f64 would lose.
    inits.append(
        helper.make_tensor(
            "special_f32_typed", FLOAT, [5], [float("nan"), -0.0, float("inf"), -float("inf"), 1e-45]
        )
    )
    inits.append(
        numpy_helper.from_array(
            np.array([np.nan, -0.0, np.inf, 1e-45], dtype=np.float32), "special_f32_raw"
        )
    )
    inits.append(helper.make_tensor("int64_extremes", INT64, [2], [-(2**63), 2**63 - 1]))
    inits.append(helper.make_tensor("uint64_max", TensorProto.UINT64, [1], [2**64 - 1]))
    inits.append(helper.make_tensor("scalar_f32", FLOAT, [], [3.25]))  # 0-D
    inits.append(helper.make_tensor("empty_i64", INT64, [0], []))  # no data field at all
    inits.append(numpy_helper.from_array(np.zeros((2, 0, 3), np.float32), "empty_raw_f32"))
    for t in inits:
        if t.name == "FLOAT_raw":
            t.doc_string = "raw float initializer"
            set_meta(t, origin="synthetic", **{"empty-value": ""})
        if t.name == "INT64_typed":
            t.doc_string = "typed int64 initializer"

    # Sparse initializers: 1-D linearised indices and [nnz, rank] coordinate indices.
    # Unused: shape inference types them sparse_tensor(...), which no standard op takes.
    sp_linear = helper.make_sparse_tensor(
        helper.make_tensor("sp_linear", FLOAT, [3], [1.0, 2.0, 3.0]),
        helper.make_tensor("sp_linear_idx", INT64, [3], [0, 4, 5]),
        [2, 3],
    )
    sp_coo = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([7, -8], np.int32), "sp_coo"),
        numpy_helper.from_array(np.array([[0, 1], [2, 2]], np.int64), "sp_coo_idx"),
        [3, 3],
    )

    x = tensor_vi("X", FLOAT, ["N", 3], doc="batch input", denotation="TENSOR")
    x.type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    set_meta(x, role="input")
    unk_dims = helper.make_tensor_value_info("unk_dims", FLOAT, [None, None])  # rank 2, no dims
    nodes = [
        helper.make_node("Add", ["X", "FLOAT_typed"], ["sum"], name="add", doc_string="X + c"),
        helper.make_node("Mul", ["sum", "FLOAT_raw"], ["Y"], name="mul"),
        helper.make_node("Identity", ["unk_dims"], ["U"], name="id_unk"),
        helper.make_node("Neg", ["U"], ["Z"], name="neg"),
        helper.make_node("SequenceConstruct", ["X", "Y"], ["seq"], name="seq"),
        helper.make_node("SequenceLength", ["seq"], ["seq_len"], name="seq_len"),
        helper.make_node("Optional", ["X"], ["opt"], name="opt"),
        helper.make_node("OptionalHasElement", ["opt"], ["has"], name="has"),
    ]
    set_meta(nodes[0], note="node metadata")
    sum_vi = tensor_vi("sum", FLOAT, ["N", 3], doc="intermediate")
    # The checker wants a shape on graph inputs/outputs; unknown rank lives in value_info.
    u_vi = helper.make_tensor_value_info("U", FLOAT, None)
    set_meta(sum_vi, kind="value_info")
    seq_vi = helper.make_value_info("seq", helper.make_sequence_type_proto(
        helper.make_tensor_type_proto(FLOAT, ["N", 3])))
    opt_vi = helper.make_value_info("opt", helper.make_optional_type_proto(
        helper.make_tensor_type_proto(FLOAT, ["N", None])))  # dim_param + unknown dim
    graph = helper.make_graph(
        nodes,
        "all_dtypes",
        [x, unk_dims],
        [
            tensor_vi("Y", FLOAT, ["N", 3]),
            helper.make_tensor_value_info("Z", FLOAT, [None, None]),
            helper.make_tensor_value_info("seq_len", INT64, []),
            helper.make_tensor_value_info("has", BOOL, []),
        ],
        initializer=inits,
        doc_string="every data type, sparse initializers, value_info",
        value_info=[sum_vi, u_vi, seq_vi, opt_vi],
        sparse_initializer=[sp_linear, sp_coo],
    )
    set_meta(graph, graph_key="graph value")
    ann = onnx.TensorAnnotation(tensor_name="Y")
    ann.quant_parameter_tensor_names.extend(
        meta(SCALE_TENSOR="scalar_f32", ZERO_POINT_TENSOR="INT8_raw"))
    graph.quantization_annotation.append(ann)
    model = helper.make_model(
        graph,
        ir_version=IR_NEWEST,  # the newest data types need it
        opset_imports=opsets(),
        producer_name="eexc-tests",
        producer_version="1.0",
        domain="org.eexc.tests",
        model_version=7,
        doc_string="all_dtypes: every TensorProto data type, both storages",
    )
    set_meta(model, author="eexc", purpose="lossless round trip")
    return model


# ---------------------------------------------------------------------------- all_attrs
def tiny_graph(name, op="Neg"):
    """A self-contained graph a -> op -> b (no outer-scope captures)."""
    return helper.make_graph(
        [helper.make_node(op, ["a"], ["b"])],
        name,
        [helper.make_tensor_value_info("a", FLOAT, [2])],
        [helper.make_tensor_value_info("b", FLOAT, [2])],
    )


def make_all_attrs():
    dom = "org.eexc.attrs"
    sp = helper.make_sparse_tensor(
        helper.make_tensor("spv", FLOAT, [2], [1.0, -1.0]),
        helper.make_tensor("spi", INT64, [2], [1, 3]),
        [4],
    )
    sp2 = helper.make_sparse_tensor(
        helper.make_tensor("spv2", INT64, [1], [9]),
        helper.make_tensor("spi2", INT64, [1, 2], [0, 1]),
        [2, 2],
    )
    map_tp = helper.make_map_type_proto(INT64, helper.make_tensor_type_proto(FLOAT, [None]))
    opaque_tp = onnx.TypeProto()
    opaque_tp.opaque_type.domain = dom
    opaque_tp.opaque_type.name = "Handle"
    type_protos = [
        helper.make_sequence_type_proto(helper.make_tensor_type_proto(FLOAT, ["S"])),
        map_tp,
        helper.make_optional_type_proto(helper.make_tensor_type_proto(INT64, [])),
        helper.make_sparse_tensor_type_proto(FLOAT, [4, "K"]),
        opaque_tp,
    ]
    A = helper.make_attribute
    every = helper.make_node("AllAttrs", ["X"], ["custom_out"], name="every_kind", domain=dom)
    every.attribute.extend([
        A("f", 1.5, doc_string="a FLOAT attribute"),
        A("i", -3),
        A("s", b"bytes \xff\x00 not utf-8"),  # STRING is bytes in the schema
        A("t", numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "t_val")),
        A("g", tiny_graph("g_body")),
        A("sparse_tensor", sp),
        A("tp", helper.make_tensor_type_proto(FLOAT, ["N", 3, None])),
        A("floats", [1.0, -2.5, float("inf")]),
        A("ints", [1, -1, 2**40]),
        A("strings", [b"a", b"", b"\xc3\xbc"]),
        A("tensors", [helper.make_tensor("t0", INT64, [2], [1, 2]),
                      helper.make_tensor("t1", TensorProto.STRING, [1], [b"s"])]),
        A("graphs", [tiny_graph("g0", "Abs"), tiny_graph("g1", "Neg")]),
        A("sparse_tensors", [sp, sp2]),
        A("type_protos", type_protos),
        # Empty lists: only the `type` field says what they are.
        A("empty_ints", [], attr_type=onnx.AttributeProto.INTS),
        A("empty_graphs", [], attr_type=onnx.AttributeProto.GRAPHS),
    ])
    kinds = {a.type for a in every.attribute}
    expected = {v for k, v in onnx.AttributeProto.AttributeType.items() if k != "UNDEFINED"}
    assert kinds == expected, expected - kinds

    C = lambda out, **kw: helper.make_node("Constant", [], [out], name=out, **kw)  # noqa: E731
    nodes = [
        every,
        C("c_float", value_float=0.25),
        C("c_int", value_int=-7),
        C("c_string", value_string="str"),
        C("c_floats", value_floats=[1.0, 2.0]),
        C("c_ints", value_ints=[3, 4]),
        C("c_strings", value_strings=["x", "y"]),
        C("c_tensor", value=helper.make_tensor("v", FLOAT, [2], [5.0, 6.0])),
        C("c_sparse", sparse_value=sp),
        helper.make_node("ReduceSum", ["X"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "c_float"], ["cond"]),
        helper.make_node(
            "If", ["cond"], ["branch_out"], name="if",
            then_branch=helper.make_graph(
                [helper.make_node("Add", ["c_tensor", "c_float"], ["then_out"])], "then", [],
                [helper.make_tensor_value_info("then_out", FLOAT, [2])]),
            else_branch=helper.make_graph(
                [helper.make_node("Identity", ["c_tensor"], ["else_out"])], "else", [],
                [helper.make_tensor_value_info("else_out", FLOAT, [2])]),
        ),
        helper.make_node("Scaled", ["branch_out"], ["scaled"], domain=dom, beta=3.0),
    ]
    # Local function with attribute parameters: alpha has a default (attribute_proto),
    # beta does not (attribute); the body reads both through ref_attr_name.
    ref = helper.make_attribute_ref
    c_alpha = helper.make_node("Constant", [], ["alpha"])
    c_alpha.attribute.append(ref("value_float", onnx.AttributeProto.FLOAT, ref_attr_name="alpha"))
    c_beta = helper.make_node("Constant", [], ["beta"])
    c_beta.attribute.append(ref("value_float", onnx.AttributeProto.FLOAT, ref_attr_name="beta"))
    scaled = helper.make_function(
        dom, "Scaled", ["x"], ["y"],
        [c_alpha, c_beta,
         helper.make_node("Mul", ["x", "alpha"], ["xa"]),
         helper.make_node("Add", ["xa", "beta"], ["y"])],
        opsets(),
        attributes=["beta"],
        attribute_protos=[helper.make_attribute("alpha", 2.0)],
        doc_string="y = alpha * x + beta",
    )
    graph = helper.make_graph(
        nodes, "all_attrs",
        [helper.make_tensor_value_info("X", FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("custom_out", FLOAT, ["N", "M"]),
         helper.make_tensor_value_info("scaled", FLOAT, [2]),
         helper.make_tensor_value_info("c_sparse", FLOAT, [4]),
         helper.make_tensor_value_info("c_string", TensorProto.STRING, []),
         helper.make_tensor_value_info("c_strings", TensorProto.STRING, [2]),
         helper.make_tensor_value_info("c_int", INT64, []),
         helper.make_tensor_value_info("c_ints", INT64, [2]),
         helper.make_tensor_value_info("c_floats", FLOAT, [2])],
    )
    return helper.make_model(
        graph, ir_version=IR_STABLE, opset_imports=opsets((dom, 1)), functions=[scaled],
        producer_name="eexc-tests", doc_string="all_attrs: every AttributeProto kind")


# ---------------------------------------------------------------------------- subgraphs
def make_subgraphs():
    fn_dom = "org.eexc.fn"
    vi = helper.make_tensor_value_info
    # If inside the Loop body. Branches capture `acc_in` and `iter_f` (Loop body scope) and
    # `X` / `scale` (main graph scope). ORT rejects a branch that returns an outer value
    # directly, so every branch output is computed inside the branch.
    then_g = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "X"], ["t0"]),
         helper.make_node("Add", ["t0", "iter_f"], ["then_out"])],
        "even_branch", [], [vi("then_out", FLOAT, [2, 3])], doc_string="acc + X + i")
    else_g = helper.make_graph(
        [helper.make_node("Mul", ["acc_in", "scale"], ["else_out"])],
        "odd_branch", [], [vi("else_out", FLOAT, [2, 3])], doc_string="acc * scale")
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["two"], value=helper.make_tensor("", INT64, [], [2])),
         helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("", INT64, [], [0])),
         helper.make_node("Mod", ["iter", "two"], ["rem"]),
         helper.make_node("Equal", ["rem", "zero"], ["is_even"]),
         helper.make_node("Cast", ["iter"], ["iter_f"], to=FLOAT),
         helper.make_node("If", ["is_even"], ["acc_out"], name="if_in_loop",
                          then_branch=then_g, else_branch=else_g),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "loop_body",
        [vi("iter", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [2, 3])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [2, 3]), vi("iter_f", FLOAT, [])],
        doc_string="loop body with a nested If",
    )
    scan_body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_row"], ["s_out"]),
         helper.make_node("Identity", ["s_out"], ["y_row"])],
        "scan_body",
        [vi("s_in", FLOAT, [3]), vi("x_row", FLOAT, [3])],
        [vi("s_out", FLOAT, [3]), vi("y_row", FLOAT, [3])],
    )
    # Local function c = (a + b) * alpha, alpha an attribute with a default.
    c_alpha = helper.make_node("Constant", [], ["alpha"])
    c_alpha.attribute.append(helper.make_attribute_ref(
        "value_float", onnx.AttributeProto.FLOAT, ref_attr_name="alpha"))
    add_mul = helper.make_function(
        fn_dom, "AddMul", ["a", "b"], ["c"],
        [c_alpha, helper.make_node("Add", ["a", "b"], ["ab"]),
         helper.make_node("Mul", ["ab", "alpha"], ["c"])],
        opsets(),
        attribute_protos=[helper.make_attribute("alpha", 1.0)],
        doc_string="(a + b) * alpha",
    )
    nodes = [
        helper.make_node("Loop", ["trip", "cond_init", "X"], ["acc_final", "iters"],
                         name="loop", body=body, doc_string="Loop(If)"),
        helper.make_node("Scan", ["s0", "X"], ["s_final", "cumsum"], name="scan",
                         body=scan_body, num_scan_inputs=1),
        helper.make_node("AddMul", ["acc_final", "cumsum"], ["fn_out"], name="fn_call",
                         domain=fn_dom, alpha=2.0),
        helper.make_node("Binarizer", ["fn_out"], ["binary"], name="ml_op",
                         domain="ai.onnx.ml", threshold=0.0),
    ]
    set_meta(nodes[0], note="outer loop")
    graph = helper.make_graph(
        nodes, "subgraphs",
        [vi("X", FLOAT, [2, 3]), vi("trip", INT64, [])],
        [vi("binary", FLOAT, [2, 3]), vi("iters", FLOAT, ["T"]), vi("s_final", FLOAT, [3]),
         vi("fn_out", FLOAT, [2, 3])],
        initializer=[
            helper.make_tensor("scale", FLOAT, [], [0.5]),
            helper.make_tensor("cond_init", BOOL, [], [True]),
            numpy_helper.from_array(np.zeros(3, np.float32), "s0"),
        ],
        doc_string="main graph",
    )
    # training_info: initialization graph computes a fresh `scale`; algorithm decays it.
    init_g = helper.make_graph(
        [helper.make_node("Constant", [], ["scale_init"],
                          value=helper.make_tensor("", FLOAT, [], [0.5]))],
        "training_init", [], [vi("scale_init", FLOAT, [])])
    algo_g = helper.make_graph(
        [helper.make_node("Constant", [], ["decay"],
                          value=helper.make_tensor("", FLOAT, [], [0.9])),
         helper.make_node("Mul", ["scale", "decay"], ["scale_new"])],
        "training_algorithm", [], [vi("scale_new", FLOAT, [])])
    training = helper.make_training_info(
        algo_g, [("scale", "scale_new")], init_g, [("scale", "scale_init")])
    model = helper.make_model(
        graph,
        ir_version=IR_STABLE,
        opset_imports=opsets(("ai.onnx.ml", ML_OPSET), (fn_dom, 1)),
        functions=[add_mul],
        producer_name="eexc-tests",
        producer_version="2.5",
        domain="org.eexc.tests",
        model_version=3,
        doc_string="subgraphs: Loop(If), Scan, local function, training_info",
    )
    model.training_info.append(training)
    set_meta(model, license="Apache-2.0", note="synthetic")
    return model


# ------------------------------------------------------------------------- newer_fields
def newer_dtypes():
    """Data types added after IR 10, whose newest types are UINT4/INT4 (21, 22)."""
    return [v for k, v in TensorProto.DataType.items() if v > TensorProto.INT4]


def device_config(config_id, tensor, stage):
    cfg = onnx.NodeDeviceConfigurationProto(configuration_id=config_id, pipeline_stage=stage)
    spec = cfg.sharding_spec.add(tensor_name=tensor, device=[0, 1])
    group = spec.index_to_device_group_map.add(key=0)
    group.value.extend([0, 1])
    dim = spec.sharded_dim.add(axis=0)
    dim.simple_sharding.add(dim_value=2, num_shards=2)
    dim1 = spec.sharded_dim.add(axis=1)
    dim1.simple_sharding.add(dim_param="K", num_shards=1)
    return cfg


def make_newer_fields():
    vi = helper.make_tensor_value_info
    inits = dtype_initializers(newer_dtypes())
    inits.append(numpy_helper.from_array(
        np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "W"))
    # value_info entries whose elem_type is a new data type (they describe initializers)
    dtype_vis = [vi(t.name, t.data_type, list(t.dims)) for t in inits if t.name != "W"]

    fn_dom = "org.eexc.fn"
    fn_node = helper.make_node("Relu", ["a"], ["b"])
    fn_node.device_configurations.append(device_config("mesh2", "a", 1))
    fn = helper.make_function(fn_dom, "ShardedRelu", ["a"], ["b"], [fn_node], opsets())

    then_node = helper.make_node("Neg", ["mm"], ["then_out"])
    then_node.device_configurations.append(device_config("mesh2", "mm", 0))
    then_g = helper.make_graph([then_node], "then", [], [vi("then_out", FLOAT, [2, 4])])
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["mm"], ["else_out"])], "else", [],
        [vi("else_out", FLOAT, [2, 4])])

    matmul = helper.make_node("MatMul", ["X", "W"], ["mm"], name="matmul")
    matmul.device_configurations.append(device_config("mesh2", "X", 0))
    second = matmul.device_configurations.add(configuration_id="single", pipeline_stage=1)
    second.sharding_spec.add(tensor_name="W", device=[0])
    nodes = [
        matmul,
        helper.make_node("ReduceSum", ["X"], ["sx"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("", FLOAT, [], [0.0])),
        helper.make_node("Greater", ["sx", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["branch"], then_branch=then_g, else_branch=else_g),
        helper.make_node("ShardedRelu", ["branch"], ["Y"], domain=fn_dom),
    ]
    graph = helper.make_graph(
        nodes, "newer_fields", [vi("X", FLOAT, [2, 3])], [vi("Y", FLOAT, [2, 4])],
        initializer=inits, value_info=dtype_vis)
    model = helper.make_model(
        graph, ir_version=IR_NEWEST, opset_imports=opsets((fn_dom, 1)), functions=[fn],
        producer_name="eexc-tests",
        doc_string="fields newer than IR 10 (list in tests/python/make_synthetic_models.py)")
    model.configuration.add(name="mesh2", num_devices=2, device=["cuda:0", "cuda:1"])
    model.configuration.add(name="single", num_devices=1, device=["cpu"])
    return model


# ------------------------------------------------------------------------ future_fields
def unknown_field_bytes(tag_base):
    """Encoded protobuf fields with numbers no ONNX version uses, one per wire type:
    varint, fixed64, length-delimited, fixed32 (groups are deprecated; not used)."""
    def key(num, wire):
        return varint(num << 3 | wire)
    return (key(tag_base, 0) + varint(300)
            + key(tag_base + 1, 1) + (0x0123456789ABCDEF).to_bytes(8, "little")
            + key(tag_base + 2, 2) + varint(5) + b"hello"
            + key(tag_base + 3, 5) + (0xDEADBEEF).to_bytes(4, "little"))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def add_unknown(msg, tag_base):
    # MergeFromString keeps fields the descriptor does not know as unknown fields.
    msg.MergeFromString(unknown_field_bytes(tag_base))


def make_future_fields():
    model = make_subgraphs()
    model.ClearField("training_info")
    g = model.graph
    add_unknown(model, 1000)
    add_unknown(g, 1010)
    add_unknown(g.node[0], 1020)  # Loop
    add_unknown(g.node[0].attribute[0], 1030)  # Loop.body attribute
    body = g.node[0].attribute[0].g
    add_unknown(body, 1040)
    if_node = next(n for n in body.node if n.op_type == "If")
    add_unknown(if_node.attribute[0].g.node[0], 1050)  # node two levels down
    add_unknown(g.initializer[0], 1060)
    add_unknown(g.input[0], 1070)
    add_unknown(g.input[0].type, 1080)
    add_unknown(g.input[0].type.tensor_type.shape.dim[0], 1090)
    add_unknown(model.opset_import[0], 1100)
    add_unknown(model.functions[0], 1110)
    add_unknown(model.functions[0].node[1], 1120)
    add_unknown(model.metadata_props[0], 1130)
    model.doc_string = "future_fields: unknown protobuf fields (numbers >= 1000) on many messages"
    return model


# ----------------------------------------------------------------------------- external
def make_external(outdir):
    """Write external/external.onnx plus its data files; return the written paths."""
    rng = np.random.default_rng(1234)
    ext_dir = os.path.join(outdir, "external")
    if os.path.exists(ext_dir):  # onnx.save appends to existing data files
        shutil.rmtree(ext_dir)
    os.makedirs(os.path.join(ext_dir, "data", "extra"))

    def f32(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    w1, b1, w2 = f32("W1", 64, 128), f32("b1", 128), f32("W2", 128, 32)
    cmat = f32("cmat", 32, 16)
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W1"], ["h0"]),
         helper.make_node("Add", ["h0", "b1"], ["h1"]),
         helper.make_node("Relu", ["h1"], ["h2"]),
         helper.make_node("MatMul", ["h2", "W2"], ["h3"]),
         helper.make_node("Constant", [], ["C"], value=cmat),  # attribute tensor, external too
         helper.make_node("MatMul", ["h3", "C"], ["Y"])],
        "external", [vi("X", FLOAT, [1, 64])], [vi("Y", FLOAT, [1, 16])],
        initializer=[w1, b1, w2])
    model = helper.make_model(graph, ir_version=IR_STABLE, opset_imports=opsets(),
                              producer_name="eexc-tests",
                              doc_string="external data: one shared file, one separate file")

    # W2 goes by hand into its own file at offset 4096, after deterministic filler bytes,
    # with every external_data key ORT knows (location, offset, length, checksum).
    w2_t = next(t for t in model.graph.initializer if t.name == "W2")
    data = w2_t.raw_data
    location, offset = "data/extra/w2.bin", 4096
    with open(os.path.join(ext_dir, location), "wb") as f:
        f.write(bytes(range(256)) * (offset // 256))
        f.write(data)
    w2_t.ClearField("raw_data")
    w2_t.data_location = TensorProto.EXTERNAL
    w2_t.external_data.extend(meta(location=location, offset=str(offset), length=str(len(data)),
                                   checksum=hashlib.sha1(data).hexdigest()))

    # The rest: tensors >= 1 KiB (W1, cmat) into one file in a subfolder; b1 stays inline.
    path = os.path.join(ext_dir, "external.onnx")
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="data/weights.bin", size_threshold=1024, convert_attribute=True)
    # onnx creates the data file 0600; make it as readable as the files we write ourselves.
    os.chmod(os.path.join(ext_dir, "data", "weights.bin"), 0o644)
    onnx.checker.check_model(path, full_check=True)
    return [path, os.path.join(ext_dir, "data", "weights.bin"), os.path.join(ext_dir, location)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir", help="folder to write the models into (created if missing)")
    args = ap.parse_args()
    try:
        os.makedirs(args.outdir, exist_ok=True)
        written = []
        builders = [("all_dtypes.onnx", make_all_dtypes), ("all_attrs.onnx", make_all_attrs),
                    ("subgraphs.onnx", make_subgraphs), ("newer_fields.onnx", make_newer_fields),
                    ("future_fields.onnx", make_future_fields)]
        for name, build in builders:
            model = build()
            onnx.checker.check_model(model, full_check=True)
            path = os.path.join(args.outdir, name)
            onnx.save(model, path)
            written.append(path)
        written += make_external(args.outdir)
    except Exception as e:  # one line for the calling test
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"make_synthetic_models: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
