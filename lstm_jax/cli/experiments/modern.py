"""Where the modern LSTMs differ: recall and character LM at equal parameters and equal time.

Two tasks, each model trained by the same loop (Adam 5e-3, cosine decay, clipping at 1)::

    python -m lstm_jax.experiments modern --quick      # about two CPU minutes
    python -m lstm_jax.experiments modern --tasks mqar --steps 2000 --params 100000

* ``mqar``: multi-query associative recall (Arora et al. 2023; :func:`lstm_jax.data.mqar`):
  ``pairs`` key-value bindings, then queries of their keys; accuracy of the recalled values.
* ``charlm``: next-character prediction on the bundled *Macbeth*; bits per character on the
  held-out last tenth of the text.

Models, every one an embedding, a body of ``layers`` blocks, a final LayerNorm and a Dense
head (no weight tying), with the width chosen so that each has about ``--params`` parameters:

* ``LSTM``: a stacked LSTM (:func:`lstm_jax.LSTM`, the default fast path);
* ``minLSTM``: residual pre-LayerNorm layers of :class:`lstm_jax.minLSTMCell` run by
  :func:`lstm_jax.parallel_scan`;
* ``sLSTM``, ``mLSTM``: :class:`lstm_jax.xLSTMStack` of sLSTM blocks only or mLSTM blocks only
  (the paper's xLSTM[0:1] and xLSTM[1:0]);
* ``xLSTM[1:1]``: the stack alternating mLSTM and sLSTM blocks.

The table reports, per task, the metric after the same number of steps and the metric each
model had reached when the fastest-finishing model's training time ran out (equal wall time;
compilation excluded), with the step time beside it. What the papers report is printed next to
it; on a CPU and at these sizes the outcome may differ, and the table says what was measured.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lstm_jax.cells.minrnn import minLSTMCell
from lstm_jax.data.recall import mqar
from lstm_jax.data.text import build_vocab, load_text
from lstm_jax.layers.dense import Dense
from lstm_jax.layers.embedding import Embedding
from lstm_jax.layers.stacked import LSTM
from lstm_jax.layers.xlstm import xLSTMStack
from lstm_jax.layers.xlstm_blocks import layer_norm
from lstm_jax.sequence.parallel import parallel_scan
from lstm_jax.training.step import init_train_state, make_train_step

NAME = "modern"
HELP = "LSTM vs sLSTM/mLSTM/xLSTM stacks vs minLSTM on associative recall and a character LM"
MODELS = ("LSTM", "minLSTM", "sLSTM", "mLSTM", "xLSTM[1:1]")
TASKS = ("mqar", "charlm")
QUICK = dict(steps=300, params=40_000, layers=2, batch=32)
FULL = dict(steps=3000, params=200_000, layers=2, batch=32)
LR = 5e-3  # Adam, cosine-decayed to 0
EVALS = 20  # evaluations per run: the equal-time column reads the curve they trace
MQAR = dict(vocab_size=32, pairs=6, length=48)  # chance: 1/16
CHARLM_T = 64
PAPERS = {
    "mqar": (
        "Beck et al. 2024 (2-block models, up to 256 pairs in contexts up to 2048): xLSTM[1:1] "
        "is the best non-Transformer model; with 4-16 pairs xLSTM[1:1] and xLSTM[1:0] solve "
        "it at every width while the sLSTM-only xLSTM[0:1] and the LSTM fall short (less "
        "memory capacity). Arora et al. 2023: attention-free models need width growing with "
        "the number of bindings"
    ),
    "charlm": (
        "Feng et al. 2024: on Shakespeare characters minLSTM/minGRU reach test losses "
        "comparable to Mamba and a Transformer; a training step is 175x faster than a GRU's "
        "at length 512 (GPU, parallel scan vs sequential)"
    ),
}


class Model(NamedTuple):
    name: str
    width: int
    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], jax.Array]  # (params, ids (B, T)) -> logits (B, T, V)
    unused: int = 0  # stored entries that are structurally zero (the blocks' masked weights)


class Curve(NamedTuple):
    """One model's training on one task."""

    model: str
    width: int
    params: int
    steps: np.ndarray  # (K,) steps at which it was evaluated
    seconds: np.ndarray  # (K,) training time by then, compilation excluded
    metric: np.ndarray  # (K,) accuracy (mqar) or bits per character (charlm)


