"""Referee for `eexc insert-exits`: check an emitted multi-output and If model against the original.

Usage:
    python tests/python/check_exits.py --original ORIG.onnx --multi MULTI.onnx --if IF.onnx
        [--samples 64] [--trials 64] [--seed 0] [--batch 1] [--dim NAME=N ...]
        [--rtol 1e-4] [--exact] [--band 1e-5] [--search 200]
        [--ort-opt all|extended|basic|disable]

The contract (see tests/python/exits_contract.md): both emitted models carry metadata_props
key `eexc.exits` (JSON: version 1, mode, logits, exits[index, tensor, head, confidence,
threshold_input, temperature_input, threshold, temperature, logits_output],
never_exit_classes, trained, weights). MULTI: original inputs; original outputs, then per
exit k: `O__exit{k}` for every original output O and `eexc_exit_k_logits`. IF: original
inputs + per exit k the rank-0 float inputs eexc_threshold_k, eexc_temperature_k (also
initializers holding the defaults); original outputs + `exit_index` (int64 [N]). The
batch takes the first exit k at which every row is confident (confidence of
softmax(eexc_exit_k_logits / T_k) >= threshold_k and argmax not a never-exit class), and
then returns MULTI's O__exit{k} with exit_index k; otherwise the original outputs and K+1.

Checks, in this order, each printed as `ok: NAME: detail`, `FAIL: NAME: reason` or
`skip: NAME: reason` (the first three stop the run when they fail):
  (a) checker+ort   onnx.checker full_check on both; both (and the original) run in ORT
  metadata          eexc.exits present in both models, well-formed, equal except "mode";
                    exit tensors exist in the original; head kind fits the tensor's rank
  interface         input/output names, order, types and shapes as above; threshold and
                    temperature initializers hold the metadata defaults
  if-structure      every If: 0-D bool condition (where inferable), branches with the same
                    output count and declared types/shapes, branch outputs produced inside
                    the branch (no outer-scope value returned directly)
  (b) multi-original MULTI's original outputs equal ORIG's on the random inputs
  post-logits       O__exit{k} == the original's logits->O ops applied to eexc_exit_k_logits
  (c) thresholds-above-1  every threshold fed 1.5: ORIG's outputs, exit_index K+1
  (d) thresholds-0  every threshold fed 0: O__exit1, exit_index 1 (batches with a never-exit
                    argmax at exit 1 follow the rule instead)
  (d) exit-k-reachable    thresholds 1.5 before k and 0 at k: O__exit{k}, exit_index k
  (e) random-thresholds   --trials runs, thresholds ~ U[0,1] per exit, temperatures fed
                    (log-uniform [0.5, 2]) on odd trials, defaults on even ones: the rule
  (f) defaults      nothing but the original inputs fed: the rule with the metadata defaults
  (g) never-exit    (only when never_exit_classes is non-empty) a batch whose exit-1 argmax
                    is a never-exit class does not take exit 1 at threshold 0

Inputs: random float32 with the original input shapes (integers in [0,4)); symbolic or
unknown dims become --batch unless --dim NAME=N names them. Float inputs of rank >= 3
(images) are N(0,1) noise plus a per-row, per-channel N(0,1) offset (--inputs offset, the
default): with white noise alone (--inputs white) every pooled feature is nearly the same
for every row, so seeded exit heads on CNN blocks predict one class with one confidence and
the threshold checks learn little. Rank <= 2 float inputs are N(0,1). --samples rows in all,
i.e. ceil(samples/rows) batches, each run once through ORIG and MULTI; the decision rule
is evaluated in float64 numpy on MULTI's eexc_exit_k_logits. A row whose confidence lies
within --band (1e-5) of its threshold, or whose top-2 logits tie (within --band) across a
never-exit class, may go either way. When no batch exercises a case (e.g. never-exit
classes block exit 1 everywhere), up to --search more random batches are tried.

Float outputs are compared bit-exactly first; where they are not bit-exact,
max|got-want| <= rtol * max|want| passes and the check says "not bit-exact" with the
worst relative difference (--exact turns that into a failure). Why rtol defaults to 1e-4,
not 1e-6: with onnxruntime 1.32 (CPU) a faithful emitter that moves the suffix into nested
If branches was measured at up to 7.3e-6 on the batch-1 / fixed-batch models of
make_modern_models.py (even with graph optimizations disabled); deeper models drift more.
Every line reports the worst difference it saw; use --rtol 1e-6 or --exact to be strict.

Ends with `N passed, M failed` (`, S skipped` when some were). Exit 0 when nothing failed,
1 when a check failed, 2 when the arguments or files cannot be used.
"""

import argparse
import json
import math
import sys

import numpy as np
import onnx

META_KEY = "eexc.exits"
HEADS = {"gap-linear": 4, "grid-linear": 4, "mix-linear": 4, "conv-grid": 4, "token-cls": 3, "token-mean": 3, "linear": 2}
CONFIDENCES = ("maxprob", "entropy", "margin")
ABOVE = 1.5        # a threshold no confidence reaches (all three are <= 1)

ORT_TO_NUMPY = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_,
}


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0] if lines else ""


# ---------------------------------------------------------------- types

