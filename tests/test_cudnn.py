"""The cuDNN kernel of StackedRNN: weight packing, semantics, selection, vmap and errors.

Without a GPU the cuDNN call itself cannot run, so these tests put ``jax.experimental.rnn``'s
own reference of cuDNN's maths (``lstm_ref``, which reads the same flat weight vector) in its
place: that checks everything this library does around the call (packing, lengths, carries,
layouts, bidirectional stacks, dropout, vmap, gradients). ``test_cudnn_on_gpu_equals_scan``
runs the real cuDNN call where JAX has a CUDA GPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn as jrnn

import lstm_jax as lj
from lstm_jax import _cudnn

pytestmark = pytest.mark.usefixtures("highest_precision")


@pytest.fixture
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture
def emulated(monkeypatch):
    """Pretend cuDNN is here, with its maths run by the plain-JAX reference."""
    monkeypatch.setattr(_cudnn, "CUDNN", _cudnn.REFERENCE)
    monkeypatch.setattr(_cudnn, "available", lambda: True)


def _random_carry(rnn, batch, seed=2):
    return jax.tree.map(
        lambda a: jax.random.normal(jax.random.key(seed), a.shape), rnn.initial_carry(batch)
    )


def _value_and_grads(apply, params, xs, carry):
    def loss(p, x, c):
        ys, c = apply(p, x, c)
        return jnp.sum(ys**2) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(c)), (ys, c)

    return jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(params, xs, carry)


def _assert_trees_close(a, b, atol=2e-5):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=atol)


LENGTHS = np.array([[7, 3, 0], [1, 7, 5]])


@pytest.mark.parametrize(
    "num_layers, bidirectional, time_major, lengths",
    [
        (1, False, False, None),
        (1, False, False, LENGTHS),
        (2, True, False, LENGTHS),
        (3, True, True, None),
        (2, False, True, LENGTHS),
    ],
)
def test_packed_kernel_equals_scan(num_layers, bidirectional, time_major, lengths):
    """Outputs, final carries of every layer and direction, and grads w.r.t. params, inputs
    and the initial carry, through the packed-weights call, equal those of ``jax.lax.scan``;
    batch shape (2, 3), empty and partial sequences included."""
    rnn = lj.LSTM(8, num_layers, bidirectional, time_major=time_major, kernel="scan")
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 3, 7, 3))
    xs = jnp.moveaxis(xs, -2, 0) if time_major else xs
    lengths = None if lengths is None else jnp.asarray(lengths)
    carry = _random_carry(rnn, (2, 3))
    want = _value_and_grads(lambda p, x, c: rnn.apply(p, x, c, lengths=lengths), params, xs, carry)
    got = _value_and_grads(
        lambda p, x, c: _cudnn.cudnn_stack(rnn, p, x, c, lengths, _cudnn.REFERENCE),
        params,
        xs,
        carry,
    )
    _assert_trees_close(got, want)


def test_pack_weights_is_cudnns_layout():
    """jax.experimental.rnn's unpacker reads back W_ih = w_x.T, W_hh = w_h.T, b_ih = b, b_hh = 0
    for every pseudo-layer, in the order forward-0, backward-0, forward-1, backward-1."""
    rnn = lj.LSTM(4, num_layers=2, bidirectional=True)
    params = rnn.init(jax.random.key(0), 3)
    w = _cudnn.pack_weights(params, bidirectional=True)
    assert w.shape == (jrnn.get_num_params_in_lstm(3, 4, 2, True),)
    W_ih, W_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(w, 3, 4, 2, True)
    cells = [params[0].forward, params[0].backward, params[1].forward, params[1].backward]
    for k, cell in enumerate(cells):
        np.testing.assert_array_equal(W_ih[k], cell.w_x.T)
        np.testing.assert_array_equal(W_hh[k], cell.w_h.T)
        np.testing.assert_array_equal(b_ih[k], cell.b)
        np.testing.assert_array_equal(b_hh[k], np.zeros(16))


def test_use_bias_false_packs_zero_biases():
    rnn = lj.LSTM(4, use_bias=False, kernel="scan")
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    carry = rnn.initial_carry((2,))
    want = rnn.apply(params, xs, carry)
    got = _cudnn.cudnn_stack(rnn, params, xs, carry, None, _cudnn.REFERENCE)
    _assert_trees_close(got, want)


def test_auto_on_cpu_is_scan():
    """Without a GPU, kernel='auto' is the scan path, bit for bit."""
    assert not _cudnn.available()
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    auto, scan = lj.LSTM(8, 2), lj.LSTM(8, 2, kernel="scan")
    params = auto.init(jax.random.key(0), 3)
    np.testing.assert_array_equal(auto.apply(params, xs)[0], scan.apply(params, xs)[0])


def test_kernel_cudnn_without_gpu_raises():
    rnn = lj.LSTM(8, kernel="cudnn")
    params = rnn.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="kernel='cudnn' cannot run this call: JAX's default"):
        rnn.apply(params, jnp.ones((2, 5, 3)))


def test_unknown_kernel_raises():
    with pytest.raises(ValueError, match=r"`kernel` must be one of \('auto', 'scan', 'cudnn'\)"):
        lj.LSTM(8, kernel="pallas")


@pytest.mark.parametrize(
    "rnn, reason",
    [
        (lj.GRU(8), "LSTM cells only, not GRUCell"),
        (lj.LSTM(8, peephole=True), "`peephole=True`"),
        (lj.LSTM(8, proj_size=4), "`proj_size=4`"),
        (lj.LSTM(8, layer_norm=True), "`layer_norm=True`"),
        (lj.LSTM(8, forget_gate=False), "`forget_gate=False`"),
        (lj.LSTM(8, gate_activation="hard_sigmoid"), "`gate_activation='hard_sigmoid'`"),
        (lj.LSTM(8, dtype=jnp.bfloat16), "float32 only"),
        (lj.LSTM(8, recurrent_dropout=0.2), "`recurrent_dropout` > 0"),
    ],
)
def test_unsupported_configs_name_the_reason(rnn, reason):
    why = _cudnn.unsupported(rnn, dropout_key=True, batch=2, T=5, check_device=False)
    assert any(reason in w for w in why), why


def test_recurrent_dropout_only_matters_with_a_key():
    rnn = lj.LSTM(8, recurrent_dropout=0.2)
    assert not _cudnn.unsupported(rnn, dropout_key=False, batch=2, T=5, check_device=False)


def test_empty_batch_or_sequence_is_not_sent_to_cudnn():
    why = _cudnn.unsupported(lj.LSTM(8), dropout_key=False, batch=0, T=5, check_device=False)
    assert any("empty batch" in w for w in why)


def test_auto_selects_the_kernel_where_it_applies(emulated, monkeypatch):
    """With cuDNN 'present', kernel='auto' calls it for a plain LSTM and falls back to scan for
    what it cannot run; results equal the scan path either way."""
    calls = []
    real = _cudnn.cudnn_stack
    monkeypatch.setattr(_cudnn, "cudnn_stack", lambda *a, **k: calls.append(1) or real(*a, **k))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    for rnn, expect_call in ((lj.LSTM(8, 2, True), True), (lj.LSTM(8, peephole=True), False)):
        calls.clear()
        params = rnn.init(jax.random.key(0), 3)
        ys, carry = rnn.apply(params, xs)
        scan = lj.StackedRNN(rnn.cell, rnn.num_layers, rnn.bidirectional, kernel="scan")
        _assert_trees_close((ys, carry), scan.apply(params, xs))
        assert bool(calls) == expect_call


def test_dropout_between_layers_matches_scan_with_the_same_key(emulated):
    """With a key, inter-layer dropout runs one kernel call per layer, with scan's masks."""
    kw = dict(hidden_size=8, num_layers=3, bidirectional=True, dropout=0.5)
    fast, scan = lj.LSTM(**kw), lj.LSTM(**kw, kernel="scan")
    params = fast.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3))
    key = jax.random.key(7)
    _assert_trees_close(fast.apply(params, xs, key=key), scan.apply(params, xs, key=key))


