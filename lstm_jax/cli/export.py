"""``lstm-jax export RUN --format onnx|stablehlo [--out FILE]``: a trained run as a file to
deploy, checked against JAX on the run's own test split.

The run's best params are restored from its checkpoint as ``lstm-jax evaluate`` does; the
model is written with :func:`lstm_jax.export.to_onnx` (then run in onnxruntime) or
:func:`lstm_jax.export.to_stablehlo` (then reloaded and run), and the largest absolute
difference of its outputs from the jitted JAX model on the test inputs is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_info
from lstm_jax.cli.commands import CHECKPOINT, make_optimizer
from lstm_jax.cli.models import init_params
from lstm_jax.cli.tasks import prepare
from lstm_jax.training.fit import checkpoint_template

FORMATS = {"onnx": ".onnx", "stablehlo": ".stablehlo"}
BATCH = 256  # examples per call when comparing on the test split


def add_parser(sub) -> argparse.ArgumentParser:
    ex = sub.add_parser("export", help="write a trained run as ONNX or StableHLO")
    ex.add_argument("checkpoint", help="a run directory or its checkpoint.msgpack")
    ex.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    ex.add_argument("--out", help="the file to write (default: <run>/model.onnx|.stablehlo)")
    return ex


def export(args) -> None:
    cfg, prep, params, where = _restore(args.checkpoint)
    if cfg["task"] not in ("forecast", "charlm", "classify", "adding"):
        raise ValueError(f"export: the {cfg['task']!r} task's model has no export yet.")
    out = Path(args.out) if args.out else where / f"model{FORMATS[args.format]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = _test_inputs(cfg, prep)
    want = _predict(jax.jit(lambda p, *a: prep.model.apply(p, *a)[1]), params, inputs)
    if args.format == "onnx":
        got = _onnx(prep.model, params, out, inputs)
        peer = "onnxruntime"
    else:
        got = _stablehlo(prep.model, params, out, inputs)
        peer = "reloaded StableHLO"
    diff = float(np.max(np.abs(got - want)))
    n = len(inputs[0])
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB, {args.format})")
    print(f"largest |{peer} - JAX| over {n} test examples: {diff:.3g}")


def _restore(path_text: str):
    path = Path(path_text)
    path = path / CHECKPOINT if path.is_dir() else path
    cfg, _ = read_checkpoint_info(path)
    prep = prepare(cfg)
    like = checkpoint_template(init_params(prep.model, 0), make_optimizer(cfg, 1))
    try:
        tree = load_checkpoint(path, like).tree
    except CheckpointError as e:
        raise CheckpointError(f"{e} (was the file written by another version?)") from None
    return cfg, prep, tree["best_params"], path.parent


def _test_inputs(cfg, prep) -> tuple[np.ndarray, ...]:
    """The model's inputs on the test split: ``(xs,)``, or ``(xs, lengths)`` to classify."""
    test = prep.test
    if cfg["task"] == "classify":
        return np.asarray(test[0], np.float32), np.asarray(test[1], np.int32)
    if cfg["task"] == "charlm":
        return (np.asarray(test[0], np.int32),)
    return (np.asarray(test[0], np.float32),)


def _predict(fn, params, inputs) -> np.ndarray:
    n = len(inputs[0])
    return np.concatenate(
        [
            np.asarray(fn(params, *(jnp.asarray(a[i : i + BATCH]) for a in inputs)))
            for i in range(0, n, BATCH)
        ]
    )


def _onnx(model, params, out: Path, inputs) -> np.ndarray:
    import onnxruntime as ort

    from lstm_jax.export import to_onnx

    to_onnx(model, params, out)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]

    def run(_, *batch):
        feeds = {
            name: np.asarray(a, np.int64 if name == "tokens" else a.dtype)
            for name, a in zip(names, batch, strict=True)
        }
        return sess.run(["y"], feeds)[0]

    return _predict(run, None, inputs)


def _stablehlo(model, params, out: Path, inputs) -> np.ndarray:
    from lstm_jax.export import load_stablehlo, to_stablehlo

    to_stablehlo(model, params, out, lengths=len(inputs) > 1)
    fn = load_stablehlo(out)
    return _predict(lambda _, *batch: fn(*batch), None, inputs)