def type_str(t):
    """A readable rendering of a TypeProto: float[batch,10], int64[], ?."""
    if not t.HasField("tensor_type"):
        return t.WhichOneof("value") or "?"
    tt = t.tensor_type
    elem = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "?"
    elem = {"float32": "float", "float64": "double"}.get(elem, elem)
    if not tt.HasField("shape"):
        return f"{elem}[?rank]"
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
            for d in tt.shape.dim]
    return f"{elem}[{','.join(dims)}]"


def dims_of(t):
    """List of dims (int, str or None) or None for an unknown rank."""
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]


def compatible(a, b):
    """Same elem type and rank; fixed dims equal where both are fixed (symbolic names free)."""
    if not (a.HasField("tensor_type") and b.HasField("tensor_type")):
        return a == b
    if a.tensor_type.elem_type != b.tensor_type.elem_type:
        return False
    da, db = dims_of(a), dims_of(b)
    if da is None or db is None:
        return True
    if len(da) != len(db):
        return False
    return all(not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(da, db))


def real_inputs(graph):
    inits = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    return [i for i in graph.input if i.name not in inits]


# ---------------------------------------------------------------- numerics

def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def confidence(kind, z):
    """Per-row confidence of logits z [rows, C] (float64), already divided by temperature."""
    p = softmax(z)
    if kind == "maxprob":
        return p.max(axis=-1)
    if kind == "margin":
        top = np.sort(p, axis=-1)
        return top[:, -1] - top[:, -2]
    # entropy: 1 - H(p)/ln C with H from log-softmax (no log(0))
    logp = z - z.max(axis=-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=-1, keepdims=True))
    h = -(p * logp).sum(axis=-1)
    return 1.0 - h / math.log(z.shape[-1])


def compare(got, want, what, rtol):
    """None when bit-equal, else the relative difference (<= rtol); Fail beyond that."""
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype != want.dtype:
        raise Fail(f"{what}: dtype {got.dtype}, expected {want.dtype}")
    if got.shape != want.shape:
        raise Fail(f"{what}: shape {list(got.shape)}, expected {list(want.shape)}")
    if np.array_equal(got, want, equal_nan=got.dtype.kind in "fc"):
        return None
    if got.dtype.kind not in "fc":
        bad = np.argwhere(got != want)[0]
        raise Fail(f"{what}: differs at {[int(i) for i in bad]}: {got[tuple(bad)]} != {want[tuple(bad)]}")
    g, w = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(g - w)
    diff[np.isnan(g) & np.isnan(w)] = 0
    scale = max(float(np.nanmax(np.abs(w))) if w.size else 0.0, 1e-30)
    rel = float(np.nanmax(diff)) / scale if not np.isnan(diff).any() else math.inf
    if not rel <= rtol:
        bad = np.unravel_index(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)), diff.shape)
        raise Fail(f"{what}: differs at {[int(i) for i in bad]}: {got[bad]} != {want[bad]} "
                   f"(max rel diff {rel:.3g} > rtol {rtol:g})")
    return rel


class Exactness:
    """Worst non-bit-exact comparison seen by one check."""

    def __init__(self, exact_required):
        self.exact_required = exact_required
        self.worst = None
        self.n = 0

    def add(self, rel, what):
        if rel is None:
            return
        if self.exact_required:
            raise Fail(f"{what}: not bit-exact (max rel diff {rel:.3g}; --exact)")
        self.n += 1
        if self.worst is None or rel > self.worst[0]:
            self.worst = (rel, what)

    def note(self):
        if self.worst is None:
            return "bit-exact"
        return f"not bit-exact in {self.n} comparisons (worst {self.worst[0]:.3g} at {self.worst[1]})"


# ---------------------------------------------------------------- the referee