def test_vmap_over_params_and_grad_of_vmap(emulated):
    """An ensemble (params vmapped) runs the kernel once per member, and differentiates."""
    rnn = lj.LSTM(8, kernel="cudnn")
    scan = lj.LSTM(8, kernel="scan")
    params = jax.vmap(lambda k: rnn.init(k, 3))(jax.random.split(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (4, 5, 3))

    def loss(model, p):
        return jnp.sum(jax.vmap(lambda q: model.apply(q, xs)[0])(p) ** 2)

    _assert_trees_close(
        jax.jit(jax.value_and_grad(loss, 1), static_argnums=0)(rnn, params),
        jax.value_and_grad(loss, 1)(scan, params),
    )


def test_vmap_over_inputs(emulated):
    rnn = lj.LSTM(8, kernel="cudnn")
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 4, 5, 3))
    got = jax.vmap(lambda x: rnn.apply(params, x)[0])(xs)
    want = lj.LSTM(8, kernel="scan").apply(params, xs)[0]
    _assert_trees_close(got, want)


def test_unbatched_input(emulated):
    rnn = lj.LSTM(8, kernel="cudnn")
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (5, 3))
    _assert_trees_close(rnn.apply(params, xs), lj.LSTM(8, kernel="scan").apply(params, xs))


@pytest.mark.skipif(not _cudnn.available(), reason="needs a CUDA GPU as JAX's default backend")
@pytest.mark.parametrize("bidirectional, lengths", [(False, None), (True, LENGTHS)])
def test_cudnn_on_gpu_equals_scan(bidirectional, lengths):
    rnn = lj.LSTM(16, 2, bidirectional, kernel="cudnn")
    scan = lj.LSTM(16, 2, bidirectional, kernel="scan")
    params = rnn.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 3, 7, 3))
    lengths = None if lengths is None else jnp.asarray(lengths)
    carry = _random_carry(rnn, (2, 3))
    got = _value_and_grads(lambda p, x, c: rnn.apply(p, x, c, lengths=lengths), params, xs, carry)
    want = _value_and_grads(lambda p, x, c: scan.apply(p, x, c, lengths=lengths), params, xs, carry)
    _assert_trees_close(got, want, atol=1e-4)
