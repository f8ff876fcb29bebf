"""Log-mel filterbank features: framing, window, FFT, mel matrix, log, per-utterance norm.

The conventions are librosa's defaults (and so are tested against
``librosa.feature.melspectrogram``): frames centred on ``t * hop_length`` with ``n_fft // 2``
zeros padded at both ends, a periodic Hann window of ``win_length`` samples centred in the
``n_fft``-point frame, the power spectrum ``|rfft|^2``, and Slaney's mel scale with
area-normalised triangles (``htk=False, norm='slaney'``). Features are then
``log(power @ mel + floor)``. Everything runs in ``jax.numpy`` (jit- and vmap-friendly);
the constant window and mel matrix are built once in NumPy.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from lstm_jax.core.validate import check_float, check_int


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Settings of :func:`log_mel`; the defaults suit 8 kHz speech (25 ms windows, 10 ms hop).

    Attributes:
      sample_rate: Hz; audio at another rate is resampled before featurisation.
      n_fft: FFT points per frame.
      win_length: Hann window length in samples (``<= n_fft``).
      hop_length: samples between frame centres.
      n_mels: mel bands.
      fmin, fmax: band edges in Hz (``fmax=None``: the Nyquist frequency).
      floor: added to the mel power before the log (about -60 dB).
    """

    sample_rate: int = 8000
    n_fft: int = 256
    win_length: int = 200
    hop_length: int = 80
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float | None = None
    floor: float = 1e-6

    def __post_init__(self):
        where = "FeatureConfig"
        check_int(where, "sample_rate", self.sample_rate)
        check_int(where, "n_fft", self.n_fft, minimum=2)
        check_int(where, "win_length", self.win_length)
        if self.win_length > self.n_fft:
            raise ValueError(
                f"`{where}`: `win_length` must be <= `n_fft` (the window sits inside the "
                f"frame); got win_length={self.win_length}, n_fft={self.n_fft}."
            )
        check_int(where, "hop_length", self.hop_length)
        check_int(where, "n_mels", self.n_mels)
        check_band(where, self.sample_rate, self.fmin, self.fmax)
        check_float(where, "floor", self.floor, low=0.0, low_open=True)

    def num_frames(self, n_samples):
        """Frames of ``n_samples`` samples (centred frames: ``1 + n_samples // hop_length``)."""
        return 1 + n_samples // self.hop_length


def check_band(where: str, sample_rate, fmin, fmax) -> tuple[float, float]:
    """``(fmin, fmax)`` with ``0 <= fmin < fmax <= sample_rate / 2`` (``fmax=None``: Nyquist)."""
    nyquist = sample_rate / 2
    fmin = check_float(where, "fmin", fmin, low=0.0, high=nyquist, high_open=True)
    if fmax is None:
        return fmin, nyquist
    fmax = check_float(where, "fmax", fmax, low=fmin, high=nyquist, low_open=True)
    return fmin, fmax


def hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(
        f < 1000.0, 3.0 * f / 200.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep
    )


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp(logstep * (m - 15.0)))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin=0.0, fmax=None) -> np.ndarray:
    """Triangular mel filters, ``(n_fft // 2 + 1, n_mels)`` float64 in ``power @ mel`` layout.

    Filter ``m`` rises from mel point ``m`` to ``m + 1`` and falls to ``m + 2`` (``n_mels + 2``
    points equally spaced in mels between ``fmin`` and ``fmax``), scaled by
    ``2 / (f_{m+2} - f_m)`` so every filter has the same area (Slaney's normalisation).
    Equals ``librosa.filters.mel(...).T``.
    """
    where = "mel_filterbank"
    check_int(where, "sample_rate", sample_rate)
    check_int(where, "n_fft", n_fft, minimum=2)
    check_int(where, "n_mels", n_mels)
    fmin, fmax = check_band(where, sample_rate, fmin, fmax)
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (F,)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))  # (M + 2,)
    lower = (freqs[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]  # (F, M)
    upper = (edges[None, 2:] - freqs[:, None]) / np.diff(edges)[None, 1:]
    tri = np.maximum(0.0, np.minimum(lower, upper))
    empty = int((tri.max(axis=0) == 0).sum())
    if empty:  # as librosa and torchaudio do: legal, but those bands will read only the floor
        warnings.warn(
            f"`mel_filterbank`: {empty} of {n_mels} mel filters cover no FFT bin "
            f"(n_fft={n_fft} gives {n_fft // 2 + 1} bins over 0-{sample_rate / 2:g} Hz); use "
            "fewer mels or a larger n_fft.",
            stacklevel=2,
        )
    return tri * (2.0 / (edges[2:] - edges[:-2]))[None, :]


def check_config(where: str, cfg) -> None:
    if not isinstance(cfg, FeatureConfig):
        raise TypeError(
            f"`{where}`: `cfg` must be a FeatureConfig, e.g. `FeatureConfig(sample_rate=16000)`; "
            f"got {cfg!r} ({type(cfg).__name__})."
        )


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` samples, zero-padded to ``n_fft`` (centred)."""
    n = np.arange(win_length)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left))


def power_spectrogram(samples: jax.Array, cfg: FeatureConfig = FeatureConfig()) -> jax.Array:
    """``|STFT|^2`` of ``(..., N)`` samples: ``(..., T, n_fft // 2 + 1)``, ``T = 1 + N // hop``."""
    check_config("power_spectrogram", cfg)
    x = jnp.asarray(samples)
    n = x.shape[-1]
    half = cfg.n_fft // 2
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)])  # (..., N + n_fft)
    t = cfg.num_frames(n)
    idx = cfg.hop_length * np.arange(t)[:, None] + np.arange(cfg.n_fft)[None, :]  # (T, n_fft)
    window = hann_window(cfg.win_length, cfg.n_fft).astype(x.dtype)
    frames = x[..., idx] * window.reshape((1,) * (x.ndim - 1) + (1, cfg.n_fft))  # (..., T, n_fft)
    spec = jnp.fft.rfft(frames, axis=-1)  # (..., T, F)
    return jnp.square(spec.real) + jnp.square(spec.imag)


def log_mel(samples: jax.Array, cfg: FeatureConfig = FeatureConfig()) -> jax.Array:
    """Log-mel features of ``(..., N)`` samples at ``cfg.sample_rate``: ``(..., T, n_mels)``.

    Examples:
      >>> import numpy as np
      >>> x = np.zeros(8000, np.float32); x[::100] = 1.0  # one second of clicks at 8 kHz
      >>> log_mel(x).shape
      (101, 40)
    """
    check_config("log_mel", cfg)
    x = jnp.asarray(samples)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`log_mel`: `samples` must be floating; got dtype={x.dtype}.")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"`log_mel`: `samples` must be (..., N) with N >= 1; got {x.shape}.")
    mel = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    power = power_spectrogram(x, cfg) @ mel.astype(x.dtype)  # (..., T, M)
    return jnp.log(power + jnp.asarray(cfg.floor, x.dtype))


def normalize_utterance(feats: jax.Array, lengths: jax.Array | None = None, eps: float = 1e-5):
    """Zero mean, unit variance per feature over each utterance's valid frames.

    Args:
      feats: ``(..., T, M)`` features.
      lengths: optional ``...``-shaped valid frame counts; padding frames come out as 0.

    Returns:
      ``(..., T, M)`` normalised features.
    """
    feats = jnp.asarray(feats)
    t = feats.shape[-2]
    if lengths is None:
        mask = jnp.ones(feats.shape[:-1] + (1,), feats.dtype)
    else:
        lengths = jnp.asarray(lengths)
        steps = jnp.arange(t).reshape((1,) * lengths.ndim + (t,))
        valid = steps < lengths[..., None]  # (..., T)
        mask = valid[..., None].astype(feats.dtype)  # (..., T, 1)
    count = jnp.maximum(jnp.sum(mask, axis=-2, keepdims=True), 1.0)
    mean = jnp.sum(feats * mask, axis=-2, keepdims=True) / count
    var = jnp.sum(jnp.square(feats - mean) * mask, axis=-2, keepdims=True) / count
    return (feats - mean) / jnp.sqrt(var + jnp.asarray(eps, feats.dtype)) * mask


def utterance_features(
    samples: list, cfg: FeatureConfig = FeatureConfig(), *, chunk: int = 64, pad_to: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised log-mel features of recordings of different lengths, zero-padded.

    Recordings are zero-padded to the longest and featurised ``chunk`` at a time (a frame near
    the end sees the same zeros as :func:`log_mel`'s own centre padding, so each utterance's
    valid frames equal ``log_mel`` of it alone), then normalised per utterance.

    Args:
      samples: a list of ``(N_i,)`` float arrays at ``cfg.sample_rate``.
      chunk: recordings featurised per call.
      pad_to: pad the longest recording up to a multiple of this many samples (so a stream
        of files of similar lengths compiles once).

    Returns:
      ``(feats, lengths)``: ``(U, T_max, n_mels)`` float32 (padding frames are 0) and
      ``(U,)`` int32 frame counts.
    """
    if not samples:
        raise ValueError("`utterance_features`: `samples` is empty.")
    n = np.array([len(s) for s in samples])
    lengths = cfg.num_frames(n).astype(np.int32)
    width = -(-int(n.max()) // pad_to) * pad_to
    padded = np.zeros((len(samples), width), np.float32)
    for i, s in enumerate(samples):
        padded[i, : len(s)] = s
    fn = _featurizer(cfg)
    parts = [
        np.asarray(fn(padded[i : i + chunk], lengths[i : i + chunk]))
        for i in range(0, len(samples), chunk)
    ]
    return np.concatenate(parts), lengths


@functools.lru_cache(maxsize=8)
def _featurizer(cfg: FeatureConfig):
    """One jitted ``log_mel`` + normalisation per config (compiled once per input shape)."""
    return jax.jit(lambda x, ln: normalize_utterance(log_mel(x, cfg), ln))
