"""The LSTM recurrence evaluated in parallel over time by fixed-point iterations: an experiment
for long sequences at a small batch (the shape where cuDNN still wins on a GPU), after DEER
(Lim et al. 2024) and quasi-DEER (Gonzalez et al. 2024). Not part of the package.

Time-major throughout: ``xs (T, B, I)``, carries ``(B, H)``, gates packed i, f, g, o as in
``lstm_jax.LSTMCell``. Given a guess ``h^(k)`` of every step's hidden state, one iteration
computes, for all ``t`` at once::

    z_t = x_t W_x + h^(k)_{t-1} W_h + b                  one GEMM over all T B rows
    i, f, o = sigma(z_i), sigma(z_f), sigma(z_o);  g = tanh(z_g)
    c_t = f_t c_{t-1} + i_t g_t                          linear in c: an associative scan
    h^(k+1)_t = o_t tanh(c_t)

The cell state is solved exactly at every iteration; only the hidden state is iterated
(Jacobi in ``h``). Step ``t`` is exact after ``t`` iterations, so ``T`` iterations reproduce
the sequential recurrence exactly, and a recurrence that contracts in ``h`` converges long
before: each iteration costs one large GEMM and a scan of depth ``log2 T`` instead of ``T``
dependent small steps. How many iterations it needs depends on the weights (their recurrent
gain), which is why this is an experiment and not a default.

A training step differentiates through a fixed number of iterations; the transpose of each
iteration is again parallel over time (a GEMM and a reversed associative scan).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _linear_scan(a, b, x0):
    """``x_t = a_t x_{t-1} + b_t`` for all ``t`` (elementwise), from ``x0``: ``(T, ...)``."""

    def compose(first, second):  # apply `first`, then `second`
        return second[0] * first[0], second[0] * first[1] + second[1]

    A, Bsum = jax.lax.associative_scan(compose, (a, b))
    return A * x0[None] + Bsum


def _iterate(p, xz, h0, c0, hs):
    """One Jacobi iteration: the new ``(hs, cs)`` from the guess ``hs`` ``(T, B, H)``."""
    h_prev = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    z = xz + (h_prev.reshape(-1, h_prev.shape[-1]) @ p.w_h).reshape(xz.shape)
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
    cs = _linear_scan(f, i * g, c0)
    return o * jnp.tanh(cs), cs


def _input_product(p, xs):
    T, B, I = xs.shape
    return (xs.reshape(T * B, I) @ p.w_x + p.b[None]).reshape(T, B, -1)


def picard_lstm(p, xs, h0, c0, iters: int):
    """``-> (hs (T, B, H), c_T (B, H))`` after ``iters`` iterations from ``h = 0``.

    ``p`` holds ``w_x (I, 4H)``, ``w_h (H, 4H)`` and ``b (4H,)``. Differentiable (``jax.grad``
    goes through the ``iters`` iterations).
    """
    xz = _input_product(p, xs)

    def body(hs, _):
        return _iterate(p, xz, h0, c0, hs)[0], None

    hs0 = jnp.zeros(xs.shape[:2] + h0.shape[-1:], xs.dtype)
    hs, _ = jax.lax.scan(body, hs0, None, length=iters - 1)
    hs, cs = _iterate(p, xz, h0, c0, hs)
    return hs, cs[-1]


def iterations_to_converge(p, xs, h0, c0, tol: float, max_iters: int):
    """``-> (iterations, final change)``: iterations until the largest change of ``h`` in one
    iteration is at most ``tol`` (at most ``max_iters``)."""
    xz = _input_product(p, xs)

    def cond(s):
        k, _, delta = s
        return (k < max_iters) & (delta > tol)

    def body(s):
        k, hs, _ = s
        new = _iterate(p, xz, h0, c0, hs)[0]
        return k + 1, new, jnp.max(jnp.abs(new - hs))

    hs0 = jnp.zeros(xs.shape[:2] + h0.shape[-1:], xs.dtype)
    k, _, delta = jax.lax.while_loop(cond, body, (0, hs0, jnp.array(jnp.inf, xs.dtype)))
    return int(k), float(delta)
