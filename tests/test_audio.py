"""The audio front end: file reading, resampling, log-mel features (against librosa) and
SpecAugment masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile as sf

from lstm_jax.audio import (
    FeatureConfig,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    normalize_utterance,
    power_spectrogram,
    read_audio,
    resample_audio,
    spec_augment,
    utterance_features,
    write_wav,
)

librosa = pytest.importorskip("librosa")
RNG = np.random.default_rng(0)


def _signal(n, rate=8000):
    t = np.arange(n) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * RNG.standard_normal(n)
    return x.astype(np.float32)


@pytest.mark.parametrize(
    "rate,n_fft,n_mels,fmin,fmax",
    [(8000, 256, 40, 20.0, None), (16000, 512, 80, 0.0, 7600.0), (22050, 1024, 64, 50.0, None)],
)
def test_mel_filterbank_matches_librosa(rate, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(rate, n_fft, n_mels, fmin, fmax)
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(ours.T, ref, rtol=1e-5, atol=1e-7)


def test_mel_scale_matches_librosa():
    f = np.array([0.0, 200.0, 999.0, 1000.0, 1500.0, 4000.0, 8000.0])
    np.testing.assert_allclose(hz_to_mel(f), librosa.hz_to_mel(f), rtol=1e-10)


@pytest.mark.parametrize("n", [600, 801, 2345])
@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(16000, 512, 400, 160, 64)])
def test_power_spectrogram_matches_librosa_stft(n, cfg):
    x = _signal(n, cfg.sample_rate)
    ref = (
        np.abs(
            librosa.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length)
        )
        ** 2
    )  # (F, T)
    ours = np.asarray(power_spectrogram(x, cfg))
    assert ours.shape == (cfg.num_frames(n), cfg.n_fft // 2 + 1) == ref.T.shape
    np.testing.assert_allclose(ours, ref.T, rtol=2e-4, atol=1e-4 * ref.max())


def test_log_mel_matches_librosa_melspectrogram():
    cfg = FeatureConfig()
    x = _signal(4000)
    ref = librosa.feature.melspectrogram(
        y=x, sr=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40, fmin=20.0
    )
    ours = np.asarray(log_mel(x, cfg))
    np.testing.assert_allclose(ours, np.log(ref.T + cfg.floor), atol=2e-3)


@pytest.mark.parametrize("n", [1, 79, 80])
def test_short_recordings_give_centred_frames(n):
    cfg = FeatureConfig()
    assert log_mel(_signal(n), cfg).shape == (1 + n // 80, 40)


def test_log_mel_batches_and_jits():
    x = np.stack([_signal(1000), _signal(1000)])  # (2, N)
    batch = np.asarray(jax.jit(log_mel)(x))
    np.testing.assert_allclose(batch[1], np.asarray(log_mel(x[1])), atol=1e-5)


def test_log_mel_rejects_integer_samples():
    with pytest.raises(TypeError, match="`log_mel`: `samples` must be floating"):
        log_mel(np.zeros(100, np.int16))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"sample_rate": 0}, ValueError, r"`sample_rate` must be a positive int; got 0"),
        ({"sample_rate": 8000.0}, TypeError, r"`sample_rate` must be a positive int"),
        ({"win_length": 512}, ValueError, r"`win_length` must be <= `n_fft`"),
        ({"hop_length": 0}, ValueError, r"`hop_length` must be a positive int"),
        ({"n_mels": 0}, ValueError, r"`n_mels` must be a positive int"),
        ({"fmax": 9000.0}, ValueError, r"`fmax` must be a finite number in \(20, 4000\]"),
        ({"fmin": 3000.0, "fmax": 1000.0}, ValueError, r"`fmax` must be .* \(3000, 4000\]"),
        ({"fmin": -1.0}, ValueError, r"`fmin` must be a finite number in \[0, 4000\)"),
        ({"floor": 0.0}, ValueError, r"`floor` must be a finite number in \(0, inf\)"),
    ],
)
def test_feature_config_refuses_settings_that_give_nan_or_empty_features(kwargs, exc, match):
    with pytest.raises(exc, match=r"`FeatureConfig`: " + match):
        FeatureConfig(**kwargs)


def test_mel_filterbank_refuses_bad_bands_and_warns_about_empty_filters():
    with pytest.raises(ValueError, match=r"`mel_filterbank`: `n_mels` must be a positive int"):
        mel_filterbank(8000, 256, 0)
    with pytest.raises(ValueError, match=r"`mel_filterbank`: `fmax` must be .* \(0, 4000\]"):
        mel_filterbank(8000, 256, 40, fmax=9000)
    with pytest.warns(UserWarning, match=r"of 200 mel filters cover no FFT bin \(n_fft=64"):
        mel = mel_filterbank(8000, 64, 200)
    assert np.isfinite(mel).all()


def test_features_refuse_a_config_that_is_not_one():
    with pytest.raises(TypeError, match=r"`log_mel`: `cfg` must be a FeatureConfig.*got 16000"):
        log_mel(np.zeros(800, np.float32), 16000)
    with pytest.raises(TypeError, match=r"`power_spectrogram`: `cfg` must be a FeatureConfig"):
        power_spectrogram(np.zeros(800, np.float32), {"sample_rate": 8000})


def test_normalize_utterance_uses_valid_frames_only():
    feats = jnp.asarray(RNG.standard_normal((2, 30, 4)) * 3 + 5, jnp.float32)
    out = np.asarray(normalize_utterance(feats, jnp.array([30, 12])))
    np.testing.assert_allclose(out[1, :12].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out[1, :12].std(0), 1.0, atol=1e-3)
    assert np.all(out[1, 12:] == 0)
    alone = np.asarray(normalize_utterance(feats[1, :12]))
    np.testing.assert_allclose(out[1, :12], alone, atol=1e-5)


@pytest.mark.slow
def test_utterance_features_equal_each_utterance_alone():
    cfg = FeatureConfig()
    xs = [_signal(n) for n in (800, 2000, 1234)]
    feats, lengths = utterance_features(xs, cfg, chunk=2)
    assert feats.shape == (3, cfg.num_frames(2000), 40) and lengths.tolist() == [11, 26, 16]
    alone_fn = jax.jit(lambda x: normalize_utterance(log_mel(x, cfg)))
    for x, f, n in zip(xs, feats, lengths, strict=True):
        alone = np.asarray(alone_fn(x))
        np.testing.assert_allclose(f[:n], alone, atol=1e-4)
        assert np.all(f[n:] == 0)


# --- reading files ---


def test_reads_16_bit_pcm_and_float_wav(tmp_path):
    x = _signal(800)
    write_wav(tmp_path / "a.wav", x, 8000)
    sf.write(tmp_path / "b.wav", x, 8000, subtype="FLOAT")
    a, b = read_audio(tmp_path / "a.wav"), read_audio(tmp_path / "b.wav")
    assert a.sample_rate == b.sample_rate == 8000 and a.samples.dtype == np.float32
    np.testing.assert_allclose(a.samples, x, atol=1 / 32768)
    np.testing.assert_array_equal(b.samples, x)


def test_resamples_higher_rates_down():
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 300 * t).astype(np.float32)
    y = resample_audio(x, 16000, 8000)
    ref = np.sin(2 * np.pi * 300 * np.arange(8000) / 8000)
    np.testing.assert_allclose(y[100:-100], ref[100:-100], atol=2e-3)


def test_read_audio_resamples_to_the_rate_asked(tmp_path):
    write_wav(tmp_path / "hi.wav", _signal(16000, 16000), 16000)
    audio = read_audio(tmp_path / "hi.wav", 8000)
    assert audio.sample_rate == 8000 and audio.samples.shape == (8000,)
    with pytest.raises(ValueError, match=r"hi.wav is sampled at 16000 Hz, not 8000 Hz; pass"):
        read_audio(tmp_path / "hi.wav", 8000, resample=False)


def test_bad_files_get_clear_errors(tmp_path):
    (tmp_path / "text.wav").write_text("not audio at all")
    write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 8000)
    write_wav(tmp_path / "stereo.wav", np.stack([_signal(800)] * 2, axis=1), 8000)
    write_wav(tmp_path / "silent.wav", np.zeros(800, np.float32), 8000)
    write_wav(tmp_path / "low.wav", _signal(400, 4000), 4000)
    cases = [
        ("text.wav", {}, r"text.wav is not a WAV or FLAC file that libsndfile reads"),
        ("empty.wav", {}, r"empty.wav holds no samples"),
        ("stereo.wav", {}, r"stereo.wav has 2 channels; a mono recording is expected. Pass"),
        ("silent.wav", {}, r"silent.wav is silent"),
        ("low.wav", {"sample_rate": 8000}, r"low.wav is sampled at 4000 Hz, below the 8000 Hz"),
    ]
    for name, kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            read_audio(tmp_path / name, **kw)
    with pytest.raises(FileNotFoundError, match="nope.wav: no such file"):
        read_audio(tmp_path / "nope.wav")


def test_stereo_is_averaged_on_request(tmp_path):
    left, right = _signal(800), _signal(800)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    mono = read_audio(tmp_path / "s.wav", mono="mean").samples
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)


# --- SpecAugment ---


@pytest.mark.slow
def test_spec_augment_is_a_function_of_the_key():
    x = jnp.asarray(RNG.standard_normal((4, 60, 40)) + 10, jnp.float32)
    aug = jax.jit(spec_augment)
    a, b, c = aug(jax.random.key(1), x), aug(jax.random.key(1), x), aug(jax.random.key(2), x)
    assert bool(jnp.all(a == b)) and not bool(jnp.all(a == c))
    kept = np.asarray(a == x)
    assert np.all(kept | (np.asarray(a) == 0))  # entries are kept or set to the mask value


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [None, [60, 20, 5, 33]])
def test_spec_augment_masks_whole_bands_and_spans_within_bounds(lengths):
    x = jnp.ones((4, 60, 40))
    ln = None if lengths is None else jnp.array(lengths)
    aug = jax.jit(lambda k, x, n: spec_augment(k, x, n, freq_width=6, time_width=7))
    y = np.asarray(aug(jax.random.key(0), x, ln))
    for i in range(4):
        n = 60 if lengths is None else lengths[i]
        masked = y[i] == 0  # (T, M)
        bands = masked.all(axis=0)  # frequency masks cover every frame
        spans = masked[:, ~bands].all(axis=1) if (~bands).any() else masked.all(axis=1)
        assert bands.sum() <= 2 * 6 and spans.sum() <= 2 * 7
        assert not spans[n:].any()  # time masks stay inside the utterance
