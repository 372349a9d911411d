"""eexc: an early-exit compiler for ONNX classifiers, from Python.

Each function runs the eexc command of the same name in this process (the Rust library,
no subprocess) and returns what it made::

    import eexc
    r = eexc.compile("model.onnx", x_train, y_train, calib_data=x_cal, calib_labels=y_cal,
                     max_drop="1%")
    open("model.ee.onnx", "wb").write(r.model)
    print(r.report["savings"])

Models are a path, the model's bytes, or an ``onnx.ModelProto``; sample data is a path to
an .npy/.npz file, a numpy array, or (for a model with several data inputs, such as
``input_ids`` and ``attention_mask``) a dict of arrays named after the inputs. Keyword arguments beyond the typed ones become the
command's flags (``keep_exits=True`` is ``--keep-exits``, ``at=["a", "b"]`` is
``--at a,b``); ``eexc <command> --help`` lists them. A command that fails raises
:class:`EexcError` with its one-line message; its warnings become Python warnings.

A model given as bytes or a ModelProto is written to a scratch folder first, so weights
it keeps in external data files must be given as a path instead. While a command runs,
this process's stdout and stderr (file descriptors 1 and 2) are redirected to capture what
it prints (``Result.text``), so other threads' output in that time is captured too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from . import _eexc

__version__ = _eexc.__version__

ModelLike = Union[str, os.PathLike, bytes, Any]  # Any: an onnx.ModelProto
ArrayLike = Union[str, os.PathLike, Any]  # Any: a numpy array, or a dict of them by input name


class EexcError(RuntimeError):
    """A command that could not run (``code`` 2) or whose gate failed (``code`` 1)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Result:
    """What a command made: the output file's bytes (the model, or the heads for
    :func:`fit`), its path when ``output`` was given, the JSON report as a dict, and the
    text the command printed."""

    model: Optional[bytes]
    report: dict
    text: str
    path: Optional[str] = None


def _flags(options: dict) -> list:
    args = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return args


class _Scratch:
    """A scratch folder for the inputs given in memory and the outputs read back."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="eexc-")
        self.path = Path(self._dir.name)

    def model(self, model: ModelLike, name: str = "model.onnx") -> str:
        if isinstance(model, (str, os.PathLike)):
            return os.fspath(model)
        data = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        target = self.path / name
        target.write_bytes(bytes(data))
        return str(target)

    def array(self, array: ArrayLike, name: str) -> str:
        if isinstance(array, (str, os.PathLike)):
            return os.fspath(array)
        import numpy as np

        if isinstance(array, Mapping):
            # One array per data input (token ids and an attention mask), named after it.
            target = self.path / f"{name}.npz"
            np.savez(target, **{k: np.asarray(v) for k, v in array.items()})
            return str(target)
        target = self.path / f"{name}.npy"
        np.save(target, np.asarray(array))
        return str(target)

    def arrays(self, **named) -> list:
        """`--name path` for each array given (None: left out), in the order named."""
        args = []
        for name, array in named.items():
            if array is not None:
                args += ["--" + name.replace("_", "-"), self.array(array, name)]
        return args

    def close(self):
        self._dir.cleanup()


def _caller_level() -> int:
    """The stack level of the first frame outside this module, for warnings.warn called
    from _run: the warning points at the user's line."""
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


def _run(args: Sequence[str]) -> str:
    """Runs the command line in-process; returns what it printed on stdout. Its stderr
    is read back too: warnings become Python warnings, an error an EexcError."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            code, message = _eexc.run([str(a) for a in args])
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    for line in errors.splitlines():
        if line.startswith("eexc: WARNING: "):
            warnings.warn(line[len("eexc: WARNING: "):], stacklevel=_caller_level())
    if code != 0:
        raise EexcError(message or errors.strip() or f"eexc exited with {code}", code)
    return text


def _with_output(command: str, args: list, output, scratch: _Scratch, default_name: str,
                 report_flag: bool = True) -> Result:
    out_path = os.fspath(output) if output is not None else str(scratch.path / default_name)
    report_path = scratch.path / "report.json"
    full = [command] + args + ["-o", out_path]
    if report_flag:
        full += ["--report", str(report_path)]
    text = _run(full)
    report = json.loads(report_path.read_text()) if report_flag and report_path.exists() else {}
    data = Path(out_path).read_bytes() if Path(out_path).exists() else None
    return Result(model=data, report=report, text=text, path=out_path if output is not None else None)


def inspect(model: ModelLike) -> dict:
    """``eexc inspect --json``: the model's inputs, outputs, costs and exit candidates."""
    scratch = _Scratch()
    try:
        return json.loads(_run(["inspect", scratch.model(model), "--json"]))
    finally:
        scratch.close()


def insert_exits(model: ModelLike, *, at: Optional[Sequence[str]] = None, auto: Optional[int] = None,
                 mode: str = "if", output=None, **options) -> Result:
    """``eexc insert-exits``: the early-exit (or multi-output) model and its cost report.
    ``weights`` (heads file), ``threshold``, ``head``, ``confidence``... as the command."""
    scratch = _Scratch()
    try:
        args = [scratch.model(model)] + _flags({"at": at, "mode": mode, **options})
        if auto is not None:
            args += ["--auto", str(auto)]
        return _with_output("insert-exits", args, output, scratch, "model.ee.onnx")
    finally:
        scratch.close()


def optimize(model: ModelLike, *, output=None, **options) -> Result:
    """``eexc optimize``: the e-graph fusion rules over a whole model."""
    scratch = _Scratch()
    try:
        return _with_output("optimize", [scratch.model(model)] + _flags(options), output, scratch,
                            "model.opt.onnx")
    finally:
        scratch.close()


