"""Synthesises the bundled spoken-digit corpus in ``lstm_jax/data/speech/`` with espeak-ng.

Not run at install: the output is committed. Regenerate with

    apt-get install -y espeak-ng && pip install soundfile scipy
    python scripts/make_speech_corpus.py

Every utterance is a string of one to seven English digit words ("three one four"), spoken by
one *voice*: an espeak-ng accent (8 English accents) with a voice variant (7 male, 5 female),
at a random speed (130-210 words per minute), pitch (20-80) and word gap. Each one is trimmed,
resampled from espeak's 22,050 Hz to 8 kHz (``scipy.signal.resample_poly``), scaled to a random
peak level, mixed with white or low-passed (brown) noise at a random 10-30 dB SNR, and
quantised to 8 bits. The corpus is split by voice (the test and validation voices are never
heard in training); each split is one 8-bit FLAC file holding its utterances back to back,
and ``manifest.csv`` gives each utterance's split, voice, settings, start sample, length and
transcript. The run is a function of ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
from pathlib import Path

import numpy as np

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
)
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
RATE = 8000
OUT = Path(__file__).resolve().parents[1] / "lstm_jax" / "data" / "speech"


def speak(voice: str, text: str, speed: int, pitch: int, gap: int) -> np.ndarray:
    """espeak-ng's audio for ``text``: float64 samples at 22,050 Hz."""
    import soundfile as sf

    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-g", str(gap)]
        subprocess.run([*cmd, "-w", f.name, text], check=True)
        x, sr = sf.read(f.name, dtype="float64")
    assert sr == 22050, sr
    return x


def postprocess(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Trim, resample to 8 kHz, level, add noise; float64 in [-1, 1]."""
    from scipy.signal import lfilter, resample_poly

    loud = np.nonzero(np.abs(x) > 0.02 * np.abs(x).max())[0]
    pad = int(0.08 * 22050)
    x = x[max(0, loud[0] - pad) : loud[-1] + pad]
    x = resample_poly(x, 160, 441)  # 22,050 Hz -> 8,000 Hz
    lead, tail = rng.integers(0, int(0.25 * RATE), size=2)
    x = np.concatenate([np.zeros(lead), x, np.zeros(tail)])
    x = x * rng.uniform(0.25, 0.8) / np.abs(x).max()
    speech_rms = np.sqrt(np.mean(np.square(x[np.abs(x) > 0.05 * np.abs(x).max()])))
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # brown noise: integrated white noise, leaky
        noise = lfilter([1.0], [1.0, -0.98], noise)
    snr_db = rng.uniform(10, 30)
    noise *= speech_rms / np.sqrt(np.mean(np.square(noise))) / 10 ** (snr_db / 20)
    return np.clip(x + noise, -1, 1 - 1 / 128)


def split_voices(voices: list[str], rng: np.random.Generator, n_val: int, n_test: int) -> dict:
    order = rng.permutation(len(voices))
    split = {}
    for rank, i in enumerate(order):
        split[voices[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return split


def main(seed: int = 0, per_voice: int = 10, n_val: int = 10, n_test: int = 14) -> None:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    voices = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    split = split_voices(voices, rng, n_val, n_test)
    audio: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    starts = {"train": 0, "val": 0, "test": 0}
    rows = []
    for voice in voices:
        for k in range(per_voice):
            digits = rng.integers(0, 10, size=rng.integers(1, 8))
            text = " ".join(DIGITS[d] for d in digits)
            speed, pitch = int(rng.integers(130, 211)), int(rng.integers(20, 81))
            gap = int(rng.integers(0, 6))  # extra pause between words, in 10 ms units
            x = postprocess(speak(voice, text, speed, pitch, gap), rng)
            s = split[voice]
            rows.append(
                {
                    "id": f"{voice}-{k:02d}",
                    "split": s,
                    "voice": voice,
                    "speed_wpm": speed,
                    "pitch": pitch,
                    "start": starts[s],
                    "samples": len(x),
                    "text": text,
                }
            )
            audio[s].append(x)
            starts[s] += len(x)
    OUT.mkdir(parents=True, exist_ok=True)
    for s, parts in audio.items():
        sf.write(OUT / f"{s}.flac", np.concatenate(parts), RATE, subtype="PCM_S8")
    with open(OUT / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    total = sum(r["samples"] for r in rows) / RATE
    size = sum((OUT / f"{s}.flac").stat().st_size for s in audio) / 1e6
    print(f"{len(rows)} utterances, {total:.0f} s of audio, {size:.2f} MB of FLAC in {OUT}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-voice", type=int, default=10)
    args = ap.parse_args()
    main(args.seed, args.per_voice)
