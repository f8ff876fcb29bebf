"""xLSTM blocks, stack and LM head: shapes, causality, forms, jit/grad, training, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lstm_jax import (
    mLSTMBlock,
    mLSTMState,
    sLSTMBlock,
    sLSTMState,
    xLSTMLM,
    xLSTMStack,
)

E = 16
R = 16  # round the inner widths to multiples of 16, not 64, to keep the tests small


def xs_of(seed, shape=(2, 12, E)):
    return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize(
    "block", [mLSTMBlock(E, num_heads=4, round_to=R), sLSTMBlock(E, num_heads=4, round_to=R)]
)
def test_block_shapes_and_carry(block):
    params = block.init(jax.random.key(0), E)
    carry, ys = jax.jit(block.apply)(params, xs_of(1))
    assert ys.shape == (2, 12, E)
    want = block.cell.carry_shapes((2,))
    assert jax.tree.map(jnp.shape, carry) == want
    assert np.all(np.isfinite(ys))


def test_stack_ratio_and_carry():
    stack = xLSTMStack(E, num_blocks=8, slstm_at=(1,), round_to=R)  # xLSTM[7:1]
    kinds = [type(b).__name__ for b in stack.blocks]
    assert kinds == ["mLSTMBlock", "sLSTMBlock"] + ["mLSTMBlock"] * 6
    stack = xLSTMStack(E, num_blocks=3, slstm_at=(1,), round_to=R)
    params = stack.init(jax.random.key(0), E)
    carry, ys = jax.jit(stack.apply)(params, xs_of(2, (1, 5, E)))
    assert ys.shape == (1, 5, E)
    assert [type(c) for c in carry] == [mLSTMState, sLSTMState, mLSTMState]
    assert None not in jax.tree.leaves(carry, is_leaf=lambda a: a is None)


def test_lm_shapes():  # tied here; the training test runs an untied head
    lm = xLSTMLM(40, xLSTMStack(E, num_blocks=2, slstm_at=(0,), round_to=R))
    params = lm.init(jax.random.key(0))
    assert params.head is None
    carry, logits = jax.jit(lm.apply)(params, jnp.arange(18).reshape(2, 9) % 40)
    assert logits.shape == (2, 9, 40) and len(carry) == 2


def test_causal():
    """The output at t does not move when inputs after t are perturbed; it does before (a
    stack of both blocks, the mLSTM chunkwise with chunks of 4)."""
    model = xLSTMStack(E, num_blocks=2, slstm_at=(1,), round_to=R, chunk_size=4)
    params = model.init(jax.random.key(0), E)
    apply = jax.jit(model.apply)
    xs = xs_of(3, (1, 10, E))
    t = 5
    _, ys = apply(params, xs)
    _, ys2 = apply(params, xs.at[:, t + 1 :].add(3.0))
    np.testing.assert_array_equal(ys[:, : t + 1], ys2[:, : t + 1])
    assert not np.allclose(ys[:, t + 1 :], ys2[:, t + 1 :])
    _, ys3 = apply(params, xs.at[:, t].add(3.0))
    assert not np.allclose(ys[:, t:], ys3[:, t:])
    np.testing.assert_array_equal(ys[:, :t], ys3[:, :t])


@pytest.mark.parametrize("chunk", [None, 5])  # one chunk; chunks of 5 with padding
def test_mlstm_block_forms_agree(chunk):
    """The block's mLSTM path through `parallel_scan` (chunkwise) equals `scan` (recurrent)."""
    chunkwise = mLSTMBlock(E, num_heads=4, round_to=R, chunk_size=chunk)
    recurrent = mLSTMBlock(E, num_heads=4, round_to=R, form="recurrent")
    params = chunkwise.init(jax.random.key(4), E)
    xs = xs_of(5, (2, 13, E))
    c1, y1 = jax.jit(chunkwise.apply)(params, xs)
    c2, y2 = jax.jit(recurrent.apply)(params, xs)
    np.testing.assert_allclose(y1, y2, rtol=1e-4, atol=1e-5)
    for a, b in zip(c1, c2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_masked_weights_do_not_matter():
    """Entries outside the block-diagonal q, k, v structure never reach the output."""
    block = mLSTMBlock(E, num_heads=4, round_to=R)
    params = block.init(jax.random.key(0), E)
    mask, _ = block.cell_mask()
    noise = jax.random.normal(jax.random.key(9), params.cell.w_x.shape) * (1 - mask)
    noisy = params._replace(cell=params.cell._replace(w_x=params.cell.w_x + noise))
    xs = xs_of(6)
    apply = jax.jit(block.apply)
    np.testing.assert_array_equal(apply(params, xs)[1], apply(noisy, xs)[1])


@pytest.mark.slow
@pytest.mark.loose_promotion  # optax.adam's update mixes a Python float with its int32 count
def test_tiny_lm_jit_grad_and_training():
    """A period-4 token sequence: gradients are finite and nonzero, and a few jitted Adam
    steps of an xLSTM[1:1] LM (chunkwise mLSTM block, sLSTM block) lower the loss a lot."""
    stack = xLSTMStack(E, 2, slstm_at=(1,), mlstm_heads=2, slstm_heads=2, round_to=R)
    lm = xLSTMLM(8, stack, tie_weights=False)
    params = lm.init(jax.random.key(0))
    assert params.head.shape == (E, 8)
    ids = (jnp.arange(4 * 17).reshape(4, 17) * 3 + jnp.arange(4)[:, None]) % 4

    def loss(p):
        logits = lm.apply(p, ids[:, :-1])[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()

    opt = optax.adam(3e-3)

    @jax.jit
    def step(p, s):
        value, g = jax.value_and_grad(loss)(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, value, g

    state = opt.init(params)
    params, state, first, grads = step(params, state)
    leaves = jax.tree.leaves(grads)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    for block in grads.stack.blocks:  # every block's cell gets a gradient
        assert float(jnp.sum(jnp.abs(block.cell.w_x))) > 0
    for _ in range(24):
        params, state, value, _ = step(params, state)
    assert np.isfinite(value) and float(value) < 0.5 * float(first)


def test_errors():
    with pytest.raises(ValueError, match=r"`sLSTMBlock`: `num_heads` must divide embedding_dim"):
        sLSTMBlock(30, num_heads=4)
    with pytest.raises(ValueError, match=r"`xLSTMStack`: `slstm_heads` must divide embedding_dim"):
        xLSTMStack(30, num_blocks=2, slstm_at=(0,), slstm_heads=4, mlstm_heads=2)
    with pytest.raises(ValueError, match=r"`mLSTMBlock`: `num_heads` must divide the inner"):
        mLSTMBlock(16, num_heads=5, round_to=R)
    with pytest.raises(ValueError, match=r"`slstm_at` must hold distinct block indices in \[0, 8"):
        xLSTMStack(E, num_blocks=8, slstm_at=(8,))
    with pytest.raises(ValueError, match=r"`slstm_at` must hold distinct .* got \(1, 1\)"):
        xLSTMStack(E, num_blocks=8, slstm_at=(1, 1))
    with pytest.raises(TypeError, match=r"`slstm_at` must be a tuple of ints; got 1"):
        xLSTMStack(E, num_blocks=8, slstm_at=1)
    with pytest.raises(ValueError, match=r"`form` must be one of"):
        mLSTMBlock(E, form="parallel-ish")
    block = mLSTMBlock(E, round_to=R)
    with pytest.raises(ValueError, match=r"`mLSTMBlock.init`: `input_size` must equal embed"):
        block.init(jax.random.key(0), 8)
    params = block.init(jax.random.key(0), E)
    with pytest.raises(ValueError, match=r"`mLSTMBlock.apply`: `xs` must have embedding_dim=16"):
        block.apply(params, jnp.ones((2, 3, 8)))
    lm = xLSTMLM(10, xLSTMStack(E, num_blocks=1, round_to=R))
    with pytest.raises(TypeError, match=r"`xLSTMLM.apply`: `ids` must be an integer array"):
        lm.apply(lm.init(jax.random.key(0)), jnp.ones((2, 3)))
    # an id past the vocabulary would read a clipped row of the embedding: refused
    with pytest.raises(ValueError, match=r"`xLSTMLM.apply`: `ids` must lie in \[0, vocab_size=10"):
        lm.apply(lm.init(jax.random.key(0)), jnp.array([[1, 10, 2]]))


@pytest.mark.slow
def test_readme_example():
    from test_readme import block, run

    code = block("import jax, jax.numpy as jnp\nimport lstm_jax as lj\n\nstack = lj.xLSTMStack")
    ns = run(code)
    assert ns["logits"].shape == (2, 16, 100)
    assert [type(c).__name__ for c in ns["carry"]] == ["mLSTMState", "sLSTMState"]