def build(name: str, width: int, vocab: int, layers: int) -> Model:
    """The model ``name`` at ``width`` (embedding and hidden size) for ``vocab`` tokens."""
    embed, head = Embedding(vocab, width), Dense(vocab)
    unused = 0
    if name == "LSTM":
        body = LSTM(width, num_layers=layers)
        body_init = lambda k: body.init(k, width)  # noqa: E731
        body_apply = lambda p, x: body.apply(p, x)[1]  # noqa: E731
    elif name == "minLSTM":
        cell = minLSTMCell(width)

        def body_init(k):
            ks = jax.random.split(k, layers)
            return [(cell.init(kk, width), jnp.ones((width,))) for kk in ks]

        def body_apply(p, x):
            for cell_params, scale in p:
                x = x + parallel_scan(cell, cell_params, layer_norm(x, scale))[1]
            return x
    else:
        at = {"sLSTM": tuple(range(layers)), "mLSTM": (), "xLSTM[1:1]": tuple(range(1, layers, 2))}
        stack = xLSTMStack(width, layers, slstm_at=at[name], round_to=8)
        body_init = lambda k: stack.init(k, width)  # noqa: E731
        body_apply = lambda p, x: stack.apply(p, x)[1]  # noqa: E731
        for block in stack.blocks:  # the cells' w_x (and mLSTM b) keep a block structure
            masks = block.cell_mask()
            unused += sum(
                int(m.size - m.sum()) for m in (masks if isinstance(masks, tuple) else (masks,))
            )

    def init(key):
        k_e, k_b, k_h = jax.random.split(key, 3)
        table = embed.init(k_e)._replace(table=embed.init(k_e).table / math.sqrt(width))
        return dict(embed=table, body=body_init(k_b), norm=jnp.ones((width,)),
                    head=head.init(k_h, width))  # fmt: skip

    def apply(params, ids):
        x = body_apply(params["body"], embed.apply(params["embed"], ids))
        return head.apply(params["head"], layer_norm(x, params["norm"]))

    return Model(name, width, init, apply, unused)


def count_params(model: Model) -> int:
    """Parameters the model reads: stored entries less the blocks' structural zeros."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)) - model.unused


def matched(name: str, target: int, vocab: int, layers: int) -> tuple[Model, int]:
    """The width (a multiple of 4) whose model's parameter count is closest to ``target``."""
    best = None
    for width in range(8, 1025, 4):
        model = build(name, width, vocab, layers)
        n = count_params(model)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (model, n)
        if n > target:
            break
    return best


def _mqar_batches(vocab):
    def batch(seed, n, test=False):
        r = mqar(seed + (2**30 if test else 0), n, **MQAR)
        return r.ids, r.targets, r.mask

    def metric(logits, targets, mask):  # recall accuracy over the queries
        hit = (np.argmax(np.asarray(logits), -1) == targets) & (mask > 0)
        return float(hit.sum() / mask.sum())

    return batch, metric, vocab


def _charlm_batches(tokens, vocab):
    split = int(0.9 * len(tokens))
    train, held_out = tokens[:split], tokens[split:]

    def windows(source, starts):
        idx = starts[:, None] + np.arange(CHARLM_T + 1)
        w = source[idx]
        return w[:, :-1], w[:, 1:], np.ones((len(starts), CHARLM_T), np.float32)

    def batch(seed, n, test=False):
        source = held_out if test else train
        rng = np.random.default_rng(seed)
        return windows(source, rng.integers(0, len(source) - CHARLM_T - 1, n))

    def metric(logits, targets, mask):  # bits per character
        nll = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, targets))
        return float((nll * mask).sum() / mask.sum() / math.log(2))

    return batch, metric, vocab


