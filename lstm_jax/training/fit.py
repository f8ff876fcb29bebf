"""``fit``: the epoch loop around :func:`make_train_step`, with validation, callbacks,
checkpoints and exact resume.

The loop is plain Python around two jitted pure functions (the train step, with the state
donated, and the eval step). Batches follow :func:`lstm_jax.data.batch_order`, a function of
``(seed, epoch)``; dropout keys are folded from the step count. A run is therefore a function
of its arguments, and a run resumed from a checkpoint (which stores the state, the data
position and the history) ends bit-for-bit where the uninterrupted run ends, on CPU.

Its options come in three groups, as a Keras user knows them: the everyday ones are keywords
of :func:`fit` (``val_data``, ``optimizer``, ``epochs``, ``batch_size``, ``callbacks``); the
rest of the loop is a frozen :class:`FitConfig`, and saving/resuming a :class:`Checkpointing`.
Early stopping, the progress bar and TensorBoard logging are callbacks
(:mod:`lstm_jax.training.callbacks`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lstm_jax.core.validate import check_int, check_key
from lstm_jax.data.batching import batch_order, num_examples, split_last, take
from lstm_jax.training.callbacks import CallbackList, TrainInfo, check_callbacks
from lstm_jax.training.checks import (
    check_clip_norm,
    check_loss_fn,
    check_trainable,
    first_bad_step,
    raise_if_bad,
)
from lstm_jax.training.options import Checkpointing, FitConfig
from lstm_jax.training.place import jit_steps, place
from lstm_jax.training.step import (
    EVAL_WITHOUT_KEY,
    TrainState,
    init_train_state,
    make_eval_step,
    make_train_step,
    train_call,
)


class FitResult(NamedTuple):
    """What :func:`fit` returns."""

    state: TrainState  # the final train state
    params: Any  # best params by validation loss when validating, else the final params
    history: dict  # per-epoch lists: epoch, step, loss, val_loss (and val_<metric>), time_s
    best_epoch: int | None  # epoch (1-based) of the best validation loss; None without val
    stopped_early: bool  # whether a callback (e.g. EarlyStopping) ended the run


def mean_metrics(eval_step: Callable, params: Any, data: Any, batch_size: int) -> dict[str, float]:
    """Example-weighted mean of every metric of ``eval_step`` over ``data``, in batches."""
    n = num_examples(data, "val_data")
    totals: dict[str, Any] = {}
    for idx in batch_order(n, batch_size, seed=0, epoch=0, shuffle=False):
        metrics = eval_step(params, place(take(data, idx), "batch"))
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v * float(len(idx))
    return {k: float(v) / n for k, v in totals.items()}


def fit(
    loss_fn: Callable[..., Any],
    params: Any,
    train_data: Any,
    *,
    val_data: Any = None,
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    key: jax.Array | None = None,
    callbacks: Any = (),
    config: FitConfig | None = None,
    checkpoint: Checkpointing | str | os.PathLike | None = None,
) -> FitResult:
    """Trains ``params`` to minimise ``loss_fn`` over mini-batches of ``train_data``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` or ``(loss, metrics)``; with ``key``,
        ``loss_fn(params, batch, key)`` (see :func:`make_train_step`). Validation calls it
        as ``loss_fn(params, batch)``, so with ``key`` and validation data the key needs a
        default (``key=None``: no dropout).
      params: initial params pytree (floating leaves).
      train_data: a pytree of arrays sharing the leading (examples) axis, e.g. ``(xs, ys)``.
      val_data: validation pytree, evaluated after every epoch; ``result.params`` are then the
        best epoch's.
      optimizer: any optax transformation (default ``optax.adam(1e-3)``); pass a schedule as
        its learning rate for learning-rate schedules.
      epochs: passes over ``train_data``.
      batch_size: examples per step (the last batch of an epoch holds the remainder).
      key: PRNG key for stochastic losses (dropout).
      callbacks: :class:`lstm_jax.Callback` objects called after every step and epoch, e.g.
        ``[lj.EarlyStopping(5), lj.ProgressBar(), lj.TensorBoard("runs/tb")]``.
      config: a :class:`FitConfig` (validation split, shuffling, seed, clipping, step limit,
        device mesh); default ``FitConfig()``.
      checkpoint: a :class:`Checkpointing`, or a path (= ``Checkpointing(path)``).

    Returns:
      A :class:`FitResult` with the final state, the params to use, and the history.

    Raises:
      FloatingPointError: when the training loss (or the validation loss) is NaN or inf; the
        message names the step, and the checkpoint keeps the last good state.
      ValueError, TypeError: for bad arguments, before anything is compiled.
    """
    cfg, ck = _check_fit(epochs, batch_size, config, checkpoint, val_data)
    key = None if key is None else check_key("fit", "key", key)
    hooks = CallbackList(check_callbacks("fit", callbacks))
    optimizer = optimizer_with_clipping("fit", optimizer, cfg.clip_norm)
    check_trainable("fit", params)
    train_data = jax.tree.map(np.asarray, train_data)
    if cfg.val_fraction is not None:
        train_data, val_data = split_last(train_data, cfg.val_fraction)
    n = _count("train_data", train_data)
    if val_data is not None:
        val_data = jax.tree.map(np.asarray, val_data)
        _count("val_data", val_data)
    check_loss_fn("fit", loss_fn, *train_call(key))
    if val_data is not None:  # evaluated without a key; a loss that needs one is refused now
        check_loss_fn("fit", loss_fn, "loss_fn(params, batch)", EVAL_WITHOUT_KEY)
    train_step = make_train_step(loss_fn, optimizer, key=key)
    steps = train_step, (make_eval_step(loss_fn) if val_data is not None else _no_validation)
    train_step, eval_step = jit_steps(*steps, cfg.mesh, batch_size)

    # A copy, so donating the state to the step never deletes the caller's arrays.
    run = _Run(init_train_state(jax.tree.map(jnp.array, params), optimizer), ck)
    if ck is not None and ck.resume and Path(ck.path).exists():
        run.restore()
    run.state = place(run.state, "state", cfg.mesh)
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    total = total if cfg.max_steps is None else min(cfg.max_steps, total)
    info = TrainInfo(epochs, steps_per_epoch, total, run.step, run.history, val_data is not None)
    hooks.train_begin(info)
    try:
        data = (train_data, val_data, n)
        stopped = _loop(run, hooks, data, (train_step, eval_step), epochs, batch_size, cfg)
    finally:
        hooks.train_end(run.history)
    raise_if_bad("fit", run.bad, run.path, run.saved_step)
    if stopped and ck is not None:
        run.save()
    best = run.best_params if run.best_epoch is not None else run.state.params
    return FitResult(run.state, best, run.history, run.best_epoch, run.stopped_early)


def _loop(run, hooks, data, steps, epochs, batch_size, cfg):
    """The epochs; returns whether the run stopped before its last epoch's end."""
    (train_data, val_data, n), (train_step, eval_step) = data, steps
    while run.epoch < epochs and not run.stopped_early:
        order = batch_order(n, batch_size, seed=cfg.seed, epoch=run.epoch, shuffle=cfg.shuffle)
        for idx in order[run.batch :]:
            if cfg.max_steps is not None and run.step >= cfg.max_steps:
                return True
            batch = place(take(train_data, idx), "batch", cfg.mesh)
            run.state, metrics = train_step(run.state, batch)
            run.after_step(metrics, len(idx))
            if hooks.per_step and hooks.step_end(run.step, metrics):
                run.stopped_early = True
                return True
            if run.save_every and run.step % run.save_every == 0:
                run.save()
        run.end_epoch(eval_step, val_data, batch_size)
        if hooks.epoch_end(run.epoch, {k: v[-1] for k, v in run.history.items()}):
            run.stopped_early = True
        if run.path is not None:
            run.save()
    return False


def checkpoint_template(params: Any, optimizer: optax.GradientTransformation) -> dict:
    """The pytree :func:`fit` saves in its checkpoints, for :func:`load_checkpoint`'s ``like``:
    ``{"state": TrainState, "best_params": params, "acc": (2,) float32}``. ``optimizer`` must
    have the structure of the one used in training (including ``clip_norm``'s chain)."""
    return _Run(init_train_state(params, optimizer), None)._tree()


def optimizer_with_clipping(where: str, optimizer: Any, clip_norm: Any = None):
    """``optimizer`` (default ``optax.adam(1e-3)``) after global-norm clipping at ``clip_norm``
    (when not None), with clear errors for either."""
    clip_norm = check_clip_norm(where, clip_norm)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"`{where}`: `optimizer` must be an optax.GradientTransformation (e.g. "
            f"`optax.adam(1e-3)`); got {type(optimizer).__name__}."
        )
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    return optimizer


def _count(name: str, data: Any) -> int:
    n = num_examples(data, name)
    if n == 0:
        shapes = [tuple(np.shape(a)) for a in jax.tree.leaves(data)]
        raise ValueError(
            f"`fit`: `{name}` holds no examples (leading axis 0); got shapes {shapes}."
        )
    return n


class _Run:
    """The mutable bookkeeping of one ``fit`` call (host side; never traced)."""

    def __init__(self, state: TrainState, ck: Checkpointing | None):
        self.state, self.step = state, int(state.step)  # host copy of the step count
        self.path = None if ck is None else ck.path
        self.save_every = None if ck is None else ck.save_every
        self.config = {} if ck is None or ck.config is None else ck.config
        self.epoch, self.batch = 0, 0  # data position: next epoch and batch to run
        self.acc = jnp.zeros((2,), jnp.float32)  # (sum of loss * examples, examples)
        self.bad = jnp.zeros((), jnp.int32)  # first step with a non-finite loss, 0 if none
        self.saved_step: int | None = None  # step of the last checkpoint written or read
        self.history: dict[str, list] = {"epoch": [], "step": [], "loss": [], "time_s": []}
        self.best_params, self.best_val, self.best_epoch = None, math.inf, None
        self.stopped_early = False
        self.t0 = time.perf_counter()

    def after_step(self, metrics: dict, size: int) -> None:
        self.step, self.batch = self.step + 1, self.batch + 1
        self.acc, self.bad = _tally(self.acc, self.bad, metrics["loss"], size, self.step)

    def end_epoch(self, eval_step, val_data, batch_size):
        raise_if_bad("fit", self.bad, self.path, self.saved_step)
        acc = np.asarray(self.acc)
        self.epoch, self.batch = self.epoch + 1, 0
        self.acc = jnp.zeros((2,), jnp.float32)
        row = {"epoch": self.epoch, "step": self.step, "loss": float(acc[0] / acc[1])}
        lr = _learning_rate(self.state.opt_state)
        if lr is not None:
            row["lr"] = lr
        if val_data is not None:
            for k, v in mean_metrics(eval_step, self.state.params, val_data, batch_size).items():
                row[f"val_{k}"] = v
            if not math.isfinite(row["val_loss"]):
                raise FloatingPointError(
                    f"`fit`: the validation loss is {row['val_loss']} after epoch {self.epoch} "
                    f"(step {self.step}) while the training loss is {row['loss']:.4g}; check "
                    "`val_data` for NaN/inf."
                )
            if row["val_loss"] < self.best_val:
                self.best_val, self.best_epoch = row["val_loss"], self.epoch
                self.best_params = jax.tree.map(jnp.copy, self.state.params)  # state is donated
        row["time_s"] = time.perf_counter() - self.t0
        for k, v in row.items():
            self.history.setdefault(k, []).append(v)

    def _tree(self):
        best = self.state.params if self.best_params is None else self.best_params
        return {"state": self.state, "best_params": best, "acc": self.acc}

    def save(self):
        raise_if_bad("fit", self.bad, self.path, self.saved_step)  # never save a NaN state
        meta = {
            "epoch": self.epoch,
            "batch": self.batch,
            "history": self.history,
            "best_val": self.best_val if self.best_epoch is not None else None,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }
        save_checkpoint(self.path, self._tree(), config=self.config, meta=meta)
        self.saved_step = self.step

    def restore(self):
        ckpt = load_checkpoint(self.path, like=self._tree())
        meta = ckpt.meta
        need = ("epoch", "batch", "history", "best_epoch", "best_val", "stopped_early")
        missing = [k for k in need if k not in meta]
        if missing:
            raise CheckpointError(
                f"{self.path} is not a checkpoint written by `fit` (its metadata lacks "
                f"{missing}); resume from a `fit` checkpoint or start a new run."
            )
        self.state, self.acc = ckpt.tree["state"], ckpt.tree["acc"]
        self.step = self.saved_step = int(self.state.step)
        self.epoch, self.batch, self.history = meta["epoch"], meta["batch"], meta["history"]
        self.best_epoch, self.stopped_early = meta["best_epoch"], meta["stopped_early"]
        if self.best_epoch is not None:
            self.best_params, self.best_val = ckpt.tree["best_params"], meta["best_val"]
        self.t0 -= self.history["time_s"][-1] if self.history["time_s"] else 0.0


@jax.jit
def _tally(acc, bad, loss, size, step):
    """Adds a step's loss to the epoch's ``(sum of loss * examples, examples)`` and notes the
    first non-finite one: one dispatch per step, on device, so the loop never waits for it."""
    loss = loss.astype(jnp.float32)
    size, step = jnp.asarray(size, jnp.float32), jnp.asarray(step, jnp.int32)
    return acc + jnp.stack([loss * size, size]), first_bad_step(bad, loss, step)


def _learning_rate(opt_state) -> float | None:
    """The last step's learning rate, when the optimiser was built with
    ``optax.inject_hyperparams`` (the first such state found in ``opt_state``)."""

    def has_lr(node):
        return isinstance(getattr(node, "hyperparams", None), dict)

    for node in jax.tree.leaves(opt_state, is_leaf=has_lr):
        if has_lr(node) and "learning_rate" in node.hyperparams:
            return float(node.hyperparams["learning_rate"])
    return None


def _no_validation(params, batch):
    raise AssertionError("fit evaluates only when it has validation data")


def _check_fit(epochs, batch_size, config, checkpoint, val_data):
    check_int("fit", "epochs", epochs)
    check_int("fit", "batch_size", batch_size)
    cfg = FitConfig() if config is None else config
    if not isinstance(cfg, FitConfig):
        raise TypeError(
            f"`fit`: `config` must be an `lstm_jax.FitConfig`; got {type(config).__name__}. "
            "(The JSON settings stored in a checkpoint go in `Checkpointing(config=...)`.)"
        )
    ck = checkpoint
    if isinstance(ck, (str, os.PathLike)):
        ck = Checkpointing(ck)
    if ck is not None and not isinstance(ck, Checkpointing):
        raise TypeError(
            "`fit`: `checkpoint` must be an `lstm_jax.Checkpointing`, a file path or None; got "
            f"{type(checkpoint).__name__}."
        )
    if val_data is not None and cfg.val_fraction is not None:
        raise ValueError(
            "`fit`: pass either `val_data` or `FitConfig(val_fraction=...)`, not both."
        )
    return cfg, ck
