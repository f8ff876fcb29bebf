"""The cuDNN LSTM kernel behind :class:`lstm_jax.StackedRNN` on NVIDIA GPUs.

On a GPU, ``StackedRNN(kernel="auto")`` (the default) runs a stack of plain LSTM layers as one
call of cuDNN's fused multi-layer LSTM, through ``jax.experimental.rnn``, instead of
``jax.lax.scan``. It computes the same function: the six equations of
:func:`lstm_jax.lstm_equations`, the same ``lengths`` semantics (outputs zero past an example's
length, final carry taken at its last valid step, the backward direction reading each example
from its own last valid step) and the same gradients, to float rounding.

cuDNN's weights are one flat vector. For each pseudo-layer ``l`` (layer 0 forward, layer 0
backward, layer 1 forward, ...) it holds ``W_ih^l: (4H, I_l)`` then ``W_hh^l: (4H, H)``, the
matrices of every pseudo-layer first and then the biases ``b_ih^l, b_hh^l: (4H,)``, gates in the
order i, f, g, o. That is this library's order in transposed form: ``W_ih = w_x.T``,
``W_hh = w_h.T``, ``b_ih = b`` and ``b_hh = 0``. :func:`pack_weights` builds the vector from
``LayerParams`` on every call, so params stay ordinary pytrees and gradients flow back to them.

Where cuDNN does not apply, ``kernel="auto"`` uses :func:`lstm_jax.scan` and ``kernel="cudnn"``
raises a ``ValueError`` that names the reason (:func:`unsupported`). Under ``jax.vmap`` the
kernel, which has no batching rule of its own, runs once per mapped element (``lax.map``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

from lstm_jax._lstm import LSTMCell, LSTMState
from lstm_jax._scan import _nan_if_out_of_range, _valid_steps

KERNELS = ("auto", "scan", "cudnn")
# Matmul precision settings cuDNN's LSTM can honour (float32 or TF32 products).
_PRECISIONS = (None, "highest", "float32", "high", "tensorfloat32", "bfloat16_3x")


class Static(NamedTuple):
    """Hashable shape of one cuDNN call."""

    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool


class Kernel(NamedTuple):
    """A packed-weights LSTM: ``fwd(static, x, h0, c0, w, lens) -> ((y, h_n, c_n), residuals)``
    and ``bwd(static, residuals, (dy, dh_n, dc_n)) -> (dx, dh0, dc0, dw)``.

    Shapes: ``x: (B, T, I)``, ``h0, c0, h_n, c_n: (L*D, B, H)``, ``y: (B, T, D*H)``,
    ``lens: (B,)`` int32 in ``[1, T]``, ``D`` = 2 when bidirectional else 1.
    """

    fwd: Any
    bwd: Any


def _cudnn_fwd(s: Static, x, h0, c0, w, lens):
    from jax.experimental import rnn

    (y, h_n, c_n), res = rnn.lstm_fwd(
        x,
        h0,
        c0,
        w,
        lens,
        input_size=s.input_size,
        hidden_size=s.hidden_size,
        num_layers=s.num_layers,
        dropout=0.0,
        bidirectional=s.bidirectional,
        precision=None,
    )
    return (y, h_n, c_n), res


def _cudnn_bwd(s: Static, res, grads):
    from jax.experimental import rnn

    dx, dh0, dc0, dw, _ = rnn.lstm_bwd(
        s.input_size, s.hidden_size, s.num_layers, 0.0, s.bidirectional, None, res, grads
    )
    return dx, dh0, dc0, dw


CUDNN = Kernel(_cudnn_fwd, _cudnn_bwd)


def _reference_fwd(s: Static, x, h0, c0, w, lens):
    """``jax.experimental.rnn.lstm_ref``: cuDNN's semantics in plain JAX (any backend)."""
    return _reference(s, x, h0, c0, w, lens), (x, h0, c0, w, lens)


def _reference_bwd(s: Static, res, grads):
    x, h0, c0, w, lens = res
    _, vjp = jax.vjp(lambda *a: _reference(s, *a, lens), x, h0, c0, w)
    return vjp(grads)


