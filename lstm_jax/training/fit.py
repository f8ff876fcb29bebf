"""``fit``: the epoch loop around :func:`make_train_step`, with validation, early stopping,
checkpoints and exact resume.

The loop is plain Python around two jitted pure functions (the train step, with the state
donated, and the eval step). Batches follow :func:`lstm_jax.data.batch_order`, a function of
``(seed, epoch)``; dropout keys are folded from the step count. A run is therefore a function
of its arguments, and a run resumed from a checkpoint (which stores the state, the data
position and the history) ends bit-for-bit where the uninterrupted run ends, on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.checkpoint import load_checkpoint, save_checkpoint
from lstm_jax.data.batching import batch_order, num_examples, split_last, take
from lstm_jax.training.place import jit_steps, place
from lstm_jax.training.progress import progress_bar
from lstm_jax.training.step import TrainState, init_train_state, make_eval_step, make_train_step


class FitResult(NamedTuple):
    """What :func:`fit` returns."""

    state: TrainState  # the final train state
    params: Any  # best params by validation loss when validating, else the final params
    history: dict  # per-epoch lists: epoch, step, loss, val_loss (and val_<metric>), time_s
    best_epoch: int | None  # epoch (1-based) of the best validation loss
    stopped_early: bool  # whether `patience` ended the run


def evaluate(eval_step: Callable, params: Any, data: Any, batch_size: int) -> dict[str, float]:
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
    optimizer: optax.GradientTransformation | None = None,
    epochs: int = 10,
    batch_size: int = 32,
    val_data: Any = None,
    val_fraction: float | None = None,
    clip_norm: float | None = None,
    patience: int | None = None,
    min_delta: float = 0.0,
    seed: int = 0,
    shuffle: bool = True,
    key: jax.Array | None = None,
    max_steps: int | None = None,
    checkpoint: str | Path | None = None,
    save_every: int | None = None,
    resume: bool = False,
    config: dict | None = None,
    progress: bool = False,
    mesh: jax.sharding.Mesh | None = None,
) -> FitResult:
    """Trains ``params`` to minimise ``loss_fn`` over mini-batches of ``train_data``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` or ``(loss, metrics)``; with ``key``,
        ``loss_fn(params, batch, key)`` (see :func:`make_train_step`).
      params: initial params pytree.
      train_data: a pytree of arrays sharing the leading (examples) axis, e.g. ``(xs, ys)``.
      optimizer: any optax transformation (default ``optax.adam(1e-3)``); pass a schedule as
        its learning rate for learning-rate schedules.
      epochs: passes over ``train_data``.
      batch_size: examples per step (the last batch of an epoch holds the remainder).
      val_data: validation pytree, evaluated after every epoch.
      val_fraction: instead of ``val_data``, hold out the *last* fraction of ``train_data``
        (chronological for ordered windows; shuffle first for a random split).
      clip_norm: clip gradients to this global L2 norm (``optax.clip_by_global_norm``).
      patience: stop when the validation loss has not improved by ``min_delta`` for this many
        epochs; ``params`` of the result are then the best epoch's.
      seed: fixes the batch order (with ``epoch``).
      shuffle: shuffle the examples every epoch.
      key: PRNG key for stochastic losses (dropout).
      max_steps: stop after this many optimiser steps in total (saving a checkpoint).
      checkpoint: file to save to at every epoch end (and every ``save_every`` steps).
      resume: continue from ``checkpoint`` if it exists.
      config: JSON settings stored in the checkpoint (e.g. the model sizes).
      progress: show a tqdm progress bar with the live loss.
      mesh: train data-parallel (and model-sharded) on this device mesh, from
        :func:`lstm_jax.sharding.make_mesh`; ``batch_size`` must divide by its ``data`` axis.
        ``None``: one device.

    Returns:
      A :class:`FitResult` with the final state, the params to use, and the history.
    """
    _check_fit(epochs, batch_size, patience, max_steps, resume, checkpoint, val_data, val_fraction)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)
    train_data = jax.tree.map(np.asarray, train_data)
    if val_fraction is not None:
        train_data, val_data = split_last(train_data, val_fraction)
    n = num_examples(train_data, "train_data")
    train_step, eval_step = jit_steps(
        make_train_step(loss_fn, optimizer, key=key), make_eval_step(loss_fn), mesh, batch_size
    )

    # A copy, so donating the state to the step never deletes the caller's arrays.
    run = _Run(init_train_state(jax.tree.map(jnp.array, params), optimizer))
    if resume and checkpoint is not None and Path(checkpoint).exists():
        run.restore(checkpoint)
    state = place(run.state, "state", mesh)
    steps_per_epoch = -(-n // batch_size)
    total = (
        epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    )
    bar = progress_bar(progress, total=total, initial=int(state.step), unit="step", leave=False)
    stopped = False
    try:
        while run.epoch < epochs and not run.stopped_early:
            order = batch_order(n, batch_size, seed=seed, epoch=run.epoch, shuffle=shuffle)
            for idx in order[run.batch :]:
                if max_steps is not None and int(state.step) >= max_steps:
                    stopped = True
                    break
                state, metrics = train_step(state, place(take(train_data, idx), "batch", mesh))
                run.acc = run.acc + jnp.stack(
                    [metrics["loss"] * float(len(idx)), jnp.float32(len(idx))]
                )
                run.batch += 1
                bar.update(1)
                if progress and run.batch % 10 == 0:
                    bar.set_postfix(epoch=run.epoch + 1, loss=f"{float(metrics['loss']):.4g}")
                if save_every and checkpoint and int(state.step) % save_every == 0:
                    run.state = state
                    run.save(checkpoint, config)
            run.state = state
            if stopped:
                break
            run.end_epoch(eval_step, val_data, batch_size, patience, min_delta)
            if progress:
                bar.set_postfix(epoch=run.epoch, **_short(run.history))
            if checkpoint is not None:
                run.save(checkpoint, config)
    finally:
        bar.close()
    if stopped and checkpoint is not None:
        run.save(checkpoint, config)
    best = run.best_params if run.best_epoch is not None else run.state.params
    return FitResult(run.state, best, run.history, run.best_epoch, run.stopped_early)


def checkpoint_template(params: Any, optimizer: optax.GradientTransformation) -> dict:
    """The pytree :func:`fit` saves in its checkpoints, for :func:`load_checkpoint`'s ``like``:
    ``{"state": TrainState, "best_params": params, "acc": (2,) float32}``. ``optimizer`` must
    have the structure of the one used in training (including ``clip_norm``'s chain)."""
    return _Run(init_train_state(params, optimizer))._tree()


class _Run:
    """The mutable bookkeeping of one ``fit`` call (host side; never traced)."""

    def __init__(self, state: TrainState):
        self.state = state
        self.epoch, self.batch = 0, 0  # data position: next epoch and batch to run
        self.acc = jnp.zeros((2,), jnp.float32)  # (sum of loss * examples, examples)
        self.history: dict[str, list] = {"epoch": [], "step": [], "loss": [], "time_s": []}
        self.best_params, self.best_val, self.best_epoch = None, float("inf"), None
        self.bad_epochs, self.stopped_early = 0, False
        self.t0 = time.perf_counter()

    def end_epoch(self, eval_step, val_data, batch_size, patience, min_delta):
        acc = np.asarray(self.acc)
        self.epoch, self.batch = self.epoch + 1, 0
        self.acc = jnp.zeros((2,), jnp.float32)
        row = {"epoch": self.epoch, "step": int(self.state.step), "loss": float(acc[0] / acc[1])}
        lr = _learning_rate(self.state.opt_state)
        if lr is not None:
            row["lr"] = lr
        if val_data is not None:
            for k, v in evaluate(eval_step, self.state.params, val_data, batch_size).items():
                row[f"val_{k}"] = v
            if row["val_loss"] < self.best_val - min_delta:
                self.best_val, self.best_epoch, self.bad_epochs = row["val_loss"], self.epoch, 0
                self.best_params = jax.tree.map(jnp.copy, self.state.params)  # state is donated
            else:
                self.bad_epochs += 1
                self.stopped_early = patience is not None and self.bad_epochs >= patience
        row["time_s"] = time.perf_counter() - self.t0
        for k, v in row.items():
            self.history.setdefault(k, []).append(v)

    def _tree(self):
        best = self.state.params if self.best_params is None else self.best_params
        return {"state": self.state, "best_params": best, "acc": self.acc}

    def save(self, path, config):
        meta = {
            "epoch": self.epoch,
            "batch": self.batch,
            "history": self.history,
            "best_val": self.best_val if self.best_epoch is not None else None,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
        }
        save_checkpoint(path, self._tree(), config=config, meta=meta)

    def restore(self, path):
        ckpt = load_checkpoint(path, like=self._tree())
        self.state, self.acc = ckpt.tree["state"], ckpt.tree["acc"]
        meta = ckpt.meta
        self.epoch, self.batch, self.history = meta["epoch"], meta["batch"], meta["history"]
        self.best_epoch, self.bad_epochs = meta["best_epoch"], meta["bad_epochs"]
        self.stopped_early = meta["stopped_early"]
        if self.best_epoch is not None:
            self.best_params, self.best_val = ckpt.tree["best_params"], meta["best_val"]
        self.t0 -= self.history["time_s"][-1] if self.history["time_s"] else 0.0


def _learning_rate(opt_state) -> float | None:
    """The last step's learning rate, when the optimiser was built with
    ``optax.inject_hyperparams`` (the first such state found in ``opt_state``)."""

    def has_lr(node):
        return isinstance(getattr(node, "hyperparams", None), dict)

    for node in jax.tree.leaves(opt_state, is_leaf=has_lr):
        if has_lr(node) and "learning_rate" in node.hyperparams:
            return float(node.hyperparams["learning_rate"])
    return None


def _short(history: dict) -> dict:
    return {k: f"{history[k][-1]:.4g}" for k in ("loss", "val_loss") if k in history}


def _check_fit(epochs, batch_size, patience, max_steps, resume, checkpoint, val_data, val_frac):
    for name, value in [("epochs", epochs), ("batch_size", batch_size)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`fit`: `{name}` must be a positive int; got {value!r}.")
    for name, value in [("patience", patience), ("max_steps", max_steps)]:
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"`fit`: `{name}` must be a positive int or None; got {value!r}.")
    if resume and checkpoint is None:
        raise ValueError("`fit`: `resume=True` needs a `checkpoint` path to resume from.")
    if val_data is not None and val_frac is not None:
        raise ValueError("`fit`: pass either `val_data` or `val_fraction`, not both.")
    if patience is not None and val_data is None and val_frac is None:
        raise ValueError("`fit`: early stopping (`patience`) needs `val_data` or `val_fraction`.")
