"""One recurrent layer per library, as closures ``fwd()``, ``train()`` and (JAX) ``jvp()``.

Every entry builds the same problem: a single-layer LSTM (or GRU, in ``GRU_PEERS``, or a simple
tanh RNN, in ``RNN_PEERS``) with hidden size ``H`` over a batch-major ``(B, T, I)`` float32
input, returning all ``T`` outputs. ``fwd`` computes the outputs; ``train`` computes the
gradient of ``mean(ys ** 2)`` with respect to the parameters and the input; ``jvp`` (JAX
entries) the same loss's forward-mode derivative along one direction in (params, input), with
``jax.jvp``. Each blocks until the result is ready. JAX entries also expose ``jax_train`` (the
un-jitted gradient function) and ``args``, so compile time and the compiled step's memory can
be measured.

A peer whose package is missing is skipped (its builder raises ``ImportError``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


@dataclass
class Entry:
    name: str
    fwd: Callable[[], Any]
    train: Callable[[], Any]
    jax_train: Callable | None = None  # gradient function before jit (JAX entries)
    args: tuple = ()
    jvp: Callable[[], Any] | None = None  # forward-mode derivative (JAX entries)


def _loss(ys):
    return jnp.mean(jnp.square(ys))


def _jax_entry(name, apply, params, x):
    """``apply(params, x) -> ys``: jit the forward and the gradient w.r.t. (params, x)."""

    def loss(p, x):
        return _loss(apply(p, x))

    grad = jax.grad(loss, argnums=(0, 1))
    fwd, train = jax.jit(apply), jax.jit(grad)
    jvp = jax.jit(lambda p, x, t: jax.jvp(loss, (p, x), t))
    leaves, tree = jax.tree.flatten((params, x))
    keys = jax.random.split(jax.random.key(7), len(leaves))
    noise = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    direction = tree.unflatten(noise)
    return Entry(
        name,
        lambda: jax.block_until_ready(fwd(params, x)),
        lambda: jax.block_until_ready(train(params, x)),
        grad,
        (params, x),
        lambda: jax.block_until_ready(jvp(params, x, direction)),
    )


def lstm_jax_entry(x, H, backward="default", unroll=None, name=None, cell="lstm"):
    """lstm_jax: ``"default"`` is the layer (``lj.LSTM(H)``, ``lj.GRU(H)``, ``lj.SimpleRNN(H)``)
    as a user gets it;
    ``"autodiff"`` is ``jax.grad`` through ``lj.scan``."""
    import lstm_jax as lj

    name = name or f"lstm_jax {cell.upper()} ({backward})"
    if backward == "default":
        layer = {"lstm": partial(lj.LSTM, forget_bias=0.0), "gru": lj.GRU, "rnn": lj.SimpleRNN}
        layer = layer[cell](H)
        params = layer.init(jax.random.key(0), x.shape[-1])
        return _jax_entry(name, lambda p, x: layer.apply(p, x)[1], params, x)
    c = {"lstm": partial(lj.LSTMCell, forget_bias=0.0), "gru": lj.GRUCell, "rnn": lj.SimpleRNNCell}
    c = c[cell](H)
    params = c.init(jax.random.key(0), x.shape[-1])
    return _jax_entry(name, lambda p, x: lj.scan(c, p, x, unroll=unroll)[1], params, x)


def _flax_linen_entry(x, make_cell, name):
    """``flax.linen.RNN(make_cell(nn))`` over the sequence."""
    import flax.linen as nn

    model = nn.RNN(make_cell(nn))
    params = model.init(jax.random.key(0), x)
    return _jax_entry(name, model.apply, params, x)


def flax_linen_entry(x, H):
    return _flax_linen_entry(
        x, lambda nn: nn.OptimizedLSTMCell(H), "flax linen RNN(OptimizedLSTMCell)"
    )


def flax_nnx_entry(x, H):
    from flax import nnx

    model = nnx.RNN(nnx.OptimizedLSTMCell(x.shape[-1], H, rngs=nnx.Rngs(0)))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def apply(params, x):
        zero = jnp.zeros(x.shape[:1] + (H,), x.dtype)  # explicit carry: no RNG needed
        return nnx.merge(graphdef, params, rest)(x, initial_carry=(zero, zero))

    return _jax_entry("flax nnx RNN(OptimizedLSTMCell)", apply, params, x)


def equinox_entry(x, H):
    import equinox as eqx

    cell = eqx.nn.LSTMCell(x.shape[-1], H, key=jax.random.key(0))
    params, static = eqx.partition(cell, eqx.is_array)

    def apply(params, x):
        cell = eqx.combine(params, static)

        def one(xs):  # (T, I) -> (T, H)
            def step(carry, x_t):
                carry = cell(x_t, carry)
                return carry, carry[0]

            zero = jnp.zeros((H,), xs.dtype)
            return jax.lax.scan(step, (zero, zero), xs)[1]

        return jax.vmap(one)(x)

    return _jax_entry("equinox LSTMCell+scan", apply, params, x)


def _haiku_entry(x, make_core, name):
    """``hk.dynamic_unroll`` of ``make_core(hk)`` over the time-major sequence."""
    import haiku as hk

    def f(x):
        core = make_core(hk)
        xs = jnp.swapaxes(x, 0, 1)  # (T, B, I): dynamic_unroll is time-major
        ys, _ = hk.dynamic_unroll(core, xs, core.initial_state(x.shape[0]))
        return jnp.swapaxes(ys, 0, 1)

    model = hk.without_apply_rng(hk.transform(f))
    params = model.init(jax.random.key(0), x)
    return _jax_entry(name, model.apply, params, x)


def haiku_entry(x, H):
    return _haiku_entry(x, lambda hk: hk.LSTM(H), "haiku LSTM+dynamic_unroll")


def _keras_entry(x, H, layer_name, name):
    """``keras.layers.<layer_name>(H, return_sequences=True)`` through ``stateless_call``."""
    import keras

    if keras.backend.backend() != "jax":
        raise ImportError("keras is not on the JAX backend (set KERAS_BACKEND=jax)")
    layer = getattr(keras.layers, layer_name)(H, return_sequences=True)
    layer.build(x.shape)
    trainable = [v.value for v in layer.trainable_variables]
    frozen = [v.value for v in layer.non_trainable_variables]

    def apply(params, x):
        return layer.stateless_call(params, frozen, x)[0]  # (outputs, non-trainable state)

    return _jax_entry(name, apply, trainable, x)


def keras_entry(x, H):
    return _keras_entry(x, H, "LSTM", "keras 3 LSTM (jax)")


def _torch_entry(x, H, module_name, name):
    """``torch.nn.<module_name>(I, H, batch_first=True)`` on torch's CPU threads."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = getattr(torch.nn, module_name)(x.shape[-1], H, batch_first=True)
    xt = torch.from_numpy(np.array(x)).requires_grad_(True)

    def fwd():
        with torch.no_grad():
            return model(xt)[0]

    def train():
        model.zero_grad(set_to_none=True)
        xt.grad = None
        ys, _ = model(xt)
        ys.square().mean().backward()
        return xt.grad

    return Entry(name, fwd, train)


