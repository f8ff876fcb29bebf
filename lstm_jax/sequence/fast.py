"""``fast_scan``: :func:`lstm_jax.scan` for the built-in cells, with hand-derived derivatives.

For :class:`LSTMCell`, :class:`GRUCell` and :class:`SimpleRNNCell` the whole sequence is one
``jax.custom_jvp`` (:mod:`~lstm_jax.sequence.fast_lstm`, :mod:`~lstm_jax.sequence.fast_gru`,
:mod:`~lstm_jax.sequence.fast_rnn`): the tangent recurrence carries only the hidden (and cell)
state's tangent, and every term with a weight or input tangent is one batched product outside
the loop. ``jax.grad`` gets the transposed rule (the backward recurrence, then a few large
weight-gradient GEMMs instead of small ones per step); ``jax.jvp``, ``jax.jacfwd``,
Hessian-vector products, ``vmap`` and ``jax.checkpoint`` work as through :func:`scan`. Outputs
and derivatives equal those of :func:`scan` to float rounding.

The layers (:class:`lstm_jax.StackedRNN`, ``LSTM``, ``GRU``, ``SimpleRNN``) take this path
whenever :func:`fast_supported` says the cell and the inputs allow it and :func:`rule_pays` says
it is the faster one (in reverse mode all but a narrow GRU on CPU; in forward mode, when
:func:`forward_mode` sees a ``jax.jvp`` around the call, none on CPU), and :func:`scan`
otherwise.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.interpreters.ad import JVPTracer

try:  # reverse mode's tracers; JAX does not export the class
    from jax._src.interpreters.ad import LinearizeTracer as _LINEARIZE_TRACERS
except ImportError:  # pragma: no cover - another JAX: mixed calls count as forward mode
    _LINEARIZE_TRACERS = ()

from lstm_jax.cells.gru import GRUCell
from lstm_jax.cells.lstm import LSTMCell, LSTMState
from lstm_jax.cells.simple_rnn import SimpleRNNCell
from lstm_jax.core.activations import resolve_activation
from lstm_jax.core.checks import Problems
from lstm_jax.core.eager import call_cached
from lstm_jax.core.vma import vary_like
from lstm_jax.sequence import fast_gru, fast_lstm, fast_rnn
from lstm_jax.sequence.lengths import out_of_range, poison, valid_steps
from lstm_jax.sequence.scan import check_sequence, resolve_unroll, scan

_SUPPORTED_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
_CELLS = (LSTMCell, GRUCell, SimpleRNNCell)

# On CPU the GRU's rule trained slower than autodiff through `scan` below this hidden size
# (autodiff took 0.73x of the rule's time at H = 50, 0.88x at 256, 0.90x at 384; 1.02x at 512
# and 1.16x at B = 32, I = 256, H = 512: benchmarks/RESULTS.md, 2026-12-01): the batched
# weight-gradient products it buys pay only once the weights are large. The LSTM's and simple
# RNN's rules won or tied at every size measured.
GRU_RULE_MIN_HIDDEN_CPU = 512

# On CPU the LSTM rule's forward loop computes its products as (4H, B) blocks, then transposes,
# for a batch of 16 to 32 rows and at least 512 hidden units (below 1024 units, only for an input
# too wide to stack with the recurrent product). There XLA's (B, 4H) products hit a slow case:
# at B = 16 and 32, H = 512 and 1024 the gates-major loop ran the forward 1.25-1.93x and the
# training step 1.05-1.42x faster in four interleaved runs on a 2-core Zen 4, and with one
# transpose of the summed products the layer's forward 1.58-1.96x, training 1.17-1.26x and jvp
# 1.15-1.37x (benchmarks/RESULTS.md, 2026-12-01). Outside that range it was mixed: B = 8
# gained in one run and lost in two (0.80-1.47x forward), H = 384 likewise, B = 64 was level
# (0.98-1.10x) and larger batches lost (0.62-0.85x forward at B = 128 to 512), as did
# gates-major products stacked with a narrow input at H <= 256.
GATES_MAJOR_BATCH_CPU = (16, 32)
GATES_MAJOR_MIN_HIDDEN_CPU = 512

# From 1024 units the gates-major loop also beat the stacked product of a narrow input (which
# it used to leave alone): at B = 16 and 32, H = 1024, I = 1, 16, 128 and 256, the rule's
# forward ran 1.14-1.34x and its training step 1.05-1.12x faster than with the input stacked
# (1.16-1.27x / 1.03-1.06x faster than the usual unstacked loop), and through the layer the
# forward 1.15-1.33x and training 1.07-1.10x, on a 2-core Zen 4 (benchmarks/RESULTS.md,
# 2026-12-04, night). At H = 512 the stacked product of a one-wide input ran the forward 1.32x
# faster than gates-major, so the stack keeps that range.
GATES_MAJOR_OVER_STACK_MIN_HIDDEN_CPU = 1024

# Forward mode on CPU: `jax.jvp` through `scan` (primal and tangent in one loop, each step's
# rows in cache) against the rule's `jvp` (a saving forward loop, full-length residual and
# tangent-GEMM passes over (T, B, 4H) arrays, then the tangent loop), interleaved, 7 rounds on
# a 2-core Zen 3, ms, autodiff / rule: LSTM 4.2 / 5.0, 133 / 227, 123 / 171 at S, M and L; GRU
# 3.4 / 4.0, 71 / 147, 84 / 131; simple RNN 1.5 / 1.9, 44 / 63, 29 / 38; two more LSTM runs
# 0.55-0.59x at M and 0.79-0.88x at L (benchmarks/RESULTS.md, 2026-12-04; on the other hosts
# 0.39-0.65x around M). The rule is built for reverse mode, where those passes become the
# batched weight gradients; a layer differentiated by `jvp` directly therefore runs `scan`.
FORWARD_MODE_RULE_CPU = False


def fast_scan(
    cell: Any,
    params: Any,
    xs: jax.Array,
    carry: Any = None,
    *,
    lengths: jax.Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool | None = None,
    recurrent_mask: jax.Array | None = None,
    checkpoint_every: int | None = None,
    where: str = "fast_scan",
) -> tuple[Any, jax.Array]:
    """Runs a built-in cell over a sequence like :func:`lstm_jax.scan`, with its fast rule.

    Same arguments, return value and errors as :func:`lstm_jax.scan`, plus
    ``checkpoint_every``: keep only every ``k``-th carry in the forward pass and recompute one
    ``k``-step segment at a time when differentiating (``jax.checkpoint`` per segment), so
    memory for reverse mode falls from ``O(T)`` stored steps to ``O(T/k + k)`` at the cost of a
    second forward pass; ``k ~ sqrt(T)`` minimises it. ``xs`` and the carry are cast to
    ``param_dtype``.

    Raises:
      TypeError / ValueError: as :func:`lstm_jax.scan`; and for a cell or option the rule lacks
      (see :func:`check_fast`).
    """
    check_fast(where, cell)  # first: `check_sequence` needs a cell of the protocol
    T, batch = check_sequence(
        where, cell, params, xs, carry, lengths, time_major,
        reverse=reverse, unroll=unroll, recurrent_mask=recurrent_mask,
    )  # fmt: skip
    check_fast(where, cell, checkpoint_every=checkpoint_every)
    if carry is None:
        carry = cell.initial_carry(batch)
    if T == 0:
        return scan(cell, params, xs, carry, lengths=lengths, time_major=time_major)
    static = _FastConfig(
        cell, bool(reverse), bool(time_major), resolve_unroll(unroll), checkpoint_every
    )
    return call_cached(_run_fast, static, params, xs, carry, lengths, recurrent_mask)


class _FastConfig(NamedTuple):
    """The hashable part of a :func:`fast_scan` call (the key of its cached ``jit``)."""

    cell: Any
    reverse: bool
    time_major: bool
    unroll: int | bool
    checkpoint_every: int | None


def _run_fast(static, params, xs, carry, lengths, recurrent_mask):
    """The body of :func:`fast_scan` once checked, for ``T >= 1``: time-major flat arrays in,
    the rule's core, the user's layout out."""
    cell, reverse, time_major, unroll, k = static
    T, batch = (xs.shape[0], xs.shape[1:-1]) if time_major else (xs.shape[-2], xs.shape[:-2])
    H, dt, B = cell.hidden_size, jnp.dtype(cell.param_dtype), math.prod(batch)
    xs_t = xs if time_major else jnp.moveaxis(xs, -2, 0)  # (T, ..., I)
    xs_t = xs_t.astype(dt).reshape(T, B, xs.shape[-1])  # (T, B, I)
    valid = None if lengths is None else valid_steps(lengths, T).reshape(T, B, 1)
    if valid is not None:  # padding never reaches the products: NaN there cannot reach grads
        xs_t = jnp.where(valid, xs_t, jnp.zeros_like(xs_t))
    mask = None if recurrent_mask is None else recurrent_mask.astype(dt).reshape(B, H)
    if reverse:
        xs_t = jnp.flip(xs_t, 0)
        valid = None if valid is None else jnp.flip(valid, 0)
    k = None if k is None or k >= T else k
    if k is not None and T % k:  # pad with skipped steps to whole segments
        pad = k - T % k
        valid = jnp.ones((T, B, 1), bool) if valid is None else valid
        valid = jnp.concatenate([valid, jnp.zeros((pad, B, 1), bool)], 0)
        xs_t = jnp.concatenate([xs_t, jnp.zeros((pad,) + xs_t.shape[1:], dt)], 0)
    run = _runner(cell, xs.shape[-1], unroll, B)
    c0 = jax.tree.map(lambda a: a.astype(dt).reshape(B, H), carry)
    c0 = vary_like(c0, c0, params, xs_t, valid, mask)  # under shard_map: vary as steps do
    hs, final = (
        run(params, xs_t, c0, valid, mask)
        if k is None
        else _segmented(run, k, params, xs_t, c0, valid, mask)
    )
    hs, valid = hs[:T], None if valid is None else valid[:T]
    ys = tg_where(valid, hs)  # (T, B, H)
    if reverse:
        ys = jnp.flip(ys, 0)
    ys = ys.reshape((T,) + tuple(batch) + (H,))
    final = jax.tree.map(lambda a: a.reshape(*batch, H), final)
    if lengths is not None:  # under jit an out-of-range length poisons outputs and carry
        bad = out_of_range(lengths, T)
        ys, final = poison(ys, bad), poison(final, bad)
    return final, (ys if time_major else jnp.moveaxis(ys, 0, -2))


def tg_where(valid, hs):
    """Zero outputs at skipped steps (the carry is kept there, the output is not)."""
    return hs if valid is None else jnp.where(valid, hs, jnp.zeros_like(hs))


def _runner(cell, input_size, unroll, batch):
    """``run(params, xs, carry, valid, mask) -> (hs (T, B, H), final carry)`` for ``cell``."""
    H = cell.hidden_size
    if isinstance(cell, LSTMCell):
        # A narrow input makes x_t W_x a small, overhead-bound product: stacked with the
        # recurrent one, a one-wide input ran the forward 1.24-2.23x faster on CPU, and inputs
        # up to H / 4 wide were level (0.86-1.18x; benchmarks/RESULTS.md, 2026-12-04, night).
        stack = 4 * input_size <= H
        gm = gates_major(stack, batch, H)
        st = fast_lstm.Static(cell.forget_gate, unroll, stack and not gm, gm)

        def run(p, xs, c0, valid, mask):
            hs, c_T = fast_lstm.lstm_core(st, p, xs, c0.h, c0.c, valid, mask)
            return hs, LSTMState(h=hs[-1], c=c_T)  # skipped steps keep the carry

        return run
    if isinstance(cell, GRUCell):
        st = fast_gru.Static(cell.reset_after, unroll)

        def run(p, xs, h0, valid, mask):
            hs = fast_gru.gru_core(st, p, xs, h0, valid, mask)
            return hs, hs[-1]

        return run
    st = fast_rnn.Static(unroll)

    def run(p, xs, h0, valid, mask):
        hs = fast_rnn.rnn_core(st, p, xs, h0, valid, mask)
        return hs, hs[-1]

    return run


def _segmented(run, k, params, xs, carry, valid, mask):
    """``run`` over ``k``-step segments, each under ``jax.checkpoint`` (Chen et al. 2016)."""

    def segment(carry, inp):
        x, ok = inp
        hs, carry = run(params, x, carry, ok, mask)
        return carry, hs

    def split(a):
        return None if a is None else a.reshape((a.shape[0] // k, k) + a.shape[1:])

    body = jax.checkpoint(segment, prevent_cse=False)
    final, hs = jax.lax.scan(body, carry, (split(xs), split(valid)))
    return hs.reshape((-1,) + hs.shape[2:]), final  # (T, B, H)


def fast_problems(cell) -> list[str]:
    """Why ``cell`` cannot take the fast path (empty when it can)."""
    if type(cell) not in _CELLS:  # exact types: a subclass may change the step
        return [f"`cell` must be an LSTMCell, GRUCell or SimpleRNNCell; got {type(cell).__name__}."]
    out = []
    for name, want in _required_options(cell):
        got = getattr(cell, name)
        if resolve_activation(got, "fast_scan", name) is not want:
            out.append(f"`{name}={got!r}`")
    if type(cell) is LSTMCell:
        for name in ("peephole", "proj_size", "layer_norm"):
            if getattr(cell, name) not in (False, None):
                out.append(f"`{name}={getattr(cell, name)!r}`")
    pdt, cdt = jnp.dtype(cell.param_dtype), jnp.dtype(cell.compute_dtype)
    if pdt not in _SUPPORTED_DTYPES:
        out.append(f"`param_dtype={pdt.name}`")
    if cdt != pdt:
        out.append(f"`dtype={cdt.name}`")
    return out


def _required_options(cell):
    if isinstance(cell, SimpleRNNCell):
        return [("activation", jnp.tanh)]
    return [("gate_activation", jax.nn.sigmoid), ("activation", jnp.tanh)]


def gates_major(stack: bool, batch: int, hidden: int) -> bool:
    """Whether the LSTM rule's forward loop computes its products gates-major on this backend
    (see :data:`GATES_MAJOR_BATCH_CPU`), given whether the input would otherwise be ``stack``-ed
    with the recurrent product; gates-major replaces the stack from
    :data:`GATES_MAJOR_OVER_STACK_MIN_HIDDEN_CPU` units. Results agree to float rounding either
    way. A symbolic batch (``jax.export``) keeps the usual orientation."""
    lo, hi = GATES_MAJOR_BATCH_CPU
    return (
        jax.default_backend() == "cpu"
        and (not stack or hidden >= GATES_MAJOR_OVER_STACK_MIN_HIDDEN_CPU)
        and hidden >= GATES_MAJOR_MIN_HIDDEN_CPU
        and isinstance(batch, int)
        and lo <= batch <= hi
    )


def forward_mode(*trees) -> bool:
    """Whether the arrays in ``trees`` are being differentiated in forward mode at this call:
    some leaf is a tracer of ``jax.jvp`` (which ``jax.jacfwd`` also uses) applied around it.

    Reverse mode (``jax.grad``, ``jax.vjp``, ``jax.linearize``) traces with linearize tracers
    instead, under JAX's direct linearization (its default; without it reverse mode traces
    with JVP tracers too, so this is then always False). Inside a ``jit``, ``scan`` or
    ``jax.checkpoint`` that sits between the transformation and the call, the arrays are plain
    tracers and this is False: the call is traced once and differentiated afterwards.
    """
    if not getattr(jax.config, "jax_use_direct_linearize", False):
        return False
    leaves = jax.tree.leaves(trees)
    if any(isinstance(a, _LINEARIZE_TRACERS) for a in leaves):
        return False  # also reverse-differentiated here (a Hessian-vector product, say)
    return any(isinstance(a, JVPTracer) for a in leaves)


def rule_pays(cell, forward: bool = False) -> bool:
    """Whether the layers' default (``backward="fast"``) runs ``cell``'s rule on this backend.

    Reverse mode (and any call :func:`forward_mode` cannot see): always, except a GRU narrower
    than :data:`GRU_RULE_MIN_HIDDEN_CPU` on CPU, where autodiff through :func:`scan` measured
    faster. ``forward`` (a ``jvp`` seen by :func:`forward_mode`): never on CPU, where
    ``scan``'s ``jvp``, one loop over the primal and the tangent together, measured faster than
    the rule's two loops and full-length passes for every cell (see
    :data:`FORWARD_MODE_RULE_CPU`).
    """
    cpu = jax.default_backend() == "cpu"
    if forward and cpu:
        return FORWARD_MODE_RULE_CPU
    if type(cell) is GRUCell and cpu:
        return cell.hidden_size >= GRU_RULE_MIN_HIDDEN_CPU
    return True


def fast_supported(cell, xs=None, carry=None) -> bool:
    """Whether the layers can run ``cell`` on ``xs`` (and ``carry``) through :func:`fast_scan`
    with the same dtypes as :func:`scan`: a supported cell, and inputs in its ``param_dtype``."""
    if fast_problems(cell):
        return False
    dt = jnp.dtype(cell.param_dtype)
    leaves = jax.tree.leaves((xs, carry))
    return all(getattr(a, "dtype", None) == dt for a in leaves)


def check_fast(where, cell, recurrent_mask=None, batch=(), checkpoint_every=None) -> None:
    """Raises a ``ValueError`` (``TypeError`` for another kind of cell) naming every option of
    ``cell`` the fast path lacks, and a bad ``recurrent_mask`` shape or ``checkpoint_every``."""
    p = Problems(where)
    problems = fast_problems(cell)
    if problems and type(cell) not in _CELLS:
        p.type(problems[0] + " Use `scan` instead.")
        p.raise_if_any()
    if problems:
        p.value(
            f"the hand-derived derivative of {type(cell).__name__} does not support "
            + ", ".join(problems)
            + " (only sigmoid gates and tanh activations computed in float32 or float64 "
            "param_dtype, without peepholes, projection or layer norm); use `scan` for this cell."
        )
    if recurrent_mask is not None:
        want = tuple(batch) + (cell.hidden_size,)
        if getattr(recurrent_mask, "shape", None) != want:
            got = getattr(recurrent_mask, "shape", type(recurrent_mask).__name__)
            p.value(f"`recurrent_mask` must have shape {want}; got {got}.")
    if checkpoint_every is not None and (
        isinstance(checkpoint_every, bool)
        or not isinstance(checkpoint_every, int)
        or checkpoint_every < 1
    ):
        p.value(f"`checkpoint_every` must be a positive int or None; got {checkpoint_every!r}.")
    p.raise_if_any()
