"""Second referee for emitted models: OpenVINO beside ONNX Runtime, and the simplifiers
users chain after eexc (onnxslim, onnxsim).

Usage:
    python tests/python/check_second_runtime.py MODEL.onnx [MODEL.onnx ...]
        [--batches 1,5] [--rtol 1e-4] [--simplifiers] [--expect-unsupported NAME,...]

For each model, ONNX Runtime (CPU, default session options) and OpenVINO (CPU plugin,
inference precision f32: on CPUs with bf16 or fp16 units OpenVINO otherwise runs in that
precision, which moves logits by about 1e-2) run the same seeded inputs at each batch size
(where the batch dimension is symbolic; float inputs standard normal, integer inputs token
ids in [0, 10)). Every output must agree: integer and boolean outputs (the exit index, the
prediction) exactly, float outputs within rtol * max|ONNX Runtime| + 1e-5.

With --simplifiers, each model also goes through onnxslim.slim and onnxsim.simplify; the
result must pass the onnx checker, keep its inputs (the exit knobs are graph inputs with
defaults), its outputs and its control flow (as many If and
Loop nodes, counted in every graph, as the input has: the exits are still there), and give
ONNX Runtime's outputs on the input model.

A model whose file name is listed in --expect-unsupported must fail to load or run in
OpenVINO (the line says why); any other failure is a FAIL. Prints one `ok:`, `FAIL:` or
`unsupported:` line per check and ends with `N passed, M failed`; exits 1 on a failure.
"""

import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import openvino as ov


def feeds(session, batch, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for inp in session.get_inputs():
        shape = [batch if not isinstance(d, int) else d for d in inp.shape]
        if "int" in inp.type:
            out[inp.name] = rng.integers(0, 10, size=shape).astype(np.int64)
        else:
            out[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def why(error):
    """The informative line of an exception: OpenVINO's messages open with a stack of
    `Exception from src/...` lines."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    told = [ln for ln in lines if not ln.startswith("Exception from")]
    return (told[0] if told else lines[-1] if lines else type(error).__name__)[:300]


def has_symbolic_batch(session):
    return any(not isinstance(i.shape[0], int) for i in session.get_inputs() if i.shape)


def agree(name, want, got, rtol):
    """None when `got` equals `want` as the module docstring says, else the reason."""
    want, got = np.asarray(want), np.asarray(got)
    if want.shape != got.shape:
        return f"{name}: shape {got.shape}, ONNX Runtime {want.shape}"
    if want.dtype.kind in "iub":
        if not np.array_equal(want, got.astype(want.dtype)):
            return f"{name}: {int((want != got).sum())} of {want.size} values differ"
        return None
    if want.size == 0:
        return None
    scale = float(np.abs(want).max())
    err = float(np.abs(want.astype(np.float64) - got.astype(np.float64)).max())
    if err > rtol * scale + 1e-5:
        return f"{name}: max difference {err:.3e} (max |value| {scale:.3e})"
    return None


def control_flow(model):
    counts = {"If": 0, "Loop": 0}

    def walk(graph):
        for node in graph.node:
            if node.op_type in counts:
                counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(model.graph)
    return counts


def ort_session(model):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def simplified(tool, model):
    if tool == "onnxslim":
        import onnxslim

        return onnxslim.slim(model)
    import onnxsim

    out, checked = onnxsim.simplify(model)
    if not checked:
        raise RuntimeError("onnxsim's own check failed")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batches", default="1,5")
    ap.add_argument("--rtol", type=float, default=1e-4)
    ap.add_argument("--simplifiers", action="store_true")
    ap.add_argument("--expect-unsupported", default="")
    a = ap.parse_args()
    unsupported = set(filter(None, a.expect_unsupported.split(",")))
    core = ov.Core()
    passed = failed = 0

    def report(ok, line):
        nonlocal passed, failed
        print(("ok: " if ok else "FAIL: ") + line)
        passed += ok
        failed += not ok

    for path in a.models:
        name = os.path.basename(path)
        reference = ort_session(path)
        batches = [int(b) for b in a.batches.split(",")] if has_symbolic_batch(reference) else [None]
        inputs = [feeds(reference, b, seed) for seed, b in enumerate(batches)]
        wants = [reference.run(None, f) for f in inputs]
        out_names = [o.name for o in reference.get_outputs()]
        try:
            compiled = core.compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            gots = []
            for f in inputs:
                result = compiled(f)
                gots.append([result[compiled.output(n)] for n in out_names])
        except Exception as e:  # OpenVINO raises its own RuntimeError subclasses
            reason = why(e)
            if name in unsupported:
                print(f"unsupported: {name} in OpenVINO {ov.__version__}, as expected: {reason}")
                passed += 1
            else:
                report(False, f"{name}: OpenVINO {ov.__version__} cannot run it: {reason}")
            gots = None
        if gots is not None:
            if name in unsupported:
                report(False, f"{name}: expected OpenVINO to refuse it, but it ran")
            else:
                problems = [p for want, got in zip(wants, gots) for n, w, g in zip(out_names, want, got)
                            if (p := agree(n, w, g, a.rtol))]
                shown = ", ".join(str(b) for b in batches if b is not None) or "fixed"
                report(not problems, f"{name}: OpenVINO {ov.__version__} equals ONNX Runtime "
                       f"(batch {shown}; {len(out_names)} outputs)" if not problems
                       else f"{name}: OpenVINO differs: {'; '.join(problems[:3])}")
        if not a.simplifiers:
            continue
        original = onnx.load(path)
        before = control_flow(original)
        for tool in ("onnxslim", "onnxsim"):
            try:
                small = simplified(tool, onnx.load(path))
                onnx.checker.check_model(small, full_check=True)
                session = ort_session(small)
            except Exception as e:
                report(False, f"{name}: {tool}: {why(e)}")
                continue
            after = control_flow(small)
            problems = []
            if [o.name for o in session.get_outputs()] != out_names:
                problems.append(f"outputs {[o.name for o in session.get_outputs()]}, expected {out_names}")
            inputs_before = [i.name for i in reference.get_inputs()]
            if [i.name for i in session.get_inputs()] != inputs_before:
                problems.append(f"inputs {[i.name for i in session.get_inputs()]}, expected {inputs_before} "
                                "(the exit knobs are inputs with defaults)")
            if after != before:
                problems.append(f"control flow {after}, the input has {before}")
            for f, want in zip(inputs, wants):
                got = session.run(None, f)
                problems += [p for n, w, g in zip(out_names, want, got) if (p := agree(n, w, g, a.rtol))]
            nodes = (len(original.graph.node), len(small.graph.node))
            report(not problems, f"{name}: {tool} keeps the outputs, the exits ({before['If']} If, "
                   f"{before['Loop']} Loop) and the results (main graph {nodes[0]} -> {nodes[1]} nodes)"
                   if not problems else f"{name}: {tool}: {'; '.join(problems[:3])}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
