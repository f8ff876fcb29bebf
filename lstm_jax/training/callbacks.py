"""Callbacks of the training loops: code run after every step and every epoch, as in Keras.

A callback subclasses :class:`Callback` and overrides any of four hooks; :func:`lstm_jax.fit`
and :func:`lstm_jax.fit_tbptt` call them in the order the callbacks are listed:

- ``on_train_begin(info)``: once, before the first step; ``info`` is a :class:`TrainInfo`
  (with the history so far when a run is resumed, so a callback can rebuild its state).
- ``on_step_end(step, metrics)``: after every optimiser step; ``step`` counts steps from 1
  and ``metrics`` holds the step's scalars as JAX arrays (``loss``, ``grad_norm``, the loss's
  own metrics). ``float(v)`` waits for the step to finish, so convert only what you log.
- ``on_epoch_end(epoch, logs)``: after every epoch (1-based), with the epoch's row of the
  history as Python floats (``loss``, ``val_loss``, ``val_<metric>``, ``lr``, ``time_s``).
- ``on_train_end(history)``: once at the end, also when training stops with an error (close
  files here).

``on_step_end`` and ``on_epoch_end`` return ``True`` to stop training (the loop saves its
checkpoint first); ``None`` or ``False`` to go on. The built-in ones: :class:`EarlyStopping`,
:class:`ProgressBar` (tqdm) and :class:`TensorBoard` (tensorboardX).

    >>> import lstm_jax as lj
    >>> class StopAt(lj.Callback):
    ...     def on_step_end(self, step, metrics):
    ...         return step >= 3
    >>> isinstance(StopAt(), lj.Callback)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from lstm_jax.core.validate import check_float, check_int


class TrainInfo(NamedTuple):
    """What :meth:`Callback.on_train_begin` is told about the run."""

    epochs: int  # epochs the run trains to
    steps_per_epoch: int  # optimiser steps of one epoch
    total_steps: int  # steps the run will have taken when it ends (unless stopped)
    initial_step: int  # steps already taken (> 0 when resumed)
    history: dict  # per-epoch lists so far (empty unless resumed)
    validating: bool  # whether the loop evaluates validation data (val_* columns)


class Callback:
    """Base class of training callbacks; every hook does nothing unless overridden."""

    def on_train_begin(self, info: TrainInfo) -> None:
        pass

    def on_step_end(self, step: int, metrics: dict) -> bool | None:
        return None

    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None:
        return None

    def on_train_end(self, history: dict) -> None:
        pass


def check_callbacks(where: str, callbacks: Any) -> tuple[Callback, ...]:
    """``callbacks`` as a tuple of :class:`Callback`; a clear error for anything else."""
    if isinstance(callbacks, Callback):
        callbacks = (callbacks,)
    if not isinstance(callbacks, Sequence) or isinstance(callbacks, str):
        raise TypeError(
            f"`{where}`: `callbacks` must be a list of `lstm_jax.Callback`; got "
            f"{type(callbacks).__name__}."
        )
    bad = [
        f"{i}: {type(c).__name__}" for i, c in enumerate(callbacks) if not isinstance(c, Callback)
    ]
    if bad:
        raise TypeError(
            f"`{where}`: every entry of `callbacks` must be an `lstm_jax.Callback` (subclass it "
            f"and override `on_step_end`/`on_epoch_end`); got {', '.join(bad)}."
        )
    return tuple(callbacks)


class CallbackList:
    """Calls a tuple of callbacks in order; a hook's result stops the run if any is True."""

    def __init__(self, callbacks: tuple[Callback, ...]):
        self.callbacks = callbacks
        self.per_step = any(
            type(c).on_step_end is not Callback.on_step_end for c in callbacks
        )  # skip building per-step metrics when nobody reads them

    def train_begin(self, info: TrainInfo) -> None:
        for c in self.callbacks:
            c.on_train_begin(info)

    def step_end(self, step: int, metrics: dict) -> bool:
        return any([bool(c.on_step_end(step, metrics)) for c in self.callbacks])

    def epoch_end(self, epoch: int, logs: dict) -> bool:
        return any([bool(c.on_epoch_end(epoch, logs)) for c in self.callbacks])

    def train_end(self, history: dict) -> None:
        for c in self.callbacks:
            c.on_train_end(history)


