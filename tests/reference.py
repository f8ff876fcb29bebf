"""Float64 NumPy references written from the textbook equations, not from the library's code.

Every gate has its own matrix acting on the concatenation ``[h_{t-1}, x_t]``, exactly as in the
seed article: ``f_t = sigma(W_f . [h_{t-1}, x_t] + b_f)``. :func:`textbook_lstm_weights` is the
only place that knows the library's fused layout, and it is the documented one.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def layer_norm(v, scale, bias=None, eps=1e-5):
    mu = v.mean(-1, keepdims=True)
    var = ((v - mu) ** 2).mean(-1, keepdims=True)
    out = (v - mu) / np.sqrt(var + eps) * scale
    return out if bias is None else out + bias


def textbook_lstm_weights(params, hidden_size: int, forget_gate: bool = True):
    """Documented layout -> per-gate ``W_k: (H, P + I)`` on ``[h, x]`` and ``b_k: (H,)``."""
    H = hidden_size
    names = ["i", "f", "g", "o"] if forget_gate else ["i", "g", "o"]
    w_x, w_h = np.asarray(params.w_x, np.float64), np.asarray(params.w_h, np.float64)
    b = None if params.b is None else np.asarray(params.b, np.float64)
    out = {}
    for k, name in enumerate(names):
        block = slice(k * H, (k + 1) * H)
        out["W_" + name] = np.concatenate([w_h[:, block], w_x[:, block]], axis=0).T
        out["b_" + name] = np.zeros(H) if b is None else b[block]
        out["Wx_" + name], out["Wh_" + name] = w_x[:, block].T, w_h[:, block].T
    return out


def lstm_step(
    params,
    h,
    c,
    x,
    *,
    hidden_size,
    forget_gate=True,
    peephole=False,
    proj=False,
    layer_norm_on=False,
    sigma=sigmoid,
    act=np.tanh,
):
    """One step for one example: ``h: (P,)``, ``c: (H,)``, ``x: (I,)``."""
    W = textbook_lstm_weights(params, hidden_size, forget_gate)
    hx = np.concatenate([h, x])

    def pre(k):
        if not layer_norm_on:
            return W["W_" + k] @ hx + W["b_" + k]
        ln = params.layer_norm
        H, names = hidden_size, (["i", "f", "g", "o"] if forget_gate else ["i", "g", "o"])
        zx = np.concatenate([W["Wx_" + n] @ x for n in names])
        zh = np.concatenate([W["Wh_" + n] @ h for n in names])
        zx = layer_norm(zx, np.asarray(ln.scale_x, np.float64))
        zh = layer_norm(zh, np.asarray(ln.scale_h, np.float64))
        j = names.index(k)
        return (zx + zh)[j * H : (j + 1) * H] + W["b_" + k]

    pp = params.peephole
    w_ci, w_cf, w_co = (
        (np.zeros(hidden_size),) * 3
        if pp is None
        else (
            np.asarray(pp.w_ci, np.float64),
            np.asarray(pp.w_cf, np.float64),
            np.asarray(pp.w_co, np.float64),
        )
    )
    f = sigma(pre("f") + w_cf * c) if forget_gate else np.ones(hidden_size)
    i = sigma(pre("i") + w_ci * c)
    c_tilde = act(pre("g"))
    c_new = f * c + i * c_tilde
    o = sigma(pre("o") + w_co * c_new)
    if layer_norm_on:
        ln = params.layer_norm
        h_new = o * act(
            layer_norm(c_new, np.asarray(ln.scale_c, np.float64), np.asarray(ln.bias_c, np.float64))
        )
    else:
        h_new = o * act(c_new)
    if proj:
        h_new = h_new @ np.asarray(params.w_proj, np.float64)
    return h_new, c_new


def gru_step(params, h, x, *, hidden_size, reset_after=True):
    """One GRU step for one example, Cho et al. (2014) / PyTorch's formulation."""
    H = hidden_size
    w_x, w_h = np.asarray(params.w_x, np.float64), np.asarray(params.w_h, np.float64)
    b = np.zeros(3 * H) if params.b is None else np.asarray(params.b, np.float64)
    b_hn = np.zeros(H) if params.b_hn is None else np.asarray(params.b_hn, np.float64)
    Wx = [w_x[:, k * H : (k + 1) * H].T for k in range(3)]  # r, z, n
    Wh = [w_h[:, k * H : (k + 1) * H].T for k in range(3)]
    bs = [b[k * H : (k + 1) * H] for k in range(3)]
    r = sigmoid(Wx[0] @ x + Wh[0] @ h + bs[0])
    z = sigmoid(Wx[1] @ x + Wh[1] @ h + bs[1])
    if reset_after:
        n = np.tanh(Wx[2] @ x + bs[2] + r * (Wh[2] @ h + b_hn))
    else:
        n = np.tanh(Wx[2] @ x + Wh[2] @ (r * h) + bs[2])
    return (1 - z) * n + z * h


def rnn_step(params, h, x):
    b = 0.0 if params.b is None else np.asarray(params.b, np.float64)
    return np.tanh(
        np.asarray(params.w_x, np.float64).T @ x + np.asarray(params.w_h, np.float64).T @ h + b
    )


def run_sequence(step, carry, xs, length=None, reverse=False):
    """Python loop over one example ``xs: (T, I)``; returns ``(final carry, ys (T, P))``.

    Padding (``t >= length``) is skipped: carry frozen, outputs zero. ``reverse`` reads the valid
    part from its last step back to the first; outputs stay in input order.
    """
    T = xs.shape[0]
    length = T if length is None else int(length)
    order = range(length - 1, -1, -1) if reverse else range(length)
    ys = [None] * T
    for t in order:
        carry = step(carry, xs[t])
        ys[t] = carry[0] if isinstance(carry, tuple) else carry
    out_size = (carry[0] if isinstance(carry, tuple) else carry).shape[-1]
    ys = [np.zeros(out_size) if y is None else y for y in ys]
    return carry, np.stack(ys)