def train_curve(model, n_params, batch, metric, *, steps, batch_size, eval_every, seed=0):
    """Trains ``model``; evaluates every ``eval_every`` steps on 512 held-out sequences."""
    schedule = optax.cosine_decay_schedule(LR, steps)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))

    def loss_fn(p, data):
        ids, targets, mask = data
        nll = optax.softmax_cross_entropy_with_integer_labels(model.apply(p, ids), targets)
        return (nll * mask).sum() / mask.sum()

    step = jax.jit(make_train_step(loss_fn, opt))
    evaluate = jax.jit(model.apply)
    test = batch(seed, 512, test=True)
    fresh = lambda: init_train_state(model.init(jax.random.key(seed)), opt)  # noqa: E731
    step(fresh(), batch(0, batch_size))  # compiles (not timed)
    state = fresh()
    marks, seconds, values, elapsed = [], [], [], 0.0
    for i in range(1, steps + 1):
        data = batch(seed * 10**6 + i, batch_size)  # a fresh batch each step
        t0 = time.perf_counter()
        state, metrics = step(state, data)
        loss = metrics["loss"].block_until_ready()
        elapsed += time.perf_counter() - t0
        if i % eval_every and i != steps:
            continue
        loss = float(loss)
        if not np.isfinite(loss):
            raise FloatingPointError(f"{model.name}: training loss {loss} at step {i}")
        marks.append(i)
        seconds.append(elapsed)
        values.append(metric(evaluate(state.params, test[0]), test[1], test[2]))
    return Curve(model.name, model.width, n_params, np.array(marks), np.array(seconds),
                 np.array(values))  # fmt: skip


def at_time(curve: Curve, budget: float) -> float:
    """The metric of the last evaluation that finished within ``budget`` seconds."""
    ok = curve.seconds <= budget * (1 + 1e-9)
    return float(curve.metric[ok][-1]) if ok.any() else float("nan")


def run_task(task, models=MODELS, *, steps, params, layers, batch, seed=0):
    """Trains every model of ``models`` on ``task``; returns their :class:`Curve` s."""
    if task == "mqar":
        batch_fn, metric, vocab = _mqar_batches(MQAR["vocab_size"])
    else:
        text = load_text()
        vocab = build_vocab(text)
        batch_fn, metric, vocab = _charlm_batches(vocab.encode(text), vocab.size)
    curves = []
    for name in models:
        model, n = matched(name, params, vocab, layers)
        print(f"[{task}] {name}: width {model.width}, {n:,} params ...", flush=True)
        curve = train_curve(model, n, batch_fn, metric, steps=steps, batch_size=batch,
                            eval_every=max(1, steps // EVALS), seed=seed)  # fmt: skip
        print(f"  {_fmt(task, curve.metric[-1])} after {steps} steps, "
              f"{curve.seconds[-1]:.1f} s", flush=True)  # fmt: skip
        curves.append(curve)
    return curves


def _fmt(task, value) -> str:
    return f"accuracy {value:.3f}" if task == "mqar" else f"{value:.3f} bits/char"


def format_table(task: str, curves: list[Curve]) -> str:
    budget = min(c.seconds[-1] for c in curves)
    unit = "recall accuracy" if task == "mqar" else "test bits/char"
    lines = [
        f"| model | width | params | ms/step | {unit}, equal steps ({curves[0].steps[-1]}) | "
        f"{unit}, equal time ({budget:.1f} s) |",
        "|---|---|---|---|---|---|",
    ]
    for c in curves:
        ms = 1000 * c.seconds[-1] / c.steps[-1]
        lines.append(f"| {c.model} | {c.width} | {c.params:,} | {ms:.1f} | {c.metric[-1]:.3f} "
                     f"| {at_time(c, budget):.3f} |")  # fmt: skip
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes, a few CPU minutes")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: mqar, charlm")
    p.add_argument(
        "--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS)
    )
    p.add_argument("--steps", type=int)
    p.add_argument("--params", type=int, help="parameter count every model is sized to")
    p.add_argument("--layers", type=int)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict[str, list[Curve]]:
    settings = dict(QUICK if args.quick else FULL)
    for name in ("steps", "params", "layers"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    tasks, models = args.tasks.split(","), args.models.split(",")
    for given, allowed, what in ((tasks, TASKS, "--tasks"), (models, MODELS, "--models")):
        bad = [x for x in given if x not in allowed]
        if bad:
            raise ValueError(f"`{what}` must name items of {allowed}; got {bad}.")
    print(f"JAX {jax.__version__}, {jax.default_backend()}; {settings}", flush=True)
    results = {t: run_task(t, models, seed=args.seed, **settings) for t in tasks}
    for task, curves in results.items():
        print(f"\n{task}: {PAPERS[task]}\n{format_table(task, curves)}")
    return results


__all__ = ["MODELS", "PAPERS", "TASKS", "Curve", "at_time", "build", "mqar", "run", "run_task"]