def _reference(s: Static, x, h0, c0, w, lens):
    from jax.experimental import rnn

    weights = rnn.unpack_lstm_weights(w, s.input_size, s.hidden_size, s.num_layers, s.bidirectional)
    return rnn.lstm_ref(
        x, h0, c0, *weights, lens, s.input_size, s.hidden_size, s.num_layers, 0.0, s.bidirectional
    )


REFERENCE = Kernel(_reference_fwd, _reference_bwd)


def available() -> bool:
    """Whether cuDNN's LSTM can run here: JAX's default backend is a GPU with the RNN library."""
    try:
        from jax.experimental import rnn
    except ImportError:  # pragma: no cover - part of every supported jax
        return False
    return getattr(rnn, "gpu_rnn", None) is not None and jax.default_backend() == "gpu"


def unsupported(rnn_config, *, dropout_key: bool, batch: int, T: int, check_device=True):
    """The reasons cuDNN cannot run this stack; an empty list when it can.

    ``rnn_config`` is a :class:`lstm_jax.StackedRNN`; ``dropout_key`` says whether ``apply``
    got a key (recurrent dropout only acts then).
    """
    cell, why = rnn_config.cell, []
    if not isinstance(cell, LSTMCell):
        return [f"cuDNN runs LSTM cells only, not {type(cell).__name__}"]
    options = [
        ("forget_gate", not cell.forget_gate),
        ("peephole", cell.peephole),
        ("proj_size", cell.proj_size is not None),
        ("layer_norm", cell.layer_norm),
        ("gate_activation", cell.gate_fn is not jax.nn.sigmoid),
        ("activation", cell.activation_fn is not jnp.tanh),
    ]
    why += [
        f"`{n}={getattr(cell, n)!r}` (cuDNN has the plain cell only)" for n, bad in options if bad
    ]
    f32 = jnp.dtype(jnp.float32)
    if jnp.dtype(cell.param_dtype) != f32 or jnp.dtype(cell.compute_dtype) != f32:
        why.append(
            f"`param_dtype={jnp.dtype(cell.param_dtype).name}`, "
            f"`dtype={jnp.dtype(cell.compute_dtype).name}` (cuDNN's LSTM here is float32 only)"
        )
    if dropout_key and rnn_config.recurrent_dropout > 0:
        why.append("`recurrent_dropout` > 0 (cuDNN has no mask on h_{t-1})")
    if batch == 0 or T == 0:
        why.append(f"an empty batch or sequence (batch={batch}, T={T})")
    precision = jax.config.jax_default_matmul_precision
    if precision not in _PRECISIONS:
        why.append(f"`jax_default_matmul_precision={precision!r}` (cuDNN needs float32 or tf32)")
    if check_device and not available():
        why.append(
            f"JAX's default backend is {jax.default_backend()!r}, not a GPU with cuDNN's RNN"
        )
    return why


def pack_weights(params, bidirectional: bool) -> jax.Array:
    """``LayerParams`` of every layer -> cuDNN's flat weight vector (see the module docstring)."""
    cells = [
        c for lp in params for c in ((lp.forward, lp.backward) if bidirectional else (lp.forward,))
    ]
    mats = [m for p in cells for m in (p.w_x.T, p.w_h.T)]  # (4H, I_l), (4H, H)
    biases = []
    for p in cells:
        b = jnp.zeros(p.w_h.shape[-1:], p.w_h.dtype) if p.b is None else p.b
        biases += [b, jnp.zeros_like(b)]  # b_ih = b, b_hh = 0
    return jnp.concatenate([a.reshape(-1) for a in mats + biases])