class EarlyStopping(Callback):
    """Stops when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs (Keras's ``EarlyStopping``). Its state is rebuilt from the history on resume, so a
    resumed run stops where the uninterrupted one would.

    Args:
      patience: epochs without improvement before stopping (>= 1).
      min_delta: an epoch improves when ``value < best - min_delta``.
      monitor: the history column to watch (needs validation data for ``val_loss``).
    """

    def __init__(self, patience: int, *, min_delta: float = 0.0, monitor: str = "val_loss"):
        self.patience = check_int("EarlyStopping", "patience", patience)
        self.min_delta = check_float("EarlyStopping", "min_delta", min_delta, low=0.0)
        if not isinstance(monitor, str):
            raise TypeError(
                f"`EarlyStopping`: `monitor` must be a history column name (str); got "
                f"{type(monitor).__name__}."
            )
        self.monitor = monitor
        self.best, self.wait = math.inf, 0

    def on_train_begin(self, info: TrainInfo) -> None:
        if self.monitor.startswith("val_") and not info.validating:
            raise ValueError(
                f"`EarlyStopping`: monitoring `{self.monitor}` needs validation data; pass "
                "`val_data` or `FitConfig(val_fraction=...)` to `fit`."
            )
        self.best, self.wait = math.inf, 0
        for value in info.history.get(self.monitor, []):
            self._update(value)

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        if self.monitor not in logs:
            raise ValueError(
                f"`EarlyStopping`: the history has no `{self.monitor}` column (it has "
                f"{sorted(logs)}); pass validation data to `fit` or monitor another column."
            )
        self._update(logs[self.monitor])
        return self.wait >= self.patience

    def _update(self, value: float) -> None:
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
        else:
            self.wait += 1


class ProgressBar(Callback):
    """A tqdm progress bar over the optimiser steps, with the last epoch's losses."""

    def __init__(self, *, leave: bool = False):
        self.leave, self.bar = leave, None

    def on_train_begin(self, info: TrainInfo) -> None:
        from tqdm.auto import tqdm  # imported here so that `import lstm_jax` never loads tqdm

        self.bar = tqdm(
            total=info.total_steps, initial=info.initial_step, unit="step", leave=self.leave
        )

    def on_step_end(self, step: int, metrics: dict) -> None:
        self.bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        short = {k: f"{logs[k]:.4g}" for k in ("loss", "val_loss") if k in logs}
        self.bar.set_postfix(epoch=epoch, **short)

    def on_train_end(self, history: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoard(Callback):
    """Writes the metrics to TensorBoard event files in ``logdir`` with tensorboardX.

    Per step (every ``every`` steps, x axis = the step): ``train/<metric>`` for every step
    metric. Per epoch (x axis = the epoch): ``epoch/<column>`` for every history column but
    ``epoch``, ``step`` and ``time_s``. View with ``tensorboard --logdir LOGDIR``. Needs the
    ``tensorboard`` extra: ``pip install 'lstm_jax[tensorboard]'``.

    Args:
      logdir: directory of the event files (created if needed).
      every: log the step metrics every this many steps (>= 1); each log waits for the step.
    """

    def __init__(self, logdir: Any, *, every: int = 1):
        import os

        if not isinstance(logdir, (str, os.PathLike)):
            raise TypeError(
                f"`TensorBoard`: `logdir` must be a directory path (str or os.PathLike); got "
                f"{type(logdir).__name__}."
            )
        self.logdir, self.every = os.fspath(logdir), check_int("TensorBoard", "every", every)
        self.writer = None

    def on_train_begin(self, info: TrainInfo) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError(
                "`TensorBoard` needs tensorboardX: pip install 'lstm_jax[tensorboard]'."
            ) from None
        self.writer = SummaryWriter(self.logdir)

    def on_step_end(self, step: int, metrics: dict) -> None:
        if step % self.every == 0:
            for k, v in metrics.items():
                self.writer.add_scalar(f"train/{k}", float(v), step)

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        for k, v in logs.items():
            if k not in ("epoch", "step", "time_s"):
                self.writer.add_scalar(f"epoch/{k}", float(v), epoch)
        self.writer.flush()

    def on_train_end(self, history: dict) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
