"""lstm_jax.nnx cells against flax.nnx's: constructors, submodules, state trees, steps, dtypes."""

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")

from helpers import ATOL, FLOAT  # noqa: E402

from lstm_jax import nnx as ljnnx  # noqa: E402

B, I, H = 3, 2, 4
NAMES = ["LSTMCell", "OptimizedLSTMCell", "GRUCell", "SimpleCell"]
SUBMODULES = {
    "LSTMCell": ["ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"],
    "OptimizedLSTMCell": ["dense_i", "dense_h"],
    "GRUCell": ["dense_i", "dense_h"],
    "SimpleCell": ["dense_i", "dense_h"],
}


def pure(tree):
    """Plain arrays (PRNG keys as their data) from an nnx state or any pytree."""
    if isinstance(tree, nnx.Module):
        tree = nnx.to_pure_dict(nnx.state(tree))

    def data(a):
        a = jnp.asarray(a)
        return jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a

    return jax.tree.map(data, tree)


def close(a, b, tol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), tol, tol)


def variables(module):
    """``{path: (Variable type, shape, dtype)}`` of every variable in ``module``'s state."""
    leaves = jax.tree_util.tree_leaves_with_path(
        nnx.state(module), is_leaf=lambda v: isinstance(v, nnx.Variable)
    )
    return {jax.tree_util.keystr(p): (type(v), v.shape, str(v.dtype)) for p, v in leaves}