def cudnn_stack(rnn_config, params, xs, carry, lengths, kernel: Kernel = CUDNN):
    """Runs ``params`` (all layers) through one kernel call; same returns as ``StackedRNN.apply``.

    Args:
      rnn_config: the :class:`lstm_jax.StackedRNN` (static).
      params: tuple of ``LayerParams``.
      xs: ``(..., T, I)`` or ``(T, ..., I)`` with ``time_major``.
      carry: tuple of ``LayerState`` (already filled with zeros when the caller had none).
      lengths: ``...``-shaped integer lengths, or None.
      kernel: :data:`CUDNN`, or :data:`REFERENCE` to run cuDNN's maths in plain JAX.
    """
    cfg, cell = rnn_config, rnn_config.cell
    H, L, D = cell.hidden_size, cfg.num_layers, 2 if cfg.bidirectional else 1
    x = xs if not cfg.time_major else jnp.moveaxis(xs, 0, -2)  # (..., T, I)
    batch, (T, I) = x.shape[:-2], x.shape[-2:]
    B = math.prod(batch)
    x = x.reshape(B, T, I).astype(jnp.float32)
    states = [s for ls in carry for s in ((ls.forward, ls.backward) if D == 2 else (ls.forward,))]
    h0 = jnp.stack([s.h.reshape(B, H) for s in states]).astype(jnp.float32)  # (L*D, B, H)
    c0 = jnp.stack([s.c.reshape(B, H) for s in states]).astype(jnp.float32)
    if lengths is None:
        lens = jnp.full((B,), T, jnp.int32)
    else:
        lens = lengths.reshape(B).astype(jnp.int32)
    # cuDNN needs lengths in [1, T]; an empty example keeps its initial carry and zero outputs,
    # restored below, and out-of-range lengths turn every output NaN as in `scan`.
    s = Static(I, H, L, cfg.bidirectional)
    y, h_n, c_n = _call(
        s, kernel, x, h0, c0, pack_weights(params, cfg.bidirectional), jnp.clip(lens, 1, T)
    )
    if lengths is not None:
        empty = (lens == 0)[None, :, None]  # (1, B, 1)
        h_n, c_n = jnp.where(empty, h0, h_n), jnp.where(empty, c0, c_n)
        valid = _valid_steps(lens, T)  # (T, B, 1)
        y = jnp.where(jnp.swapaxes(valid, 0, 1), y, 0.0)
        y = y + _nan_if_out_of_range(lens, T, y.dtype)
    y = y.reshape(*batch, T, D * H)
    if cfg.time_major:
        y = jnp.moveaxis(y, -2, 0)
    finals = [
        LSTMState(h=h_n[k].reshape(*batch, H), c=c_n[k].reshape(*batch, H)) for k in range(L * D)
    ]
    new_carry = tuple(
        type(carry[layer])(finals[layer * D], finals[layer * D + 1] if D == 2 else None)
        for layer in range(L)
    )
    return y, new_carry


def _call(s: Static, kernel: Kernel, x, h0, c0, w, lens):
    """The kernel as a differentiable, vmappable function of ``(x, h0, c0, w)``."""

    @custom_vmap
    def fwd(x, h0, c0, w, lens):
        return kernel.fwd(s, x, h0, c0, w, lens)

    @custom_vmap
    def bwd(res, grads):
        return kernel.bwd(s, res, grads)

    fwd.def_vmap(_one_at_a_time(fwd))
    bwd.def_vmap(_one_at_a_time(bwd))

    @jax.custom_vjp
    def run(x, h0, c0, w, lens):
        return fwd(x, h0, c0, w, lens)[0]

    def run_fwd(x, h0, c0, w, lens):
        out, res = fwd(x, h0, c0, w, lens)
        return out, (res, lens)

    def run_bwd(saved, grads):
        res, lens = saved
        dx, dh0, dc0, dw = bwd(res, grads)
        return dx, dh0, dc0, dw, None

    run.defvjp(run_fwd, run_bwd)
    return run(x, h0, c0, w, lens)


def _one_at_a_time(f):
    """A ``custom_vmap`` rule: map ``f`` over the batched axis with ``lax.map``."""

    def rule(axis_size, in_batched, *args):
        flat, tree = jax.tree.flatten(args)
        flags = jax.tree.leaves(in_batched)
        flat = [
            a if b else jnp.broadcast_to(a, (axis_size, *jnp.shape(a)))
            for a, b in zip(flat, flags, strict=True)
        ]
        out = jax.lax.map(lambda leaves: f(*jax.tree.unflatten(tree, leaves)), flat)
        return out, jax.tree.map(lambda _: True, out)

    return rule
