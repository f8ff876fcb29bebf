"""Reading audio files into float32 samples at one sample rate.

Files are read with `soundfile <https://python-soundfile.readthedocs.io>`_ (libsndfile): WAV
with 8/16/24/32-bit PCM or float samples, and FLAC. Integer samples are scaled to [-1, 1).
Stereo files are refused unless ``mono="mean"`` asks for the average of the channels. A file
at a higher rate than wanted is resampled with SciPy's polyphase filter
(``scipy.signal.resample_poly``, a Kaiser-windowed low-pass); a file at a *lower* rate is
refused, since up-sampling cannot restore the band the recording never held.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

SILENCE_PEAK = 1e-4  # a file whose largest |sample| is below this (-80 dBFS) is silent


class Audio(NamedTuple):
    """A mono recording."""

    samples: np.ndarray  # (N,) float32 in [-1, 1]
    sample_rate: int  # Hz


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    resample: bool = True,
    mono: str = "error",
    allow_silence: bool = False,
) -> Audio:
    """Reads a WAV (or FLAC) file as mono float32 samples.

    Args:
      path: the file.
      sample_rate: the rate the caller needs, in Hz; ``None`` keeps the file's rate.
      resample: resample a file recorded above ``sample_rate`` (else such a file is an error).
      mono: ``"error"`` refuses files with more than one channel; ``"mean"`` averages them.
      allow_silence: accept a file whose peak is below -80 dBFS (refused by default: nothing
        can be transcribed from it, and its normalised features would be pure noise).

    Returns:
      An :class:`Audio` of ``(N,)`` float32 samples and their rate.

    Raises:
      FileNotFoundError: no such file.
      ValueError: not an audio file, empty, several channels, a lower rate than
        ``sample_rate`` (or a higher one with ``resample=False``), or silent.
    """
    import soundfile as sf

    where = f"`read_audio`: {path}"
    if mono not in ("error", "mean"):
        raise ValueError(f"`read_audio`: `mono` must be 'error' or 'mean'; got {mono!r}.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{where}: no such file.")
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise ValueError(
            f"{where} is not a WAV or FLAC file that libsndfile reads ({e})."
        ) from None
    if x.shape[0] == 0:
        raise ValueError(f"{where} holds no samples (an empty recording).")
    if x.shape[1] > 1 and mono == "error":
        raise ValueError(
            f"{where} has {x.shape[1]} channels; a mono recording is expected. Pass "
            "mono='mean' to average the channels (`--mono mean` on the command line)."
        )
    samples = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if not allow_silence and float(np.max(np.abs(samples))) < SILENCE_PEAK:
        raise ValueError(f"{where} is silent (peak below -80 dBFS); there is nothing to hear.")
    if sample_rate is not None and rate != sample_rate:
        if rate < sample_rate:
            raise ValueError(
                f"{where} is sampled at {rate} Hz, below the {sample_rate} Hz needed; "
                "up-sampling cannot restore the missing band. Record at a higher rate."
            )
        if not resample:
            raise ValueError(
                f"{where} is sampled at {rate} Hz, not {sample_rate} Hz; pass resample=True."
            )
        samples, rate = resample_audio(samples, rate, sample_rate), sample_rate
    return Audio(np.asarray(samples, np.float32), int(rate))


def resample_audio(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resamples ``(N,)`` samples from ``from_rate`` to ``to_rate`` Hz (polyphase filter).

    Examples:
      >>> x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
      >>> resample_audio(x, 16000, 8000).shape
      (8000,)
    """
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    y = resample_poly(np.asarray(samples, np.float64), to_rate // g, from_rate // g)
    return y.astype(np.float32)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Writes ``(N,)`` (or ``(N, channels)``) samples in [-1, 1] as a 16-bit PCM WAV file."""
    import soundfile as sf

    sf.write(str(path), np.asarray(samples), int(sample_rate), subtype="PCM_16", format="WAV")
