"""Spoken-digit recordings bundled with the package, and a loader for a folder of WAV files.

The bundled corpus (``lstm_jax/data/speech/``) holds 960 utterances of one to seven English
digit words ("three one four"), synthesised with espeak-ng by ``scripts/make_speech_corpus.py``
over 96 voices (8 accents x 12 voice variants) at random speeds and pitches, with white or
brown noise at 10-30 dB SNR, stored as 8 kHz 8-bit FLAC (6.4 MB, 29 minutes). It is split by
voice: 72 training voices, 10 validation voices and 14 test voices never heard in training.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lstm_jax.audio.text import ALPHABET, encode_transcript, normalize_transcript
from lstm_jax.audio.wav import read_audio

SPEECH_DIR = Path(__file__).resolve().parent / "speech"
SPEECH_RATE = 8000  # Hz, the bundled corpus' sample rate
SPLITS = ("train", "val", "test")


class Utterance(NamedTuple):
    """One recording and its transcript."""

    id: str
    samples: np.ndarray  # (N,) float32 in [-1, 1]
    sample_rate: int  # Hz
    text: str  # normalised: lowercase words separated by single spaces
    speaker: str  # the voice (bundled corpus) or the manifest's speaker column


class SpeechCorpus(NamedTuple):
    """Utterances in three speaker-disjoint splits."""

    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]
    sample_rate: int


def load_speech() -> SpeechCorpus:
    """The bundled spoken-digit corpus at 8 kHz, split by voice (see the module docstring).

    Examples:
      >>> corpus = load_speech()
      >>> len(corpus.train), len(corpus.val), len(corpus.test), corpus.sample_rate
      (720, 100, 140, 8000)
      >>> sorted({u.speaker for u in corpus.test} & {u.speaker for u in corpus.train})
      []
    """
    audio = {s: read_audio(SPEECH_DIR / f"{s}.flac", SPEECH_RATE).samples for s in SPLITS}
    parts: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    with open(SPEECH_DIR / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            start, n = int(row["start"]), int(row["samples"])
            x = audio[row["split"]][start : start + n]
            parts[row["split"]].append(
                Utterance(row["id"], x, SPEECH_RATE, row["text"], row["voice"])
            )
    return SpeechCorpus(parts["train"], parts["val"], parts["test"], SPEECH_RATE)


def load_speech_folder(
    folder: str | Path,
    manifest: str = "manifest.csv",
    *,
    sample_rate: int = SPEECH_RATE,
    alphabet: str = ALPHABET,
    mono: str = "error",
    split: tuple[float, float] = (0.1, 0.1),
    seed: int = 0,
) -> SpeechCorpus:
    """A user's corpus: WAV files in ``folder`` with a CSV manifest of their transcripts.

    The manifest has a header with the columns ``file`` (a path relative to ``folder``) and
    ``text``, and optionally ``speaker`` and ``split`` (``train``/``val``/``test``). Without a
    ``split`` column, whole speakers (or, without a ``speaker`` column, utterances) are drawn
    at random for validation and test in the fractions ``split``, so the test speakers are
    unseen. Audio is resampled to ``sample_rate`` (see :func:`lstm_jax.audio.read_audio`).

    Raises:
      FileNotFoundError: no manifest, or a file it names is missing.
      ValueError: a malformed manifest, an unreadable, empty, silent, stereo or low-rate file,
        a transcript with characters outside ``alphabet``, or an empty split.
    """
    folder = Path(folder)
    path = folder / manifest
    if not path.is_file():
        raise FileNotFoundError(f"`load_speech_folder`: no manifest {path} (CSV: file,text).")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    missing = {"file", "text"} - set(rows[0] if rows else {})
    if not rows or missing:
        raise ValueError(
            f"`load_speech_folder`: {path} must have a header with the columns file,text "
            f"(missing {sorted(missing) or 'every row'})."
        )
    utts, assigned = [], []
    for line, row in enumerate(rows, start=2):
        where = f"{path} line {line} ({row['file']})"
        encode_transcript(row["text"] or "", alphabet, where=where)
        audio = read_audio(folder / row["file"], sample_rate, mono=mono)
        speaker = (row.get("speaker") or "").strip() or row["file"]
        text = normalize_transcript(row["text"])
        utts.append(Utterance(row["file"], audio.samples, sample_rate, text, speaker))
        assigned.append((row.get("split") or "").strip())
    return _split(utts, assigned, split, seed, path)


def _split(utts, assigned, fractions, seed, path) -> SpeechCorpus:
    if any(assigned):
        bad = sorted({a for a in assigned if a not in SPLITS})
        if bad:
            raise ValueError(
                f"`load_speech_folder`: {path}: `split` must be train/val/test; got {bad}."
            )
    else:
        speakers = sorted({u.speaker for u in utts})
        order = np.random.default_rng(seed).permutation(len(speakers))
        n_val = max(1, round(fractions[0] * len(speakers)))
        n_test = max(1, round(fractions[1] * len(speakers)))
        which = {}
        for rank, i in enumerate(order):
            which[speakers[i]] = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )
        assigned = [which[u.speaker] for u in utts]
    parts = {s: [u for u, a in zip(utts, assigned, strict=True) if a == s] for s in SPLITS}
    empty = [s for s in SPLITS if not parts[s]]
    if empty:
        raise ValueError(
            f"`load_speech_folder`: {path} leaves the {'/'.join(empty)} split empty "
            f"({len(utts)} utterances, {len({u.speaker for u in utts})} speakers)."
        )
    return SpeechCorpus(parts["train"], parts["val"], parts["test"], utts[0].sample_rate)
