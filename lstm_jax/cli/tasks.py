"""The built-in tasks of the ``lstm-jax`` command: data, model, loss, and test metrics.

Every task turns a JSON config (saved in the checkpoint) into a :class:`Prepared` bundle, so
``train``, ``evaluate``, ``forecast`` and ``generate`` rebuild exactly the same model and data
splits from a checkpoint alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from lstm_jax.cli.models import CharLM, Classifier, Forecaster
from lstm_jax.data import (
    BUILTIN,
    Normalizer,
    adding_problem,
    build_vocab,
    fit_normalizer,
    load_csv,
    load_series,
    load_text,
    normalize,
    sine_classification,
    split_windows,
)

SPLIT = (0.7, 0.15, 0.15)  # chronological train / validation / test fractions

DEFAULTS = {
    "forecast": {"hidden": 50, "epochs": 40, "batch_size": 32, "lr": 1e-3, "window": 100},
    "charlm": {"hidden": 128, "epochs": 20, "batch_size": 32, "lr": 3e-3, "window": 100},
    "classify": {"hidden": 32, "epochs": 10, "batch_size": 32, "lr": 3e-3, "window": 60},
    "adding": {"hidden": 64, "epochs": 10, "batch_size": 64, "lr": 3e-3, "window": 50},
    "speech": {"hidden": 64, "epochs": 15, "batch_size": 32, "lr": 4e-3, "window": None},
}


class Prepared(NamedTuple):
    model: Any  # Forecaster | CharLM | Classifier
    loss_fn: Callable  # loss_fn(params, batch)
    train: Any  # pytree of arrays, leading axis = examples
    val: Any
    test: Any
    extra: dict  # task-specific (normaliser, vocab, series, ...)


def prepare(cfg: dict) -> Prepared:
    """Builds the model and the three data splits that ``cfg`` describes; fills in ``cfg``."""
    if cfg["task"] == "speech":  # imported here: cli.speech builds on this module
        from lstm_jax.cli.speech import prepare_speech

        return prepare_speech(cfg)
    return {"forecast": _forecast, "charlm": _charlm, "classify": _classify, "adding": _adding}[
        cfg["task"]
    ](cfg)


def _forecast(cfg: dict) -> Prepared:
    data = cfg.get("data") or "elnino"
    if data in BUILTIN:
        series = load_series(data)
    else:
        series = load_csv(data, cfg.get("columns"), index_column=cfg.get("index_column"))
    values = series.values  # (N, F)
    targets = _target_columns(series.columns, cfg.get("target"))
    if "normalizer" in cfg:
        norm = Normalizer.from_dict(cfg["normalizer"])
    else:  # statistics of the training part only, stored with the model
        norm = fit_normalizer(values[: int(round(SPLIT[0] * len(values)))])
    z = normalize(norm, values)
    parts = split_windows(z, cfg["window"], SPLIT, targets=targets)
    model = Forecaster(values.shape[1], len(targets), cfg["hidden"], cfg["layers"], cfg["cell"])
    cfg.update(
        data=data,
        columns=series.columns,
        target=targets,
        normalizer=norm.to_dict(),
        period=cfg.get("period") or series.period,
    )
    extra = {"series": series, "norm": norm, "targets": targets}
    return Prepared(model, model.loss, parts[0], parts[1], parts[2], extra)


def _target_columns(columns: list[str], target) -> list[int]:
    if target is None:
        return [0]
    out = []
    for t in target if isinstance(target, list) else [target]:
        if isinstance(t, int) and 0 <= t < len(columns):
            out.append(t)
        elif t in columns:
            out.append(columns.index(t))
        else:
            raise ValueError(f"--target {t!r} is not one of the columns read: {columns}.")
    return out


def _charlm(cfg: dict) -> Prepared:
    text = load_text(cfg.get("text"))
    vocab = build_vocab(cfg["vocab"]) if "vocab" in cfg else build_vocab(text)
    tokens = vocab.encode(text)
    K = cfg["window"]
    n = (len(tokens) - 1) // K
    if n < 3:
        raise ValueError(
            f"the text has {len(tokens)} characters; --window {K} needs >= {3 * K + 1}."
        )
    inputs = tokens[: n * K].reshape(n, K)  # (n, K) consecutive non-overlapping windows
    targets = tokens[1 : n * K + 1].reshape(n, K)
    cut1, cut2 = int(round(SPLIT[0] * n)), int(round((SPLIT[0] + SPLIT[1]) * n))
    cut1, cut2 = max(1, min(cut1, n - 2)), max(2, min(cut2, n - 1))
    model = CharLM(vocab.size, cfg["hidden"], cfg["layers"], cfg["cell"])
    cfg.update(vocab=vocab.chars)
    parts = [(inputs[a:b], targets[a:b]) for a, b in [(0, cut1), (cut1, cut2), (cut2, n)]]
    unigram = np.bincount(tokens, minlength=vocab.size) / len(tokens)
    extra = {"vocab": vocab, "unigram": unigram, "prompt": text[:1]}
    return Prepared(model, model.window_loss, parts[0], parts[1], parts[2], extra)


def _synthetic_splits(make, cfg):
    n = cfg.get("n_examples") or 2000
    key = jax.random.key(cfg["seed"])
    return [
        jax.tree.map(np.asarray, make(k, m))
        for k, m in zip(jax.random.split(key, 3), [n, n // 5, n // 5], strict=True)
    ]


def _classify(cfg: dict) -> Prepared:
    T, C = cfg["window"], cfg.get("classes") or 3
    parts = _synthetic_splits(lambda k, m: sine_classification(k, m, T, n_classes=C), cfg)
    model = Classifier(1, C, cfg["hidden"], cfg["layers"], cfg["cell"])
    cfg.update(classes=C)
    return Prepared(model, model.loss, parts[0], parts[1], parts[2], {})


def _adding(cfg: dict) -> Prepared:
    T = cfg["window"]
    parts = _synthetic_splits(lambda k, m: adding_problem(k, m, T), cfg)
    model = Forecaster(2, 1, cfg["hidden"], cfg["layers"], cfg["cell"])
    return Prepared(model, model.loss, parts[0], parts[1], parts[2], {})


def test_metrics(cfg: dict, prep: Prepared, params) -> tuple[list[tuple], dict]:
    """Test-split metrics: ``(rows, flat)``; rows are ``(metric, model, baselines...)``."""
    if cfg["task"] == "speech":
        from lstm_jax.cli.speech import speech_metrics

        return speech_metrics(cfg, prep, params)
    return {
        "forecast": _forecast_metrics,
        "charlm": _charlm_metrics,
        "classify": _classify_metrics,
        "adding": _adding_metrics,
    }[cfg["task"]](cfg, prep, params)


def predict_batched(fn, params, xs, batch_size=256):
    """Outputs of ``fn(params, x) -> (carry, outputs)`` over ``xs`` in batches."""
    f = jax.jit(lambda p, x: fn(p, x)[1])
    return np.concatenate(
        [np.asarray(f(params, xs[i : i + batch_size])) for i in range(0, len(xs), batch_size)]
    )


def _forecast_metrics(cfg, prep, params):
    xs, ys = prep.test
    norm, targets = prep.extra["norm"], prep.extra["targets"]
    mean, std = norm.mean[targets], norm.std[targets]
    pred = predict_batched(prep.model.apply, params, xs) * std + mean  # (M, n_targets)
    truth = ys * std + mean
    last = xs[:, -1, targets] * std + mean  # naive: the last observed value
    out = {"model": pred, "naive (last value)": last}
    period = cfg.get("period")
    if period and period <= xs.shape[1]:
        out[f"seasonal naive (lag {period})"] = xs[:, -period, targets] * std + mean
    flat, rows = {}, []
    for metric, f in [("RMSE", _rmse), ("MAE", _mae)]:
        vals = {name: f(p, truth) for name, p in out.items()}
        rows.append((f"test {metric}", *vals.values()))
        flat.update({f"test_{metric.lower()}_{_slug(k)}": v for k, v in vals.items()})
    header = ["metric", *out.keys()]
    prep.extra.update(pred=pred, truth=truth)
    return [tuple(header), *rows], flat


def _charlm_metrics(cfg, prep, params):
    ce = float(jax.jit(prep.loss_fn)(params, prep.test))  # mean over every test character
    p = prep.extra["unigram"]
    targets = prep.test[1].reshape(-1)
    uni = float(-np.mean(np.log(np.maximum(p[targets], 1e-12))))
    rows = [
        ("metric", "model", "unigram baseline"),
        ("test cross-entropy (nats/char)", ce, uni),
        ("test bits per char", ce / np.log(2), uni / np.log(2)),
    ]
    return rows, {
        "test_nats_per_char": ce,
        "test_bits_per_char": ce / np.log(2),
        "test_unigram_nats_per_char": uni,
    }


def _classify_metrics(cfg, prep, params):
    xs, lengths, labels = prep.test
    logits = np.asarray(jax.jit(prep.model.apply)(params, xs, lengths)[1])
    acc = float(np.mean(np.argmax(logits, -1) == labels))
    majority = float(np.max(np.bincount(labels)) / len(labels))
    rows = [("metric", "model", "majority class"), ("test accuracy", acc, majority)]
    return rows, {"test_accuracy": acc, "test_accuracy_majority": majority}


def _adding_metrics(cfg, prep, params):
    xs, ys = prep.test
    mse = float(np.mean(np.square(predict_batched(prep.model.apply, params, xs) - ys)))
    base = float(np.mean(np.square(ys - 1.0)))
    rows = [("metric", "model", "predict 1.0"), ("test MSE", mse, base)]
    return rows, {"test_mse": mse, "test_mse_predict_mean": base}


def _rmse(p, t) -> float:
    return float(np.sqrt(np.mean(np.square(p - t))))


def _mae(p, t) -> float:
    return float(np.mean(np.abs(p - t)))


def _slug(name: str) -> str:
    return name.split(" (")[0].replace(" ", "_")
