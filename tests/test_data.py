"""Windows, splits, normalisation, CSV and built-in series, text, padding and batch orders."""

import numpy as np
import pytest

from lstm_jax.data import (
    Normalizer,
    batch_order,
    build_vocab,
    denormalize,
    fit_normalizer,
    load_csv,
    load_series,
    load_text,
    normalize,
    pad_sequences,
    sliding_windows,
    split_windows,
    text_stream,
)


def test_sliding_windows_against_a_loop():
    x = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    xs, ys = sliding_windows(x, 5, horizon=2, targets=[2, 0], stride=3)
    starts = range(0, 30 - 5 - 2 + 1, 3)
    np.testing.assert_array_equal(xs, np.stack([x[s : s + 5] for s in starts]))
    np.testing.assert_array_equal(ys, np.stack([x[s + 6, [2, 0]] for s in starts]))


def test_split_windows_partitions_targets_chronologically():
    x = np.arange(100, dtype=np.float32)
    parts = split_windows(x, 10, (0.6, 0.2, 0.2))
    targets = [ys[:, 0] for _, ys in parts]
    np.testing.assert_array_equal(np.concatenate(targets), np.arange(10, 100))
    assert targets[0].max() < 60 <= targets[1].min() and targets[1].max() < 80 <= targets[2].min()
    xs_test, ys_test = parts[2]
    np.testing.assert_array_equal(xs_test[:, -1, 0] + 1, ys_test[:, 0])  # context precedes target


def test_normalizer_round_trip_and_json():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 2)).astype(np.float32)
    x[:, 1] = 7.0  # a constant column gets std 1
    norm = fit_normalizer(x)
    z = normalize(norm, x)
    np.testing.assert_allclose(z[:, 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, 0].std(), 1.0, atol=1e-5)
    np.testing.assert_allclose(denormalize(norm, z), x, rtol=1e-6)
    back = Normalizer.from_dict(norm.to_dict())
    np.testing.assert_array_equal(back.mean, norm.mean)
    np.testing.assert_allclose(denormalize(norm, z[:, :1], columns=[0]), x[:, :1], rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "n", "period", "lo", "hi"),
    [("elnino", 732, 12, 18.0, 30.0), ("co2", 2284, 52, 310.0, 375.0)],
)
def test_builtin_series(name, n, period, lo, hi):
    s = load_series(name)
    assert s.values.shape == (n, 1) and s.period == period
    assert lo < s.values.min() and s.values.max() < hi
    assert np.isfinite(s.values).all()


def test_load_csv_columns_by_name_and_position(tmp_path):
    (tmp_path / "a.csv").write_text("date,x,y\n2020-01,1,2\n2020-02,3,4\n")
    s = load_csv(tmp_path / "a.csv", ["y", 1], index_column="date")
    np.testing.assert_array_equal(s.values, [[2, 1], [4, 3]])
    assert s.columns == ["y", "x"] and s.index == ["2020-01", "2020-02"]
    assert load_csv(tmp_path / "a.csv", index_column=0).columns == ["x", "y"]  # all the others
    with pytest.raises(ValueError, match=r"row 2, column 'date': '2020-01' is not a number\. Name"):
        load_csv(tmp_path / "a.csv")  # a column is never dropped silently
    np.testing.assert_array_equal(load_csv(tmp_path / "a.csv", "y").values, [[2], [4]])
    np.testing.assert_array_equal(load_csv(tmp_path / "a.csv", 1).values, [[1], [3]])


def test_load_csv_strips_a_bom_and_trailing_blank_lines(tmp_path):
    (tmp_path / "b.csv").write_bytes("\ufefftemp,load\r\n1.5,2\r\n3,4e3\r\n\r\n\n".encode())
    s = load_csv(tmp_path / "b.csv")
    assert s.columns == ["temp", "load"] and s.index == ["0", "1"]
    np.testing.assert_array_equal(s.values, [[1.5, 2.0], [3.0, 4000.0]])


def test_text_vocab_and_stream():
    text = load_text()
    assert text.startswith("Macbeth") and 90_000 < len(text) < 120_000
    vocab = build_vocab(text)
    tokens = vocab.encode(text[:500])
    assert vocab.decode(tokens) == text[:500]
    inputs, targets = text_stream(np.arange(21), 4)
    np.testing.assert_array_equal(inputs, np.arange(20).reshape(4, 5))
    np.testing.assert_array_equal(targets, np.arange(1, 21).reshape(4, 5))


def test_pad_sequences():
    padded, lengths = pad_sequences([np.ones((3, 2)), np.ones((1, 2)) * 2], value=-1.0)
    assert padded.shape == (2, 3, 2) and lengths.tolist() == [3, 1]
    np.testing.assert_array_equal(padded[1, :, 0], [2.0, -1.0, -1.0])


def test_batch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a = np.concatenate(batch_order(10, 4, seed=0, epoch=1))
    assert sorted(a.tolist()) == list(range(10))
    np.testing.assert_array_equal(a, np.concatenate(batch_order(10, 4, seed=0, epoch=1)))
    assert not np.array_equal(a, np.concatenate(batch_order(10, 4, seed=0, epoch=2)))
    assert [len(b) for b in batch_order(10, 4, seed=0, epoch=0)] == [4, 4, 2]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: sliding_windows(np.arange(5.0), 5), r"too short for window=5 and horizon=1"),
        (lambda: sliding_windows(np.zeros((2, 2, 2)), 1), r"shape \(N,\) or \(N, features\)"),
        (lambda: sliding_windows(np.array([1.0, np.nan, 2.0]), 1), r"holds NaN or inf"),
        (lambda: sliding_windows(np.arange(9.0), 2, targets=[3]), r"`targets` \[3\] out of"),
        (lambda: sliding_windows(np.arange(9.0), 0), r"`window` must be a positive int; got 0"),
        (lambda: split_windows(np.arange(12.0), 10), r"parts \[.*\] of fractions .* get no"),
        (lambda: load_series("tides"), r"unknown series 'tides'; choose one of \['co2', 'elnino'"),
        (lambda: build_vocab("ab").encode("abc"), r"characters \['c'\] are not in the vocab"),
        (lambda: pad_sequences([np.ones((2, 3)), np.ones((2, 4))]), r"sequence 1 has shape"),
        (lambda: text_stream(np.arange(3), 4), r"3 tokens are too few for batch_size=4"),
    ],
)
def test_data_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_csv_errors(tmp_path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n3,\n")
    with pytest.raises(ValueError, match=r"row 3, column 'y': '' is not a number"):
        load_csv(tmp_path / "a.csv", ["y"])
    with pytest.raises(ValueError, match=r"no column 'z'; the columns are \['x', 'y'\]"):
        load_csv(tmp_path / "a.csv", ["z"])
    with pytest.raises(ValueError, match=r"CSV file not found"):
        load_csv(tmp_path / "b.csv")
    (tmp_path / "t.bin").write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(ValueError, match=r"is not UTF-8 text"):
        load_text(tmp_path / "t.bin")
