"""H&S 1997's lag, adding and multiplication generators against the paper's definitions."""

import jax
import numpy as np
import pytest

from lstm_jax.data import lag_adding_problem, lag_multiplication_problem, two_sequence_lag


@pytest.mark.parametrize("noisy", [False, True])
def test_two_sequence_lag(noisy):
    p = 7
    xs, labels = two_sequence_lag(0, 200, p, noisy=noisy)
    xs, labels = np.asarray(xs), np.asarray(labels)
    assert xs.shape == (200, p, p + 1) and labels.shape == (200,)
    np.testing.assert_array_equal(xs.sum(-1), 1.0)  # one-hot
    tokens = xs.argmax(-1)  # (n, p)
    assert set(labels.tolist()) == {p - 1, p}  # x and y, both drawn
    np.testing.assert_array_equal(tokens[:, 0], labels)  # the last repeats the first
    middle = tokens[:, 1:]
    assert middle.max() < p - 1  # only a_1 .. a_{p-1} in between
    if noisy:  # drawn afresh: many different middles
        assert len({tuple(m) for m in middle}) > 150
    else:  # always a_1, ..., a_{p-1}
        np.testing.assert_array_equal(middle, np.broadcast_to(np.arange(p - 1), middle.shape))


def _check_pairs(xs, lengths, T, low):
    xs, lengths = np.asarray(xs), np.asarray(lengths)
    n, Tmax, _ = xs.shape
    assert Tmax == T + T // 10 and lengths.min() >= T and lengths.max() <= Tmax
    assert len(set(lengths.tolist())) > 5  # random lengths
    firsts, seconds = [], []
    for b in range(n):
        L = lengths[b]
        values, marks = xs[b, :L, 0], xs[b, :L, 1]
        assert (values >= low).all() and (values <= 1).all()
        np.testing.assert_array_equal(xs[b, L:], 0.0)  # zero padding
        marked = np.flatnonzero(marks == 1.0)
        assert len(marked) == 2
        first, second = sorted(marked, key=lambda i: (i >= 10, i))[:2]
        assert first < 10 and second < T // 2  # one of the first 10, one of the first T/2 - 1
        for end in (0, L - 1):  # the first and the final pair carry -1 unless marked
            assert marks[end] == (1.0 if end in marked else -1.0)
        others = np.setdiff1d(np.arange(L), np.r_[marked, 0, L - 1])
        np.testing.assert_array_equal(marks[others], 0.0)
        firsts.append(first)
        seconds.append(second)
    return np.array(firsts), np.array(seconds)


def test_lag_adding_problem():
    T = 100
    xs, lengths, ys = lag_adding_problem(jax.random.key(0), 300, T)
    _check_pairs(xs, lengths, T, -1.0)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    assert (xs[..., 0] < 0).any()  # values from [-1, 1]
    for b in range(len(xs)):
        marked = np.flatnonzero(xs[b, :, 1] == 1.0)
        x = xs[b, marked, 0]
        x[marked == 0] = 0.0  # the very first pair's value counts as 0 when it is marked
        np.testing.assert_allclose(ys[b, 0], 0.5 + x.sum() / 4.0, rtol=1e-6)
    assert ys.min() >= 0 and ys.max() <= 1


def test_lag_multiplication_problem():
    T = 60
    xs, lengths, ys = lag_multiplication_problem(3, 300, T)
    _check_pairs(xs, lengths, T, 0.0)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    hit_first = 0
    for b in range(len(xs)):
        marked = np.flatnonzero(xs[b, :, 1] == 1.0)
        x = xs[b, marked, 0]
        x[marked == 0] = 1.0  # ... and as 1 in the multiplication problem
        hit_first += int(0 in marked)
        np.testing.assert_allclose(ys[b, 0], np.prod(x), rtol=1e-6)
    assert hit_first > 0  # the rare case occurs (1 in 10)


def test_the_first_mark_may_be_anywhere_in_the_first_ten_the_second_in_the_first_half():
    xs, _, _ = lag_adding_problem(1, 2000, 40)
    marked = np.asarray(xs[..., 1]) == 1.0  # (n, Tmax)
    counts = marked.sum(0)
    assert counts[:10].min() > 0 and counts[20:].sum() == 0  # positions < T/2 = 20 only


def test_errors():
    with pytest.raises(ValueError, match=r"`lag_adding_problem`: `T` must be >= 22; got 10"):
        lag_adding_problem(0, 4, 10)
    with pytest.raises(ValueError, match=r"`two_sequence_lag`: `p` must be >= 2; got 1"):
        two_sequence_lag(0, 4, 1)
    with pytest.raises(TypeError, match=r"`lag_multiplication_problem`: `key_or_seed` must be"):
        lag_multiplication_problem("seed", 4, 30)
