"""Synthetic generators: structure checked against NumPy, determinism, jit/vmap, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax.data import (
    adding_problem,
    copy_task,
    copy_task_baseline,
    sine_classification,
    synthetic_series,
)


@pytest.mark.parametrize("T", [2, 7, 100])
def test_adding_problem_structure(T):
    xs, ys = adding_problem(0, 500, T)
    assert xs.shape == (500, T, 2) and xs.dtype == jnp.float32
    assert ys.shape == (500, 1) and ys.dtype == jnp.float32
    x, m = np.asarray(xs[..., 0]), np.asarray(xs[..., 1])
    half = T // 2
    assert set(np.unique(m)) <= {0.0, 1.0}
    np.testing.assert_array_equal(m[:, :half].sum(1), 1.0)
    np.testing.assert_array_equal(m[:, half:].sum(1), 1.0)
    assert x.min() >= 0.0 and x.max() < 1.0
    np.testing.assert_allclose(np.asarray(ys[:, 0]), (x * m).sum(1), rtol=1e-6)


def test_adding_problem_mean_baseline_is_one_sixth():
    _, ys = adding_problem(1, 20000, 50)
    mse = float(jnp.mean(jnp.square(ys - 1.0)))
    assert abs(mse - 1 / 6) < 0.01


def test_adding_problem_seed_equals_key_and_is_deterministic():
    a = adding_problem(3, 8, 20)
    b = adding_problem(jax.random.key(3), 8, 20)
    c = adding_problem(4, 8, 20)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_adding_problem_jit_and_vmap_over_keys():
    keys = jax.random.split(jax.random.key(0), 3)
    xs, ys = jax.vmap(lambda k: adding_problem(k, 4, 10))(keys)
    assert xs.shape == (3, 4, 10, 2) and ys.shape == (3, 4, 1)
    jx, jy = jax.jit(adding_problem, static_argnums=(1, 2))(keys[1], 4, 10)
    np.testing.assert_array_equal(jy, ys[1])


def test_copy_task_structure():
    xs, ys = copy_task(0, 16, 5, n_symbols=4, copy_length=3)
    assert xs.shape == (16, 11, 6) and ys.shape == (16, 11)
    tokens = np.asarray(jnp.argmax(xs, -1))
    np.testing.assert_array_equal(xs.sum(-1), 1.0)  # one-hot
    np.testing.assert_array_equal(tokens[:, 3:7], 0)  # T - 1 blanks
    np.testing.assert_array_equal(tokens[:, 7], 5)  # delimiter
    np.testing.assert_array_equal(tokens[:, 8:], 0)
    np.testing.assert_array_equal(np.asarray(ys[:, 8:]), tokens[:, :3])
    np.testing.assert_array_equal(np.asarray(ys[:, :8]), 0)
    assert tokens[:, :3].min() >= 1 and tokens[:, :3].max() <= 4
    assert copy_task_baseline(5, n_symbols=4, copy_length=3) == pytest.approx(3 * np.log(4) / 11)


def test_sine_classification_padding_and_labels():
    xs, lengths, labels = sine_classification(0, 64, 40, n_classes=4, min_length=10)
    assert xs.shape == (64, 40, 1) and lengths.shape == (64,) and labels.shape == (64,)
    assert int(lengths.min()) >= 10 and int(lengths.max()) <= 40
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    pad = np.arange(40)[None, :] >= np.asarray(lengths)[:, None]
    np.testing.assert_array_equal(np.asarray(xs[..., 0])[pad], 0.0)


def test_synthetic_series_is_seasonal():
    x = np.asarray(synthetic_series(0, 480, period=24.0, noise=0.0))
    assert x.shape == (480, 1)
    np.testing.assert_allclose(x[24:], x[:-24], atol=1e-4)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: adding_problem(0, 4, 1), ValueError, r"`adding_problem`: `T` must be >= 2"),
        (lambda: adding_problem(0, 0, 5), ValueError, r"`adding_problem`: `n` must be >= 1"),
        (lambda: adding_problem(0, 4.0, 5), TypeError, r"`n` must be an int; got float"),
        (lambda: adding_problem("a", 4, 5), TypeError, r"`key_or_seed` must be a PRNG key"),
        (lambda: copy_task(0, 4, 0), ValueError, r"`copy_task`: `T` must be >= 1"),
        (
            lambda: sine_classification(0, 4, 5, min_length=9),
            ValueError,
            r"`min_length` must be <= T=5; got 9",
        ),
        (lambda: synthetic_series(0, 10, period=0), ValueError, r"`period` must be > 0"),
    ],
)
def test_generator_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