def torch_entry(x, H):
    return _torch_entry(x, H, "LSTM", "torch nn.LSTM")


def torch_gru_entry(x, H):
    return _torch_entry(x, H, "GRU", "torch nn.GRU")


def flax_gru_entry(x, H):
    return _flax_linen_entry(x, lambda nn: nn.GRUCell(H), "flax linen RNN(GRUCell)")


def keras_gru_entry(x, H):
    return _keras_entry(x, H, "GRU", "keras 3 GRU (jax)")


def flax_rnn_entry(x, H):
    return _flax_linen_entry(x, lambda nn: nn.SimpleCell(H), "flax linen RNN(SimpleCell)")


def haiku_rnn_entry(x, H):
    return _haiku_entry(x, lambda hk: hk.VanillaRNN(H), "haiku VanillaRNN+dynamic_unroll")


def keras_rnn_entry(x, H):
    return _keras_entry(x, H, "SimpleRNN", "keras 3 SimpleRNN (jax)")


def torch_rnn_entry(x, H):
    return _torch_entry(x, H, "RNN", "torch nn.RNN")


PEERS = {
    "flax": flax_linen_entry,
    "nnx": flax_nnx_entry,
    "equinox": equinox_entry,
    "haiku": haiku_entry,
    "keras": keras_entry,
    "torch": torch_entry,
}


GRU_PEERS = {
    "flax": flax_gru_entry,
    "keras": keras_gru_entry,
    "torch": torch_gru_entry,
}


RNN_PEERS = {  # equinox has no simple RNN cell
    "flax": flax_rnn_entry,
    "haiku": haiku_rnn_entry,
    "keras": keras_rnn_entry,
    "torch": torch_rnn_entry,
}


def versions() -> dict[str, str]:
    """Installed versions of every library the benchmark can time."""
    import importlib.metadata as md

    out = {}
    for dist in ("jax", "jaxlib", "flax", "equinox", "dm-haiku", "keras", "torch", "lstm_jax"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    return out