class Referee:
    def __init__(self, args):
        self.args = args
        self.passed = self.failed = self.skipped = 0
        self.orig = onnx.load(args.original)
        self.multi = onnx.load(args.multi)
        self.iff = onnx.load(args.if_)

    # ---- bookkeeping
    def run_check(self, name, fn):
        try:
            detail = fn()
        except Skip as e:
            self.skipped += 1
            print(f"skip: {name}: {e}")
            return True
        except Fail as e:
            self.failed += 1
            print(f"FAIL: {name}: {' '.join(str(e).split())[:600]}")
            return False
        except Exception as e:  # a crash inside a check is a failure of that check
            self.failed += 1
            print(f"FAIL: {name}: {type(e).__name__}: {first_line(e)[:500]}")
            return False
        self.passed += 1
        print(f"ok: {name}" + (f": {detail}" if detail else ""))
        return True

    def main(self):
        fatal = [("(a) checker+ort", self.check_checker_ort),
                 ("metadata", self.check_metadata),
                 ("interface", self.check_interface)]
        for name, fn in fatal:
            if not self.run_check(name, fn):
                print(f"stopping: later checks need {name.split()[-1]} to pass")
                return self.summary()
        self.run_check("if-structure", self.check_if_structure)
        try:
            self.prepare()
        except Exception as e:
            self.failed += 1
            msg = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {first_line(e)}"
            print(f"FAIL: inputs: {msg[:500]}")
            print("stopping: the original and multi models must run on the random inputs")
            return self.summary()
        checks = [("(b) multi-original", self.check_multi_original),
                  ("post-logits", self.check_post_logits),
                  ("(c) thresholds-above-1", self.check_above_one),
                  ("(d) thresholds-0", self.check_zero),
                  ("(d) exit-k-reachable", self.check_each_exit),
                  ("(e) random-thresholds", self.check_random),
                  ("(f) defaults", self.check_defaults),
                  ("(g) never-exit", self.check_never_exit)]
        for name, fn in checks:
            self.run_check(name, fn)
        return self.summary()

    def summary(self):
        extra = f", {self.skipped} skipped" if self.skipped else ""
        print(f"{self.passed} passed, {self.failed} failed{extra}")
        return 1 if self.failed else 0

    # ---- (a)
    def check_checker_ort(self):
        import onnxruntime as ort

        for what, path in (("multi", self.args.multi), ("if", self.args.if_)):
            try:
                onnx.checker.check_model(path, full_check=True)
            except Exception as e:
                raise Fail(f"{what} model fails onnx.checker: {type(e).__name__}: {first_line(e)}")
        ort.set_default_logger_severity(3)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[self.args.ort_opt]
        self.sess = {}
        for what, path in (("original", self.args.original), ("multi", self.args.multi),
                           ("if", self.args.if_)):
            try:
                self.sess[what] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
            except Exception as e:
                raise Fail(f"onnxruntime cannot load the {what} model: {type(e).__name__}: "
                           f"{first_line(e)}")
        rng = np.random.default_rng(self.args.seed)
        self.feeds_spec = self.input_spec()
        feeds = self.random_feeds(rng)
        for what, sess in self.sess.items():
            try:
                sess.run(None, feeds)
            except Exception as e:
                raise Fail(f"onnxruntime cannot run the {what} model: {type(e).__name__}: "
                           f"{first_line(e)}")
        return f"checker full_check passes on multi and if; all three run in onnxruntime " \
               f"(graph optimization: {self.args.ort_opt})"

    def input_spec(self):
        spec = []
        for i in self.sess["original"].get_inputs():
            if i.type not in ORT_TO_NUMPY or i.type == "tensor(bool)":
                raise Fail(f"original input {i.name!r}: cannot generate values of type {i.type}")
            dims = []
            for d in i.shape:
                if isinstance(d, int) and d >= 0:
                    dims.append(d)
                elif isinstance(d, str) and d in self.args.dim:
                    dims.append(self.args.dim[d])
                else:
                    dims.append(self.args.batch)
            spec.append((i.name, ORT_TO_NUMPY[i.type], dims))
        return spec

    def random_feeds(self, rng):
        feeds = {}
        for name, dt, dims in self.feeds_spec:
            if np.issubdtype(dt, np.integer):
                feeds[name] = rng.integers(0, 4, dims).astype(dt)
            elif len(dims) >= 3 and self.args.inputs == "offset":
                # per-row, per-channel offset shared by all positions: global statistics vary
                # across rows, so pooled features (and exit heads) see different inputs
                off = rng.standard_normal(dims[:2] + [1] * (len(dims) - 2))
                feeds[name] = (off + rng.standard_normal(dims)).astype(dt)
            else:
                feeds[name] = rng.standard_normal(dims).astype(dt)
        return feeds

    # ---- metadata
    def read_meta(self, model, what):
        entries = [p.value for p in model.metadata_props if p.key == META_KEY]
        if len(entries) != 1:
            raise Fail(f"{what} model has {len(entries)} metadata_props entries {META_KEY!r}, expected 1")
        try:
            meta = json.loads(entries[0])
        except ValueError as e:
            raise Fail(f"{what} model: {META_KEY} is not JSON: {e}")
        if not isinstance(meta, dict):
            raise Fail(f"{what} model: {META_KEY} is not a JSON object")
        return meta

    def check_metadata(self):
        mm, mi = self.read_meta(self.multi, "multi"), self.read_meta(self.iff, "if")
        for meta, what, mode in ((mm, "multi", "multi"), (mi, "if", "if")):
            if meta.get("version") != 1:
                raise Fail(f"{what}: version is {meta.get('version')!r}, expected 1")
            if meta.get("mode") != mode:
                raise Fail(f"{what}: mode is {meta.get('mode')!r}, expected {mode!r}")
        a = {k: v for k, v in mm.items() if k != "mode"}
        b = {k: v for k, v in mi.items() if k != "mode"}
        if a != b:
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise Fail(f"multi and if metadata differ in {diff}")
        meta = mi
        names = {o for n in self.orig.graph.node for o in n.output} | \
                {i.name for i in self.orig.graph.input}
        logits = meta.get("logits")
        if not isinstance(logits, str) or logits not in names:
            raise Fail(f"logits {logits!r} is not a tensor of the original model")
        exits = meta.get("exits")
        if not isinstance(exits, list) or not exits:
            raise Fail("exits must be a non-empty list")
        ranks = self.orig_ranks()
        for pos, e in enumerate(exits, 1):
            if not isinstance(e, dict):
                raise Fail(f"exits[{pos - 1}] is not an object")
            if e.get("index") != pos or isinstance(e.get("index"), bool):
                raise Fail(f"exits[{pos - 1}].index is {e.get('index')!r}, expected {pos}")
            t = e.get("tensor")
            if not isinstance(t, str) or t not in names:
                raise Fail(f"exit {pos}: tensor {t!r} is not a tensor of the original model")
            if e.get("head") not in HEADS:
                raise Fail(f"exit {pos}: head {e.get('head')!r} not one of {sorted(HEADS)}")
            if ranks.get(t) is not None and ranks[t] != HEADS[e["head"]]:
                raise Fail(f"exit {pos}: head {e['head']} needs a rank-{HEADS[e['head']]} tensor, "
                           f"{t!r} has rank {ranks[t]}")
            if e.get("confidence") not in CONFIDENCES:
                raise Fail(f"exit {pos}: confidence {e.get('confidence')!r} not one of {CONFIDENCES}")
            for key, want in (("threshold_input", f"eexc_threshold_{pos}"),
                              ("temperature_input", f"eexc_temperature_{pos}"),
                              ("logits_output", f"eexc_exit_{pos}_logits")):
                if e.get(key) != want:
                    raise Fail(f"exit {pos}: {key} is {e.get(key)!r}, expected {want!r}")
            for key in ("threshold", "temperature"):
                v = e.get(key)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise Fail(f"exit {pos}: {key} {v!r} is not a finite number")
            if not e["temperature"] > 0:
                raise Fail(f"exit {pos}: temperature {e['temperature']} is not positive")
        nec = meta.get("never_exit_classes")
        if not isinstance(nec, list) or any(isinstance(c, bool) or not isinstance(c, int) or c < 0
                                            for c in nec):
            raise Fail(f"never_exit_classes {nec!r} is not a list of non-negative ints")
        if not isinstance(meta.get("trained"), bool):
            raise Fail(f"trained {meta.get('trained')!r} is not a bool")
        if not isinstance(meta.get("weights"), str):
            raise Fail(f"weights {meta.get('weights')!r} is not a string")
        self.meta = meta
        self.exits = exits
        self.K = len(exits)
        self.never = set(nec)
        desc = ", ".join(f"{e['index']}:{e['tensor']}({e['head']},{e['confidence']},"
                         f"t={e['threshold']:g},T={e['temperature']:g})" for e in exits)
        return f"K={self.K} logits={logits} exits [{desc}] never_exit={sorted(self.never)} " \
               f"trained={meta['trained']} weights={meta['weights']!r}"

    def orig_ranks(self):
        try:
            inferred = onnx.shape_inference.infer_shapes(self.orig)
        except Exception:
            return {}
        g = inferred.graph
        out = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
                out[vi.name] = len(vi.type.tensor_type.shape.dim)
        return out

    # ---- interface
    def check_interface(self):
        og, mg, ig = self.orig.graph, self.multi.graph, self.iff.graph
        oin = real_inputs(og)
        # multi inputs
        min_ = real_inputs(mg)
        self.same_values("multi inputs", oin, min_, strict=True)
        # multi outputs
        oout = list(og.output)
        self.out_names = [o.name for o in oout]
        want = [o.name for o in oout]
        for e in self.exits:
            want += [f"{o}__exit{e['index']}" for o in self.out_names] + [e["logits_output"]]
        got = [o.name for o in mg.output]
        if got != want:
            raise Fail(f"multi outputs {got}, expected {want}")
        self.same_values("multi original outputs", oout, list(mg.output)[:len(oout)], strict=True)
        by_name = {o.name: o for o in mg.output}
        for e in self.exits:
            k = e["index"]
            for o in oout:
                x = by_name[f"{o.name}__exit{k}"]
                if not compatible(x.type, o.type):
                    raise Fail(f"multi output {x.name}: {type_str(x.type)} does not match "
                               f"{o.name}: {type_str(o.type)}")
            lo = by_name[e["logits_output"]]
            d = dims_of(lo.type) if lo.type.HasField("tensor_type") else None
            if lo.type.tensor_type.elem_type != onnx.TensorProto.FLOAT or d is None or len(d) != 2:
                raise Fail(f"multi output {lo.name}: {type_str(lo.type)}, expected float[N,classes]")
        # if inputs
        inits = {t.name: t for t in ig.initializer}
        knobs = []
        for e in self.exits:
            knobs += [(e["threshold_input"], e["threshold"]), (e["temperature_input"], e["temperature"])]
        knob_names = {n for n, _ in knobs}
        iin = [i for i in ig.input if i.name not in inits or i.name in knob_names]
        want = [i.name for i in oin] + [n for n, _ in knobs]
        got = [i.name for i in iin]
        if got != want:
            raise Fail(f"if inputs {got}, expected {want}")
        self.same_values("if original inputs", oin, iin[:len(oin)], strict=True)
        for vi, (name, default) in zip(iin[len(oin):], knobs):
            if type_str(vi.type) != "float[]":
                raise Fail(f"if input {name}: {type_str(vi.type)}, expected float[] (rank 0)")
            if name not in inits:
                raise Fail(f"if input {name} has no initializer (it must be optional at run time)")
            t = inits[name]
            arr = onnx.numpy_helper.to_array(t)
            if arr.dtype != np.float32 or arr.shape != ():
                raise Fail(f"if initializer {name}: {arr.dtype}{list(arr.shape)}, expected float32 []")
            if arr != np.float32(default):
                raise Fail(f"if initializer {name} holds {float(arr)!r}, metadata says {default!r}")
        # if outputs
        got = [o.name for o in ig.output]
        want = self.out_names + ["exit_index"]
        if got != want:
            raise Fail(f"if outputs {got}, expected {want}")
        self.same_values("if original outputs", oout, list(ig.output)[:len(oout)], strict=True)
        ei = ig.output[-1]
        d = dims_of(ei.type) if ei.type.HasField("tensor_type") else None
        if ei.type.tensor_type.elem_type != onnx.TensorProto.INT64 or d is None or len(d) != 1:
            raise Fail(f"if output exit_index: {type_str(ei.type)}, expected int64[N]")
        first = dims_of(oout[0].type) if oout[0].type.HasField("tensor_type") else None
        if first and isinstance(first[0], int) and isinstance(d[0], int) and first[0] != d[0]:
            raise Fail(f"exit_index has {d[0]} rows, {oout[0].name} has {first[0]}")
        return (f"multi: {len(mg.output)} outputs; if: {len(self.exits) * 2} knob inputs, "
                f"outputs {', '.join(f'{o.name}:{type_str(o.type)}' for o in ig.output)}")

    def same_values(self, what, want, got, strict):
        if [v.name for v in want] != [v.name for v in got]:
            raise Fail(f"{what}: {[v.name for v in got]}, expected {[v.name for v in want]}")
        for w, g in zip(want, got):
            ok = w.type == g.type if strict else compatible(w.type, g.type)
            if not ok:
                raise Fail(f"{what}: {g.name} is {type_str(g.type)}, original is {type_str(w.type)}")

    # ---- if-structure
    def check_if_structure(self):
        try:
            inferred = onnx.shape_inference.infer_shapes(self.iff)
        except Exception:
            inferred = self.iff
        types = {}

        def collect(g):
            for vi in list(g.input) + list(g.output) + list(g.value_info):
                types.setdefault(vi.name, vi.type)
            for t in g.initializer:
                types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, list(t.dims)))
            for n in g.node:
                for a in n.attribute:
                    for sg in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                        collect(sg)
        collect(inferred.graph)
        stats = {"ifs": 0, "top": 0, "unknown_cond": 0, "max_depth": 0}

        def walk(g, depth):
            for n in g.node:
                if n.op_type == "If" and n.domain in ("", "ai.onnx"):
                    stats["ifs"] += 1
                    stats["top"] += depth == 0
                    stats["max_depth"] = max(stats["max_depth"], depth + 1)
                    where = f"If {n.name or n.output[0]!r}"
                    ct = types.get(n.input[0])
                    if ct is None or not ct.HasField("tensor_type") or dims_of(ct) is None:
                        stats["unknown_cond"] += 1
                    elif type_str(ct) != "bool[]":
                        raise Fail(f"{where}: condition {n.input[0]!r} is {type_str(ct)}, "
                                   f"expected a 0-D bool")
                    br = {a.name: a.g for a in n.attribute if a.name in ("then_branch", "else_branch")}
                    if len(br) != 2:
                        raise Fail(f"{where}: missing then/else branch")
                    tb, eb = br["then_branch"], br["else_branch"]
                    if len(tb.output) != len(eb.output) or len(tb.output) != len(n.output):
                        raise Fail(f"{where}: then has {len(tb.output)} outputs, else "
                                   f"{len(eb.output)}, node {len(n.output)}")
                    for i, (x, y) in enumerate(zip(tb.output, eb.output)):
                        if x.type != y.type:
                            raise Fail(f"{where}: output {i} is {type_str(x.type)} in then, "
                                       f"{type_str(y.type)} in else (branches must agree exactly)")
                        if not x.type.tensor_type.HasField("shape"):
                            raise Fail(f"{where}: output {i} ({x.name}) has no declared shape")
                    for name, b in br.items():
                        local = {o for m in b.node for o in m.output} | {t.name for t in b.initializer}
                        for o in b.output:
                            if o.name not in local:
                                raise Fail(f"{where}: {name} returns {o.name!r} from an outer scope "
                                           f"directly (wrap it in Identity)")
                for a in n.attribute:
                    for sg in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                        walk(sg, depth + 1)

        walk(self.iff.graph, 0)
        if stats["top"] == 0:
            raise Fail("the if model has no If node in its main graph")
        note = f", {stats['unknown_cond']} conditions of unknown type" if stats["unknown_cond"] else ""
        return f"{stats['ifs']} If nodes, nesting depth {stats['max_depth']}, 0-D bool conditions, " \
               f"branch outputs agree{note}"

    # ---- runs
    def prepare(self):
        a = self.args
        rng = np.random.default_rng(a.seed)
        rows = None
        self.pool = []
        n = 0
        while n < a.samples:
            feeds = self.random_feeds(rng)
            ref = self.run("original", feeds)
            mo = self.run("multi", feeds)
            rows = mo[self.exits[0]["logits_output"]].shape[0]
            self.pool.append((feeds, ref, mo))
            n += max(rows, 1)
        self.rows = rows
        self.search_rng = np.random.default_rng(a.seed + 2)
        sym = any(not isinstance(d, int) for i in self.sess["original"].get_inputs() for d in i.shape[:1])
        print(f"note: {len(self.pool)} batches of {rows} row{'s' if rows != 1 else ''}"
              + (" (batch semantics not exercised: rows=1; try --batch 4)" if rows == 1 and sym else ""))

    def run(self, what, feeds, extra=None):
        sess = self.sess[what]
        f = dict(feeds)
        f.update(extra or {})
        try:
            outs = sess.run(None, f)
        except Exception as e:
            raise Fail(f"{what} model fails to run: {type(e).__name__}: {first_line(e)}")
        return {m.name: v for m, v in zip(sess.get_outputs(), outs)}

    def check_multi_original(self):
        ex = Exactness(self.args.exact)
        for b, (_, ref, mo) in enumerate(self.pool):
            for o in self.out_names:
                ex.add(compare(mo[o], ref[o], f"batch {b} {o}", self.args.rtol), f"batch {b} {o}")
        return f"{len(self.pool)} batches, {ex.note()}"

    def post_model(self, logits, out):
        """The original's ops from tensor `logits` to output `out`, as a model with input `logits`."""
        g = self.orig.graph
        producer = {o: n for n in g.node for o in n.output}
        inits = {t.name: t for t in g.initializer}
        graph_inputs = {i.name for i in g.input} - set(inits)
        nodes, seen, stack, used = [], set(), [out], set()
        while stack:
            t = stack.pop()
            if t == logits or t in seen or not t:
                continue
            seen.add(t)
            if t in inits:
                used.add(t)
            elif t in graph_inputs:
                raise ValueError(f"{out} depends on input {t!r} other than through {logits}")
            elif t in producer:
                n = producer[t]
                if id(n) not in {id(m) for m in nodes}:
                    nodes.append(n)
                    stack.extend(n.input)
            else:
                raise ValueError(f"{t!r} has no producer")
        order = {id(n): i for i, n in enumerate(g.node)}
        nodes.sort(key=lambda n: order[id(n)])
        if logits not in {x for n in nodes for x in n.input}:
            raise ValueError(f"{out} does not depend on {logits}")
        out_vi = next(o for o in g.output if o.name == out)
        graph = onnx.helper.make_graph(
            nodes, "post", [onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None)],
            [out_vi], initializer=[inits[t] for t in sorted(used)])
        return onnx.helper.make_model(graph, opset_imports=list(self.orig.opset_import),
                                      ir_version=self.orig.ir_version)

    def check_post_logits(self):
        import onnxruntime as ort

        logits = self.meta["logits"]
        inferred = onnx.shape_inference.infer_shapes(self.orig)
        g = inferred.graph
        types = {v.name: v.type for v in list(g.value_info) + list(g.output) + list(g.input)}
        t = types.get(logits)
        has_shape = t is not None and t.tensor_type.HasField("shape")
        self.logits_rank = len(t.tensor_type.shape.dim) if has_shape else 2
        post = {}
        notes = []
        for o in self.out_names:
            if o == logits:
                post[o] = None
                continue
            try:
                sub = self.post_model(logits, o)
                post[o] = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
            except Exception as e:
                notes.append(f"{o} not checked ({type(e).__name__}: {first_line(e)[:80]})")
        if not post:
            raise Skip("; ".join(notes))
        ex = Exactness(self.args.exact)
        classes = set()
        for b, (_, _, mo) in enumerate(self.pool):
            for e in self.exits:
                z = mo[e["logits_output"]]
                if z.dtype != np.float32 or z.ndim != 2 or z.shape[0] != self.rows:
                    raise Fail(f"{e['logits_output']}: {z.dtype}{list(z.shape)}, expected float32 "
                               f"[{self.rows}, classes]")
                classes.add(z.shape[1])
                for o, s in post.items():
                    # Logits such as N x C x 1 x 1 (a 1x1-conv classifier): the
                    # exit's N x C logits carry the same values; eexc restores
                    # the trailing unit axes before the post-logits ops.
                    rank = self.logits_rank
                    zz = z.reshape(z.shape + (1,) * max(0, rank - z.ndim))
                    want = zz if s is None else s.run(None, {s.get_inputs()[0].name: zz})[0]
                    what = f"batch {b} {o}__exit{e['index']}"
                    ex.add(compare(mo[f"{o}__exit{e['index']}"], want, what, self.args.rtol), what)
        if len(classes) != 1:
            raise Fail(f"exit logits disagree on the number of classes: {sorted(classes)}")
        self.classes = classes.pop()
        bad = sorted(c for c in self.never if c >= self.classes)
        if bad:
            raise Fail(f"never_exit_classes {bad} out of range for {self.classes} classes")
        what = ", ".join(f"{o}{'=logits' if s is None else '=post(logits)'}" for o, s in post.items())
        return f"{what} for every exit ({self.classes} classes), {ex.note()}" + \
            ("; " + "; ".join(notes) if notes else "")

    # ---- the rule
    def decide(self, mo, thresholds, temperatures):
        """Acceptable exit indices (1..K+1) for one batch; ambiguous rows allow both ways."""
        ok = []
        for e, thr, temp in zip(self.exits, thresholds, temperatures):
            z = mo[e["logits_output"]].astype(np.float64)
            conf = confidence(e["confidence"], z / temp)
            top = np.argsort(z, axis=-1)
            am, second = top[:, -1], top[:, -2]
            gap = z[np.arange(len(z)), am] - z[np.arange(len(z)), second]
            blocked = np.array([c in self.never for c in am])
            tie = (gap < self.args.band) & np.array([(a in self.never) != (s in self.never)
                                               for a, s in zip(am, second)])
            yes = (conf >= thr + self.args.band) & ~blocked & ~tie
            no = (conf < thr - self.args.band) | (blocked & ~tie)
            ok.append(True if yes.all() else False if no.any() else None)
        accept = []
        for k, v in enumerate(ok, 1):
            if v is not False:
                accept.append(k)
            if v is True:
                return accept
        return accept + [self.K + 1]

    def check_if_run(self, b, thresholds, temperatures, feed_thr, feed_temp, ex, label):
        """Run IF on pool batch b; check exit_index and outputs against the rule. Returns the exit."""
        feeds, ref, mo = self.pool[b]
        extra = {}
        if feed_thr:
            extra.update({e["threshold_input"]: np.array(t, dtype=np.float32)
                          for e, t in zip(self.exits, thresholds)})
        if feed_temp:
            extra.update({e["temperature_input"]: np.array(t, dtype=np.float32)
                          for e, t in zip(self.exits, temperatures)})
        thr32 = [float(np.float32(t)) for t in thresholds]
        tmp32 = [float(np.float32(t)) for t in temperatures]
        accept = self.decide(mo, thr32, tmp32)
        got = self.run("if", feeds, extra)
        idx = got["exit_index"]
        where = f"{label}, batch {b}, thresholds {[round(t, 4) for t in thr32]}" + \
                (f", temperatures {[round(t, 4) for t in tmp32]}" if feed_temp else "")
        if idx.dtype != np.int64 or idx.shape != (self.rows,):
            raise Fail(f"{where}: exit_index is {idx.dtype}{list(idx.shape)}, expected int64[{self.rows}]")
        if len(set(idx.tolist())) != 1:
            raise Fail(f"{where}: exit_index {idx.tolist()} differs between rows (If mode exits "
                       f"the whole batch)")
        k = int(idx[0])
        if k not in accept:
            raise Fail(f"{where}: exit_index {k}, the rule says {' or '.join(map(str, accept))} "
                       f"({self.explain(mo, thr32, tmp32)})")
        for o in self.out_names:
            want = ref[o] if k == self.K + 1 else mo[f"{o}__exit{k}"]
            src = f"original {o}" if k == self.K + 1 else f"{o}__exit{k}"
            what = f"{where}: {o} vs {src}"
            ex.add(compare(got[o], want, what, self.args.rtol), what)
        return k

    def explain(self, mo, thresholds, temperatures):
        parts = []
        for e, thr, temp in zip(self.exits, thresholds, temperatures):
            z = mo[e["logits_output"]].astype(np.float64)
            conf = confidence(e["confidence"], z / temp)
            am = z.argmax(axis=-1)
            parts.append(f"exit {e['index']}: {e['confidence']} {np.round(conf, 4).tolist()} "
                         f"argmax {am.tolist()} vs threshold {thr:.4g}")
        return "; ".join(parts)

    def defaults(self):
        return [e["threshold"] for e in self.exits], [e["temperature"] for e in self.exits]

    def check_above_one(self):
        ex = Exactness(self.args.exact)
        _, temps = self.defaults()
        for b in range(len(self.pool)):
            k = self.check_if_run(b, [ABOVE] * self.K, temps, True, False, ex, "thresholds 1.5")
            if k != self.K + 1:
                raise Fail(f"batch {b}: exit_index {k}, expected {self.K + 1}")
        return f"{len(self.pool)} batches: original outputs, exit_index {self.K + 1}; {ex.note()}"

    def find_batch(self, pred):
        """A pool batch whose MULTI outputs satisfy pred; else up to --search new random ones."""
        for b, (_, _, mo) in enumerate(self.pool):
            if pred(mo):
                return b
        for _ in range(self.args.search):
            feeds = self.random_feeds(self.search_rng)
            mo = self.run("multi", feeds)
            if pred(mo):
                self.pool.append((feeds, self.run("original", feeds), mo))
                return len(self.pool) - 1
        return None

    def check_zero(self):
        ex = Exactness(self.args.exact)
        _, temps = self.defaults()
        zeros = [0.0] * self.K
        n = len(self.pool)
        blocked = 0
        for b in range(n):
            k = self.check_if_run(b, zeros, temps, True, False, ex, "thresholds 0")
            if self.decide(self.pool[b][2], zeros, temps)[0] != 1:
                blocked += 1
            elif k != 1:
                raise Fail(f"batch {b}: exit_index {k}, expected 1")
        extra = ""
        if blocked == n:
            b = self.find_batch(lambda mo: self.decide(mo, zeros, temps) == [1])
            if b is None:
                raise Skip(f"rule followed on {n} batches, but exit 1 is blocked by never-exit "
                           f"classes on every batch tried ({n + self.args.search})")
            if self.check_if_run(b, zeros, temps, True, False, ex, "thresholds 0") != 1:
                raise Fail(f"batch {b}: exit_index is not 1")
            extra = f"; exit 1 seen on searched batch {b}"
        note = f" ({blocked} batches blocked by never-exit classes followed the rule)" if blocked else ""
        return f"{n - blocked} batches: O__exit1, exit_index 1{note}{extra}; {ex.note()}"

    def check_each_exit(self):
        ex = Exactness(self.args.exact)
        _, temps = self.defaults()
        missing = []
        n = len(self.pool)
        for k in range(1, self.K + 1):
            thr = [ABOVE] * (k - 1) + [0.0] + [ABOVE] * (self.K - k)
            seen = {self.check_if_run(b, thr, temps, True, False, ex, f"forcing exit {k}")
                    for b in range(n)}
            if k not in seen:
                b = self.find_batch(lambda mo: self.decide(mo, thr, temps) == [k])
                if b is None:
                    missing.append(k)
                elif self.check_if_run(b, thr, temps, True, False, ex, f"forcing exit {k}") != k:
                    raise Fail(f"forcing exit {k}, batch {b}: exit {k} not taken")
        if len(missing) == self.K:
            raise Skip(f"rule followed, but never-exit classes block every exit on every batch tried")
        note = f"; exits {missing} could not be exercised (never-exit classes block every batch " \
               f"tried)" if missing else ""
        return f"thresholds 1.5 before k and 0 at k take exit k, k = 1..{self.K}{note}; {ex.note()}"

    def check_random(self):
        ex = Exactness(self.args.exact)
        rng = np.random.default_rng(self.args.seed + 1)
        _, dtemps = self.defaults()
        hist = {}
        for t in range(self.args.trials):
            b = t % len(self.pool)
            thr = rng.uniform(0.0, 1.0, self.K).tolist()
            feed_temp = t % 2 == 1
            temps = np.exp(rng.uniform(math.log(0.5), math.log(2.0), self.K)).tolist() \
                if feed_temp else dtemps
            k = self.check_if_run(b, thr, temps, True, feed_temp, ex, f"trial {t}")
            hist[k] = hist.get(k, 0) + 1
        h = " ".join(f"{k}:{hist[k]}" for k in sorted(hist))
        note = "; only one outcome seen" if len(hist) == 1 else ""
        return f"{self.args.trials} trials, exits taken {{{h}}}{note}; {ex.note()}"

    def check_defaults(self):
        ex = Exactness(self.args.exact)
        thr, temps = self.defaults()
        hist = {}
        for b in range(len(self.pool)):
            k = self.check_if_run(b, thr, temps, False, False, ex, "defaults")
            hist[k] = hist.get(k, 0) + 1
        h = " ".join(f"{k}:{hist[k]}" for k in sorted(hist))
        return f"{len(self.pool)} batches with thresholds {thr} temperatures {temps}: " \
               f"exits taken {{{h}}}; {ex.note()}"

    def check_never_exit(self):
        if not self.never:
            raise Skip("never_exit_classes is empty")
        e1 = self.exits[0]
        _, temps = self.defaults()
        found = self.find_batch(lambda mo: 1 not in self.decide(mo, [0.0] * self.K, temps))
        if found is None:
            raise Skip(f"no input among {len(self.pool) + self.args.search} batches has an "
                       f"{e1['logits_output']} argmax in {sorted(self.never)}")
        ex = Exactness(self.args.exact)
        _, temps = self.defaults()
        am = self.pool[found][2][e1["logits_output"]].argmax(axis=-1).tolist()
        k = self.check_if_run(found, [0.0] * self.K, temps, True, False, ex, "never-exit")
        if k == 1:
            raise Fail(f"batch with exit-1 argmax {am} took exit 1")
        return f"batch with exit-1 argmax {am} (never-exit {sorted(self.never)}) took exit {k} " \
               f"at thresholds 0; {ex.note()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--original", required=True, help="the model given to eexc")
    ap.add_argument("--multi", required=True, help="eexc's multi-output model")
    ap.add_argument("--if", dest="if_", required=True, help="eexc's nested-If model")
    ap.add_argument("--samples", type=int, default=64, help="input rows in all (default 64)")
    ap.add_argument("--trials", type=int, default=64, help="random-threshold runs (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="seed for inputs and thresholds")
    ap.add_argument("--batch", type=int, default=1, help="value of symbolic/unknown dims (default 1)")
    ap.add_argument("--dim", action="append", default=[], metavar="NAME=N",
                    help="value of the symbolic dim NAME (repeatable; overrides --batch)")
    ap.add_argument("--rtol", type=float, default=1e-4,
                    help="allowed max|got-want|/max|want| where not bit-exact (default 1e-4)")
    ap.add_argument("--band", type=float, default=1e-5,
                    help="|confidence - threshold| below which a row may go either way (default 1e-5)")
    ap.add_argument("--inputs", choices=["offset", "white"], default="offset",
                    help="float inputs of rank >= 3: N(0,1) noise plus a per-row, per-channel "
                         "offset (default), or plain white N(0,1) noise")
    ap.add_argument("--exact", action="store_true", help="require bit-exact float outputs")
    ap.add_argument("--ort-opt", choices=["all", "extended", "basic", "disable"], default="all",
                    help="onnxruntime graph optimization level (default all)")
    ap.add_argument("--search", type=int, default=200, metavar="N",
                    help="extra random batches to try when no batch exercises a case (default 200)")
    args = ap.parse_args()
    dims = {}
    for d in args.dim:
        name, _, value = d.partition("=")
        if not name or not value.isdigit():
            ap.error(f"--dim {d!r}: expected NAME=N")
        dims[name] = int(value)
    args.dim = dims
    if args.samples < 1 or args.trials < 0 or args.batch < 1:
        ap.error("--samples and --batch must be >= 1, --trials >= 0")
    try:
        ref = Referee(args)
    except Exception as e:
        print(f"cannot read models: {type(e).__name__}: {first_line(e)}", file=sys.stderr)
        return 2
    return ref.main()


if __name__ == "__main__":
    sys.exit(main())
