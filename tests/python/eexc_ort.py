"""Helpers shared by the early-exit referees and benchmarks: ONNX Runtime sessions
that accept eexc's knobs, the decision's confidence in numpy, and a pass/fail tally."""

import json

import numpy as np
import onnx
import onnxruntime as ort


def session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run(sess, feeds, outputs=None):
    """Runs `sess` on the feeds it takes (the knobs are initializers that are
    also inputs: ORT lists them apart from the inputs); returns {name: array}."""
    wanted = {i.name for i in sess.get_inputs() + sess.get_overridable_initializers()}
    names = outputs or [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {k: v for k, v in feeds.items() if k in wanted})))


def exits_metadata(model):
    """The `eexc.exits` metadata of a loaded model."""
    return json.loads({p.key: p.value for p in model.metadata_props}["eexc.exits"])


def threshold_knobs(exits, thresholds, temperatures=None):
    out = {e["threshold_input"]: np.array(t, dtype=np.float32) for e, t in zip(exits, thresholds)}
    if temperatures is not None:
        out.update({e["temperature_input"]: np.array(t, dtype=np.float32) for e, t in zip(exits, temperatures)})
    return out


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def confidence(kind, z):
    """Per-row confidence of temperature-scaled logits z [rows, C], in float64."""
    p = softmax(z.astype(np.float64))
    if kind == "maxprob":
        return p.max(axis=1)
    if kind == "entropy":
        h = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)
        return 1.0 - h / np.log(p.shape[1])
    top = np.sort(p, axis=1)
    return top[:, -1] - top[:, -2]


def real_inputs(model):
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


class Tally:
    """Prints `ok: NAME: detail` / `FAIL: NAME: reason` and the closing count."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def report(self, name, ok, detail):
        print(f"{'ok' if ok else 'FAIL'}: {name}: {detail}")
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def checker(self, model):
        """onnx.checker full_check; False (and a FAIL line) when it refuses."""
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as e:  # noqa: BLE001 - any checker failure is a finding
            self.report("checker+ort", False, str(e).splitlines()[0])
            return False
        self.report("checker+ort", True, "checker full_check passes; ORT loaded it")
        return True

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def random_feeds(model, rng, batch, int_high, row_offsets):
    """Random inputs for `model`'s real inputs: symbolic dims become `batch`,
    integers are drawn from [0, int_high), floats are N(0, 1); with
    `row_offsets`, float inputs of rank >= 3 (images) also get a per-row,
    per-channel N(0, 1) offset, so that pooled features differ by row."""
    out = {}
    for i in real_inputs(model):
        tt = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.integer):
            out[i.name] = rng.integers(0, int_high, size=shape).astype(dtype)
        elif row_offsets and len(shape) >= 3:
            offset = rng.normal(size=shape[:2] + [1] * (len(shape) - 2))
            out[i.name] = (rng.normal(size=shape) + offset).astype(dtype)
        else:
            out[i.name] = rng.normal(size=shape).astype(dtype)
    return out


class Referee:
    """What every early-exit referee opens: the models named by `roles`
    (attributes of `args`), ORT sessions on them, the `eexc.exits` metadata
    of `subject` (which must be of `mode`), a seeded generator and a tally."""

    def __init__(self, args, roles, subject, mode):
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        self.models = {k: onnx.load(getattr(args, k)) for k in roles}
        self.meta = exits_metadata(self.models[subject])
        if self.meta["mode"] != mode:
            raise ValueError(f"{subject.upper()}'s metadata says mode {self.meta['mode']!r}")
        self.exits = self.meta["exits"]
        self.sessions = {k: session(getattr(args, k)) for k in roles}
        self.tally = Tally()
        self.report = self.tally.report

    def run(self, which, feeds):
        return run(self.sessions[which], feeds)

    def finish(self):
        return self.tally.finish()