def both(name, seed=0, **kw):
    """Flax's cell and ours from the same seed and arguments."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # keep_rngs / carry_init deprecations
        return (
            getattr(nnx, name)(I, H, rngs=nnx.Rngs(seed), **kw),
            getattr(ljnnx, name)(I, H, rngs=nnx.Rngs(seed), **kw),
        )


@pytest.mark.parametrize("name", NAMES)
def test_constructor_arguments_and_defaults_are_flaxs(name):
    theirs = inspect.signature(getattr(nnx, name).__init__).parameters
    ours = inspect.signature(getattr(ljnnx, name).__init__).parameters
    assert [(p.name, p.kind) for p in ours.values()] == [(p.name, p.kind) for p in theirs.values()]
    key = jax.random.key(3)
    for arg, p in theirs.items():
        mine = ours[arg].default
        if arg.endswith("_init") and p.default is not None:  # initialisers: same draws
            np.testing.assert_array_equal(mine(key, (5, 5)), p.default(key, (5, 5)))
        elif arg != "self":
            assert mine is p.default or mine == p.default, arg


@pytest.mark.parametrize("keep_rngs", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_submodules_and_state_tree(name, keep_rngs):
    theirs, ours = both(name, keep_rngs=keep_rngs)
    assert variables(ours) == variables(theirs)
    close(pure(ours), pure(theirs), 0)
    for sub in SUBMODULES[name]:
        a, b = getattr(theirs, sub), getattr(ours, sub)
        assert type(b) is nnx.Linear
        for attr in ("use_bias", "in_features", "out_features", "dtype", "param_dtype"):
            assert getattr(b, attr) == getattr(a, attr), (sub, attr)
    public = lambda m: {k for k in vars(m) if not k.startswith("_")}  # noqa: E731
    assert public(ours) == public(theirs)
    # nnx.split by filter gives the same partition of the state.
    _, *parts_t = nnx.split(theirs, nnx.Param, nnx.RngState)
    _, *parts_o = nnx.split(ours, nnx.Param, nnx.RngState)
    close(pure(parts_o), pure(parts_t), 0)


@pytest.mark.parametrize("name", NAMES)
def test_update_both_ways_and_step_matches(name):
    theirs, ours = both(name, seed=0)
    other, _ = both(name, seed=7)
    nnx.update(ours, nnx.state(other))  # Flax -> ours
    x = jax.random.normal(jax.random.key(1), (B, I))
    carry = jax.tree.map(lambda a: a + 0.5, other.initialize_carry((B, I), nnx.Rngs(0)))
    close(ours(carry, x), other(carry, x))
    nnx.update(theirs, nnx.state(ours))  # ours -> Flax
    close(theirs(carry, x), other(carry, x), 0)


def test_weights_copied_through_submodules_as_flax_code_does():
    linen = pytest.importorskip("flax.linen")
    ours = ljnnx.LSTMCell(I, H, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (B, I))
    module = linen.LSTMCell(features=H)
    carry = module.initialize_carry(jax.random.key(0), x.shape)
    params = module.init(jax.random.key(1), carry, x)["params"]
    for gate in "ifgo":
        for side, name in (("i", "if_" if gate == "f" else f"i{gate}"), ("h", f"h{gate}")):
            layer = getattr(ours, name)
            layer.kernel[...] = params[f"{side}{gate}"]["kernel"]
            if layer.use_bias:
                layer.bias[...] = params[f"{side}{gate}"]["bias"]
    close(ours(carry, x), module.apply({"params": params}, carry, x), 1e-5)


# (dtype, param_dtype, input dtype); None means the class default.
DTYPES = [
    (None, jnp.float32, jnp.int32),
    (jnp.bfloat16, jnp.float32, jnp.float32),
    (jnp.float16, jnp.float32, jnp.int32),
    (None, jnp.bfloat16, jnp.float32),
    (None, jnp.float16, jnp.float16),
]


@pytest.mark.loose_promotion  # Flax promotes ints and mixed floats under standard promotion
@pytest.mark.parametrize(
    "name, dtype, param_dtype, x_dtype",
    [(n, *DTYPES[0]) for n in ("LSTMCell", "GRUCell", "SimpleCell")]  # integer inputs
    + [pytest.param("LSTMCell", *d, marks=pytest.mark.slow) for d in DTYPES[1:]]
    + [pytest.param("GRUCell", *DTYPES[1], marks=pytest.mark.slow)],
)
def test_step_dtypes_follow_flax(name, dtype, param_dtype, x_dtype):
    kw = {"param_dtype": param_dtype} | ({} if dtype is None else {"dtype": dtype})
    try:
        theirs, ours = both(name, **kw)
    except NotImplementedError:  # XLA:CPU has no bf16/f16 QR for the orthogonal initialiser
        with pytest.raises(NotImplementedError):
            getattr(ljnnx, name)(I, H, rngs=nnx.Rngs(0), **kw)
        return
    x = jnp.arange(B * I).reshape(B, I).astype(x_dtype)
    carry = theirs.initialize_carry((B, I), nnx.Rngs(0))
    got, want = ours(carry, x), theirs(carry, x)
    low = jnp.bfloat16 in (dtype, param_dtype) or jnp.float16 in (dtype, param_dtype)
    close(got, want, 1e-2 if low else 1e-6)


@pytest.mark.x64
@pytest.mark.parametrize("name", ["OptimizedLSTMCell", "GRUCell"])
def test_float64_params_and_inputs_give_float64_as_in_flax(name):
    theirs, ours = both(name, param_dtype=FLOAT)
    x = jax.random.normal(jax.random.key(1), (B, I), FLOAT)
    carry = theirs.initialize_carry((B, I), nnx.Rngs(0))
    got = ours(carry, x)
    assert {a.dtype for a in jax.tree.leaves(got)} == {jnp.dtype(FLOAT)}
    close(got, theirs(carry, x), ATOL)


@pytest.mark.slow
@pytest.mark.loose_promotion
def test_custom_promote_dtype_is_applied():
    calls = []

    def to_half(args, dtype=None, inexact=True):
        calls.append(len(args))
        return tuple(None if a is None else jnp.asarray(a, jnp.float16) for a in args)

    theirs, ours = both("OptimizedLSTMCell", promote_dtype=to_half)
    x = jnp.ones((B, I))
    carry = theirs.initialize_carry((B, I), nnx.Rngs(0))
    n = len(calls)
    got = ours(carry, x)
    assert calls[n:] == [3, 3]  # (x, kernel, bias) for each side, as Flax's Linear calls it
    close(got, theirs(carry, x), 2e-3)
    assert got[1].dtype == jnp.float32  # f16 gates times the f32 carry, as in Flax


@pytest.mark.parametrize("name", NAMES)
def test_initialize_carry_draws_and_counts_like_flax(name):
    theirs, ours = both(name)
    init = nnx.initializers.normal(1.0)
    r_t, r_o = nnx.Rngs(carry=3), nnx.Rngs(carry=3)
    for kw in ({}, {"carry_init": init}):
        close(
            ours.initialize_carry((2, B, I), r_o, **kw),
            theirs.initialize_carry((2, B, I), r_t, **kw),
            0,
        )
    assert int(r_o.carry.count[...]) == int(r_t.carry.count[...]) > 0
    h = ours.initialize_carry((B, I), nnx.Rngs(carry=3), carry_init=init)
    if name.endswith("LSTMCell"):
        assert float(jnp.abs(h[0] - h[1]).max()) > 0  # c and h are separate draws
    zeros = ours.initialize_carry((B, I))  # zeros need no rngs here (Flax raises)
    close(zeros, theirs.initialize_carry((B, I), nnx.Rngs(0)), 0)


def test_constructor_warnings_and_kept_rngs_are_flaxs():
    for module in (nnx, ljnnx):
        with pytest.warns(UserWarning, match="keep_rngs argument is deprecated"):
            cell = module.GRUCell(I, H, keep_rngs=True, rngs=nnx.Rngs(0, carry=4))
        with pytest.warns(UserWarning, match="carry_init is provided in __init__"):
            module.GRUCell(I, H, carry_init=nnx.initializers.ones, rngs=nnx.Rngs(0))
        h = cell.initialize_carry((B, I), carry_init=nnx.initializers.normal(1.0))
        assert h.shape == (B, H) and int(cell.rngs.count[...]) == 1


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ZeroDivisionError):  # Flax's own initialiser divides by zero
        nnx.LSTMCell(3, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`LSTMCell`: `hidden_features` must be .*; got 0"):
        ljnnx.LSTMCell(3, 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`GRUCell`: `in_features` must be .*; got 0"):
        ljnnx.GRUCell(0, 3, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"`SimpleCell`: `hidden_features` must be .*got 2.5"):
        ljnnx.SimpleCell(3, 2.5, rngs=nnx.Rngs(0))
    _, ours = both("LSTMCell")
    with pytest.raises(ValueError, match=r"`LSTMCell.initialize_carry`: `rngs` must be given"):
        ours.initialize_carry((B, I), carry_init=nnx.initializers.normal(1.0))
    with pytest.raises(ValueError, match="RNGs must be provided"):  # Flax's wording
        nnx.LSTMCell(I, H, rngs=nnx.Rngs(0)).initialize_carry((B, I))