def fit(model: ModelLike, data: Optional[ArrayLike] = None, labels: Optional[ArrayLike] = None, *,
        at: Optional[Sequence[str]] = None, auto: Optional[int] = None, output=None,
        **options) -> Result:
    """``eexc fit``: exit heads trained on ``data`` (rows first; labels optional), or on
    ``outputs="DIR"``, the shards of the pass model's outputs (see :func:`pass_model`).
    The result's ``model`` is the heads file (safetensors) that
    ``insert_exits(weights=...)`` takes."""
    scratch = _Scratch()
    try:
        args = [scratch.model(model)] + scratch.arrays(data=data, labels=labels)
        args += _flags({"at": at, **options})
        if auto is not None:
            args += ["--auto", str(auto)]
        return _with_output("fit", args, output, scratch, "heads.safetensors")
    finally:
        scratch.close()


def calibrate(model: ModelLike, data: Optional[ArrayLike] = None, labels: Optional[ArrayLike] = None,
              *, max_drop: Optional[str] = None, max_disagree: Optional[str] = None,
              output=None, **options) -> Result:
    """``eexc calibrate``: temperatures and certified thresholds on an early-exit model
    (``max_drop="1%"`` needs labels; ``delta``, ``thresholds``, ``certify_with``...), from
    ``data`` or from ``outputs="DIR"``, the shards of its pass model's outputs."""
    scratch = _Scratch()
    try:
        args = [scratch.model(model)] + scratch.arrays(data=data, labels=labels)
        args += _flags({"max_drop": max_drop, "max_disagree": max_disagree, **options})
        return _with_output("calibrate", args, output, scratch, "model.calibrated.onnx")
    finally:
        scratch.close()


def pass_model(command: str, model: ModelLike, output, *, at: Optional[Sequence[str]] = None,
               auto: Optional[int] = None, **options) -> str:
    """``eexc fit|calibrate --pass-model``: writes to ``output`` the model whose outputs
    ``command`` reads (for fit, pass the same ``at``/``auto``/``head`` as to :func:`fit`),
    for any runtime to run over the rows. Save each batch's outputs (a dict of output name
    to array, rows first, e.g. ``np.savez``) as one shard in a folder, file names in row
    order; then :func:`manifest`, and ``fit``/``calibrate`` with ``outputs=folder``.
    Returns the text the command printed."""
    if command not in ("fit", "calibrate"):
        raise ValueError(f"command must be 'fit' or 'calibrate', not {command!r}")
    scratch = _Scratch()
    try:
        args = [command, scratch.model(model), "--pass-model", os.fspath(output)]
        args += _flags({"at": at, **options})
        if auto is not None:
            args += ["--auto", str(auto)]
        return _run(args)
    finally:
        scratch.close()


def manifest(folder, pass_model, labels: Optional[str] = None) -> dict:
    """``eexc manifest``: writes ``folder/manifest.json`` for the shards in ``folder``
    (``.npz`` or ``.safetensors``, in file-name order), checked against ``pass_model``'s
    outputs; ``labels`` names the array in each shard that holds the rows' labels.
    Returns the manifest."""
    args = ["manifest", os.fspath(folder), "--pass-model", os.fspath(pass_model)]
    if labels is not None:
        args += ["--labels", labels]
    _run(args)
    return json.loads((Path(os.fspath(folder)) / "manifest.json").read_text())


def compile(model: ModelLike, data: ArrayLike, labels: Optional[ArrayLike] = None, *,
            calib_data: Optional[ArrayLike] = None, calib_labels: Optional[ArrayLike] = None,
            max_drop: Optional[str] = None, max_disagree: Optional[str] = None,
            at: Optional[Sequence[str]] = None, auto: Optional[int] = None,
            output=None, **options) -> Result:
    """``eexc compile``: fit, insert, choose the exits that pay and certify them in one
    step. A failed ``fail_under_savings`` gate raises EexcError with ``code`` 1."""
    scratch = _Scratch()
    try:
        args = [scratch.model(model)] + scratch.arrays(
            data=data, labels=labels, calib_data=calib_data, calib_labels=calib_labels)
        args += _flags({"max_drop": max_drop, "max_disagree": max_disagree, "at": at, **options})
        if auto is not None:
            args += ["--auto", str(auto)]
        return _with_output("compile", args, output, scratch, "model.ee.onnx")
    finally:
        scratch.close()


def eval(model: ModelLike, data: ArrayLike, labels: Optional[ArrayLike] = None, *,
         baseline: Optional[ModelLike] = None, **options) -> dict:
    """``eexc eval --json``: accuracy, exits taken and latency (ONNX Runtime where its
    library is found, else tract), against ``baseline`` when given."""
    scratch = _Scratch()
    try:
        args = ["eval", scratch.model(model), "--json"] + scratch.arrays(data=data, labels=labels)
        if baseline is not None:
            args += ["--baseline", scratch.model(baseline, "baseline.onnx")]
        return json.loads(_run(args + _flags(options)))
    finally:
        scratch.close()


def cost(model: ModelLike, exit_dist: Optional[Sequence[float]] = None) -> dict:
    """``eexc cost --json``: an eexc model's cost report, under an exit distribution."""
    scratch = _Scratch()
    try:
        return json.loads(_run(["cost", scratch.model(model), "--json"] + _flags({"exit_dist": exit_dist})))
    finally:
        scratch.close()


def _command_line() -> None:
    """The ``eexc`` console script: the command line, as the Rust binary runs it."""
    code, _ = _eexc.run(sys.argv[1:])
    sys.exit(code)
