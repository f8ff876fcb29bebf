"""sLSTM and mLSTM cells: float64 NumPy loops written from the equations of Beck et al. (2024),
lengths, reverse, stacks, jit/vmap/grad, T = 10,000 stability and bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ATOL, FLOAT, RTOL, X64, assert_close
from jax.test_util import check_grads

import lstm_jax as lj


def _f64(cell):
    """The cell with FLOAT params: float64 in the x64 pass, float32 otherwise."""
    return dataclasses.replace(cell, param_dtype=FLOAT)


def _random_params(cell, key, input_size, scale=0.5):
    params = cell.init(key, input_size)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return tree.unflatten(
        [
            a + scale * jax.random.normal(k, a.shape, a.dtype)
            for a, k in zip(leaves, keys, strict=True)
        ]
    )


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def slstm_reference(cell, params, xs, forget="sigmoid"):
    """One example, a NumPy float64 loop over time; ``xs: (T, I)`` -> ``(T, H)``, state."""
    H, NH = cell.hidden_size, cell.num_heads
    D = H // NH
    w, r, b = (np.asarray(a, np.float64) for a in params)
    R = np.zeros((H, 4 * H))  # the block-diagonal recurrent matrix in gate-block layout
    for k in range(NH):
        for g in range(4):
            R[k * D : (k + 1) * D, g * H + k * D : g * H + (k + 1) * D] = r[k][
                :, g * D : (g + 1) * D
            ]
    h = c = n = m = np.zeros(H)
    ys = []
    for x in np.asarray(xs, np.float64):
        i_, f_, z_, o_ = np.split(x @ w + h @ R + b, 4)
        log_f = np.log(_sigmoid(f_)) if forget == "sigmoid" else f_
        m_new = np.where(n == 0, i_, np.maximum(log_f + m, i_))
        ig, fg = np.exp(i_ - m_new), np.exp(log_f + m - m_new)
        c = fg * c + ig * np.tanh(z_)
        n = fg * n + ig
        m = m_new
        h = _sigmoid(o_) * c / n
        ys.append(h)
    return np.stack(ys), (h, c, n, m)


def mlstm_reference(cell, params, xs):
    """One example, ``xs: (T, I)``: the recurrent equations, unstabilised (float64 suffices)."""
    H, NH = cell.hidden_size, cell.num_heads
    D = H // NH
    z_all = np.asarray(xs, np.float64) @ np.asarray(params.w_x, np.float64) + np.asarray(params.b)
    C, nvec = np.zeros((NH, D, D)), np.zeros((NH, D))
    ys = []
    for z in z_all:
        q, k, v, o = (z[j * H : (j + 1) * H].reshape(NH, D) for j in range(4))
        k = k / np.sqrt(D)
        i_, f_ = z[4 * H : 4 * H + NH], z[4 * H + NH :]
        f = _sigmoid(f_) if cell.forget_gate == "sigmoid" else np.exp(f_)
        C = f[:, None, None] * C + np.exp(i_)[:, None, None] * k[:, :, None] * v[:, None, :]
        nvec = f[:, None] * nvec + np.exp(i_)[:, None] * k
        num = np.einsum("kd,kde->ke", q, C)
        den = np.maximum(np.abs(np.sum(q * nvec, -1)), 1.0)
        h = (num / den[:, None]).reshape(H)
        ys.append(_sigmoid(o.reshape(H)) * h if cell.output_gate else h)
    return np.stack(ys), (C, nvec)


@pytest.mark.x64
@pytest.mark.parametrize("forget", ["sigmoid", "exp"])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
def test_slstm_matches_numpy_reference(forget, batch):
    cell = _f64(lj.sLSTMCell(8, num_heads=2, forget_gate=forget, forget_bias=1.0))
    params = _random_params(cell, jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (*batch, 9, 3), FLOAT)
    carry, ys = lj.scan(cell, params, xs)
    flat_x, flat_y = xs.reshape(-1, 9, 3), ys.reshape(-1, 9, 8)
    flat_c = jax.tree.map(lambda a: a.reshape(-1, 8), carry)
    for e in range(flat_x.shape[0]):
        want, (h, c, n, m) = slstm_reference(cell, params, flat_x[e], forget)
        assert_close(flat_y[e], want)
        for ours, theirs in zip(
            (flat_c.h, flat_c.c, flat_c.n, flat_c.m), (h, c, n, m), strict=True
        ):
            assert_close(ours[e], theirs)


@pytest.mark.x64
@pytest.mark.parametrize("forget, gate", [("sigmoid", True), ("exp", False)])
def test_mlstm_matches_numpy_reference(forget, gate):
    cell = _f64(lj.mLSTMCell(8, num_heads=2, forget_gate=forget, output_gate=gate, eps=0.0))
    params = _random_params(cell, jax.random.key(2), 3, scale=0.3)
    xs = jax.random.normal(jax.random.key(3), (2, 12, 3), FLOAT)
    _, ys = lj.scan(cell, params, xs)
    _, yp = lj.parallel_scan(cell, params, xs, chunk_size=5)
    for e in range(2):
        want, _ = mlstm_reference(cell, params, xs[e])
        assert_close(ys[e], want, rtol=RTOL, atol=10 * ATOL)
        assert_close(yp[e], want, rtol=RTOL, atol=10 * ATOL)


@pytest.mark.parametrize("reverse", [False, True])
def test_slstm_lengths_and_reverse_match_unpadded_runs(reverse):
    cell = lj.sLSTMCell(6, num_heads=3, recurrent_init="orthogonal")
    params = cell.init(jax.random.key(0), 4)
    xs = jax.random.normal(jax.random.key(1), (3, 10, 4))
    lengths = jnp.array([10, 4, 0])
    carry, ys = lj.scan(cell, params, xs, lengths=lengths, reverse=reverse)
    for e, L in enumerate([10, 4, 0]):
        if L == 0:
            np.testing.assert_array_equal(carry.h[e], 0.0)
            continue
        c_e, y_e = lj.scan(cell, params, xs[e, :L], reverse=reverse)
        np.testing.assert_allclose(ys[e, :L], y_e, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ys[e, L:], 0.0)
        np.testing.assert_allclose(carry.n[e], c_e.n, rtol=1e-6)


def test_slstm_bidirectional_stack_runs_each_direction_as_scan():
    cell = lj.sLSTMCell(4, num_heads=2, recurrent_init="orthogonal")
    rnn = lj.StackedRNN(cell, num_layers=2, bidirectional=True)
    params = rnn.init(jax.random.key(0), input_size=3)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 3))
    _, ys = rnn.apply(params, xs)
    _, fwd = lj.scan(cell, params[0].forward, xs)
    _, bwd = lj.scan(cell, params[0].backward, xs, reverse=True)
    _, top_f = lj.scan(cell, params[1].forward, jnp.concatenate([fwd, bwd], -1))
    assert ys.shape == (2, 6, 8)
    np.testing.assert_allclose(ys[..., :4], top_f, rtol=1e-5, atol=1e-6)


@pytest.mark.x64
def test_mlstm_layers_run_the_chunkwise_form_in_both_modes(monkeypatch):
    """An mLSTM in a layer runs ``parallel_scan`` (chunkwise, the faster form to train and to
    differentiate in forward mode) unless ``backward="autodiff"``; outputs, final carries,
    gradients and tangents equal the step-by-step recurrence, with two bidirectional layers,
    lengths, a carry and time-major input."""
    import lstm_jax.layers.stacked as stacked

    log = []
    real = stacked.parallel_scan
    monkeypatch.setattr(stacked, "parallel_scan", lambda *a, **k: (log.append(1), real(*a, **k))[1])
    cell = _f64(lj.mLSTMCell(8, num_heads=2))
    make = lambda backward: lj.StackedRNN(  # noqa: E731
        cell, num_layers=2, bidirectional=True, time_major=True, backward=backward
    )
    rnn, ref = make("fast"), make("autodiff")
    params = _random_params(rnn, jax.random.key(0), 3, scale=0.1)
    xs = jax.random.normal(jax.random.key(1), (70, 3, 3), FLOAT)  # T = 70: two chunks of 64
    carry = jax.tree.map(lambda a: a + 0.1, rnn.initial_carry((3,)))
    lengths = jnp.array([70, 33, 0])
    w = jax.random.normal(jax.random.key(2), (70, 3, 16), FLOAT)

    def loss(layer, p):
        final, ys = layer.apply(p, xs, carry, lengths=lengths)
        return jnp.sum(ys * w) + sum(jnp.sum(jnp.tanh(a)) for a in jax.tree.leaves(final))

    for fn in (
        lambda layer: layer.apply(params, xs, carry, lengths=lengths),
        lambda layer: jax.grad(lambda p: loss(layer, p))(params),
        lambda layer: jax.jvp(lambda p: loss(layer, p), (params,), (params,)),
    ):
        log.clear()
        jax.clear_caches()  # the layers trace once per config and shapes: trace this call
        got = fn(rnn)
        assert len(log) == 4  # two layers, two directions each
        log.clear()
        want = fn(ref)
        assert not log
        tol = 1e-9 if X64 else 1e-4  # float32: relative to each array's scale (grads ~1e4)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert_close(a, b, rtol=tol, atol=tol * max(1.0, float(jnp.max(jnp.abs(b)))))


def test_slstm_jit_vmap_and_python_loop_agree():
    cell = lj.sLSTMCell(4, num_heads=2, recurrent_init="orthogonal")
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (5, 7, 3))
    _, ys = lj.scan(cell, params, xs)
    _, ys_jit = jax.jit(lambda p, x: lj.scan(cell, p, x))(params, xs)
    _, ys_vmap = jax.vmap(lambda x: lj.scan(cell, params, x))(xs)
    carry, loop = cell.initial_carry((5,)), []
    for t in range(7):
        carry, y = cell(params, carry, xs[:, t])
        loop.append(y)
    for other in (ys_jit, ys_vmap, jnp.stack(loop, 1)):
        np.testing.assert_allclose(ys, other, rtol=1e-6, atol=1e-6)


@pytest.mark.x64
@pytest.mark.skipif(not X64, reason="finite differences need float64")
@pytest.mark.parametrize(
    "cell",
    [lj.sLSTMCell(4, num_heads=2, recurrent_init="orthogonal"), lj.mLSTMCell(4, num_heads=2)],
)
def test_gradients_match_finite_differences(cell):
    cell = _f64(cell)
    params = _random_params(cell, jax.random.key(0), 3, scale=0.3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3), FLOAT)

    def f(params, xs):
        return lj.scan(cell, params, xs)[1]

    check_grads(f, (params, xs), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.slow
def test_slstm_is_stable_at_ten_thousand_steps():
    cell = lj.sLSTMCell(8, num_heads=2, forget_gate="exp", recurrent_init="orthogonal")
    params = _random_params(cell, jax.random.key(0), 3, scale=2.0)  # large gate pre-activations
    xs = 5.0 * jax.random.normal(jax.random.key(1), (1, 10_000, 3))

    def loss(params, xs):
        carry, ys = lj.scan(cell, params, xs)
        return jnp.sum(ys**2) + jnp.sum(carry.c)

    value, (g_p, g_x) = jax.value_and_grad(loss, argnums=(0, 1))(params, xs)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves((g_p, g_x)))
    carry, ys = lj.scan(cell, params, xs)
    assert float(jnp.min(carry.n)) >= 1.0 - 1e-6  # the normaliser never falls below 1
    assert float(jnp.max(jnp.abs(ys))) <= 1.0 + 1e-5  # |h| = |o c / n| <= 1


def test_bad_configs_and_inputs_get_clear_errors():
    with pytest.raises(
        ValueError, match=r"sLSTMCell.*num_heads.*divide.*hidden_size=6.*num_heads=4"
    ):
        lj.sLSTMCell(6, num_heads=4)
    with pytest.raises(ValueError, match=r"mLSTMCell.*num_heads.*divide"):
        lj.mLSTMCell(10, num_heads=3)
    with pytest.raises(ValueError, match=r"sLSTMCell.*forget_gate.*'tanh'"):
        lj.sLSTMCell(4, forget_gate="tanh")
    with pytest.raises(ValueError, match=r"sLSTMCell.*num_heads.*positive int"):
        lj.sLSTMCell(4, num_heads=0)
    cell = lj.mLSTMCell(4, num_heads=2)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"mLSTMCell.__call__.*recurrent_mask.*must be None"):
        cell(params, cell.initial_carry(), jnp.ones(3), recurrent_mask=jnp.ones(4))
    with pytest.raises(ValueError, match=r"has 5 features but `params` expect 3"):
        lj.scan(cell, params, jnp.ones((2, 4, 5)))
    s = lj.sLSTMCell(4, num_heads=2)
    with pytest.raises(TypeError, match=r"params.*sLSTMParams"):
        lj.scan(s, params, jnp.ones((2, 4, 3)))


def test_readme_block_runs():
    from test_readme import block, run

    ns = run(block("import jax, jax.numpy as jnp\nimport lstm_jax as lj\n\nxs = jax.random"))
    assert ns["ys"].shape == (8, 500, 64) and ns["ys_p"].shape == (8, 500, 64)
    assert isinstance(ns["cell"], lj.minGRUCell)  # the loop reached the last cell


@pytest.mark.slow
def test_benchmark_script_prints_every_form():
    import os
    import re
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "benchmarks", "bench_xlstm.py")
    cmd = [sys.executable, script, "--quick", "--T", "16"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    ms, ratio = r"[\d.]+ / [\d.]+ / [\d.]+", r"\(([\d.]+)x / ([\d.]+)x / ([\d.]+)x\)"
    rows = re.findall(rf"^\| 16 \| (.+?) \| {ms} {ratio} \| [\d.]+x \| \d+ \|$", out.stdout, re.M)
    assert len(rows) == 7  # every form, with forward, training and forward-mode times
    assert rows[0][0].startswith("LSTM") and rows[0][1:] == ("1.00", "1.00", "1.00")
