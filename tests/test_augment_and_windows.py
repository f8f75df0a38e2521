"""Tests of random-window training data (data.make_window_dataset), differentiable
augmentation (layers.augment_audio), the tonality measure (evaluation.spectral_flatness) and
octave powers (evaluation.octave_power_db)."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

from pggan_lib import audio, data, evaluation, layers  # noqa: E402


# ------------------------------------------------------------------ streams
def test_streams_hold_each_file_whole_with_one_gain(tone_dataset):
    manifest = data.read_manifest(tone_dataset)
    train = [e for e in manifest["sources"] if e["split"] == "train"]
    for scale in range(manifest["num_scales"]):
        streams = data.read_streams(tone_dataset, "train", scale)
        # Files sit one after another, and each holds all its clips' samples.
        clip = data.scale_samples(manifest, scale)
        assert streams["lengths"].tolist() == [e["num_clips"] * clip for e in train]
        assert streams["pcm"].shape[0] == streams["lengths"].sum()
        assert sorted(streams["offsets"].tolist()) == np.concatenate(
            [[0], np.cumsum(sorted(streams["lengths"]))[:-1]]).tolist()
        for offset, length, gain in zip(streams["offsets"], streams["lengths"],
                                        streams["gains"]):
            piece = streams["pcm"][offset:offset + length] / 32768.0 * gain
            # One gain per file: the whole file sits at -20 dBFS RMS (peak <= 0.99).
            assert audio.rms_db(piece) == pytest.approx(-20.0, abs=0.05)
            assert np.abs(piece).max() <= 0.99 + 1e-4


def test_stream_equals_the_stored_clips_up_to_their_gain(tone_dataset):
    scale = 2
    clips, _, sources = data.load_clips(tone_dataset, "train", scale, with_source=True)
    manifest = data.read_manifest(tone_dataset)
    streams = data.read_streams(tone_dataset, "train", scale)
    train_paths = [e["path"] for e in manifest["sources"] if e["split"] == "train"]
    length = clips.shape[1]
    for clip, source in zip(clips[..., 0], sources):
        i = train_paths.index(manifest["sources"][source]["path"])
        piece = streams["pcm"][streams["offsets"][i]:][:streams["lengths"][i]] / 32768.0
        # Each stored clip is one clip-aligned slice of its file's stream, up to its gain.
        errors = []
        for part in piece.reshape(-1, length):
            ratio = np.dot(clip, part) / np.dot(part, part)
            errors.append(np.abs(part * ratio - clip).max())
        assert min(errors) < 3e-4


def test_windows_are_slices_of_the_files_and_resume_exactly(tone_dataset):
    scale, batch = 1, 8
    streams = data.read_streams(tone_dataset, "train", scale)
    manifest = data.read_manifest(tone_dataset)
    window = data.scale_samples(manifest, scale)
    dataset = data.make_window_dataset(tone_dataset, "train", scale, batch, seed=3)
    batches = [(a.numpy(), l.numpy()) for a, l in dataset.take(4)]
    assert batches[0][0].shape == (batch, window, 1) and batches[0][0].dtype == np.float32
    starts_seen = set()
    for windows, labels in batches:
        for w, label in zip(windows[..., 0], labels):
            found = False
            for offset, length, gain, file_label in zip(streams["offsets"], streams["lengths"],
                                                       streams["gains"], streams["labels"]):
                piece = streams["pcm"][offset:offset + length] / 32768.0 * gain
                for start in range(length - window + 1):
                    if np.allclose(piece[start:start + window], w, atol=1e-6):
                        found, _ = True, starts_seen.add((int(offset), start))
                        assert label == file_label
                        break
                if found:
                    break
            assert found, "a window that is not a slice of one file"
    assert len(starts_seen) > 8  # random offsets, not the fixed clips
    resumed = data.make_window_dataset(tone_dataset, "train", scale, batch, seed=3,
                                       start_batch=3)
    np.testing.assert_array_equal(next(iter(resumed))[0].numpy(), batches[3][0])
    other = data.make_window_dataset(tone_dataset, "train", scale, batch, seed=4)
    assert not np.array_equal(next(iter(other))[0].numpy(), batches[0][0])


def test_finest_gains_keep_the_pyramid_at_the_finest_clips_level(tone_dataset):
    scale, batch = 0, 8
    own = data.read_streams(tone_dataset, "train", scale)
    finest = data.read_streams(tone_dataset, "train", scale, gain_scale=2)
    np.testing.assert_array_equal(finest["gains"],
                                  data.read_streams(tone_dataset, "train")["gains"])
    plain = next(iter(data.make_window_dataset(tone_dataset, "train", scale, batch, seed=3)))
    level = next(iter(data.make_window_dataset(tone_dataset, "train", scale, batch, seed=3,
                                               gain_scale=2)))
    # Same windows of the same files, each scaled from its scale's gain to the finest's.
    np.testing.assert_array_equal(level[1].numpy(), plain[1].numpy())
    files = [int(np.flatnonzero(own["labels"] == label)[0]) for label in plain[1].numpy()]
    ratio = finest["gains"] / own["gains"]
    ratio_by_label = {int(own["labels"][i]): ratio[own["labels"] == own["labels"][i]]
                      for i in files}
    for w_plain, w_level, label in zip(plain[0].numpy(), level[0].numpy(), plain[1].numpy()):
        seen = np.dot(w_level[:, 0], w_plain[:, 0]) / np.dot(w_plain[:, 0], w_plain[:, 0])
        assert np.min(np.abs(ratio_by_label[int(label)] - seen)) < 1e-4
    assert not np.allclose(level[0].numpy(), plain[0].numpy())


def test_dataset_without_streams_is_a_clear_error(tone_dataset, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tone_dataset, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for split in manifest["splits"].values():
        split.pop("streams")
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(data.DatasetError, match="rebuild it with"):
        data.make_window_dataset(old, "train", 0, 4)
    shutil.copytree(tone_dataset, tmp_path / "cut")
    with open(tmp_path / "cut" / "train-stream-scale0.pcm", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(data.DatasetError, match="train-stream-scale0.pcm: stream file damaged"):
        data.read_streams(tmp_path / "cut", "train", 0)


# ------------------------------------------------------------- augmentation
def _ramp(batch=3, samples=64):
    return np.tile(np.linspace(-0.5, 0.5, samples, dtype=np.float32)[None, :, None],
                   (batch, 1, 1))


def test_gain_and_polarity_are_exact():
    x = _ramp(2)
    u = np.array([[1.0, 0.9, 0.5, 0.0], [0.0, 0.1, 0.5, 0.0]], np.float32)
    y = np.array(layers.augment_audio(x, u, policy=("gain", "polarity")))
    np.testing.assert_allclose(y[0], x[0] * 10 ** (6 / 20), rtol=1e-5)  # +6 dB, kept sign
    np.testing.assert_allclose(y[1], -x[1] * 10 ** (-6 / 20), rtol=1e-5)  # -6 dB, flipped


def test_shift_moves_by_up_to_an_eighth_and_fills_zeros():
    x = _ramp(2)
    u = np.array([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.5, 0.0]], np.float32)
    y = np.array(layers.augment_audio(x, u, policy=("shift",)))
    np.testing.assert_array_equal(y[0, :8, 0], 0.0)  # shifted right by 64/8 = 8
    np.testing.assert_allclose(y[0, 8:, 0], x[0, :-8, 0])
    np.testing.assert_allclose(y[1], x[1])  # u = 0.5: no shift


def test_cutout_silences_a_quarter():
    x = np.ones((1, 64, 1), np.float32)
    y = np.array(layers.augment_audio(x, np.array([[0, 0, 0, 0.5]], np.float32),
                                      policy=("cutout",)))
    # 1/4 of 64 samples; u = 0.5 puts it at floor(0.5 * 49) = 24.
    np.testing.assert_array_equal(np.flatnonzero(y[0, :, 0] == 0), np.arange(24, 40))


def test_noise_level_and_gradients_reach_the_input():
    x = tf.Variable(_ramp(4, 256))
    u = tf.random.stateless_uniform((4, layers.AUGMENT_UNIFORMS), seed=(1, 2))
    noise = tf.random.stateless_normal((4, 256, 1), seed=(3, 4))
    with tf.GradientTape() as tape:
        y = layers.augment_audio(x, u, noise)
        total = tf.reduce_sum(y * y)
    grad = tape.gradient(total, x)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0
    only_noise = layers.augment_audio(tf.zeros((4, 256, 1)), u, noise, ("noise",))
    assert float(tf.math.reduce_std(only_noise)) == pytest.approx(layers.AUGMENT_NOISE_STD,
                                                                  rel=0.1)


def test_unknown_augmentation_is_named():
    with pytest.raises(ValueError, match=r"unknown augmentation \['flip'\]"):
        layers.check_augment(("gain", "flip"))


# ------------------------------------------------------------------ tonality
def test_spectral_flatness_tells_notes_from_noise():
    rate = 4000
    t = np.arange(4096) / rate
    rng = np.random.default_rng(0)
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 440.0))
    noise = rng.standard_normal((8, 4096))
    flat_noise = evaluation.spectral_flatness(noise, rate)
    flat_chord = evaluation.spectral_flatness(chord[None], rate)
    # White noise: periodogram bins are exponential, so E[log] - log E = -Euler's gamma.
    assert np.median(flat_noise) == pytest.approx(np.exp(-np.euler_gamma), rel=0.12)
    assert flat_chord[0] < 0.05
    silent = evaluation.spectral_flatness(np.zeros((1, 4096)), rate)
    assert silent[0] == 1.0  # no loud frame: no notes
    with pytest.raises(evaluation.EvaluationError, match="FFT bin"):
        evaluation.spectral_flatness(noise, 100.0)


def test_octave_power_puts_a_tone_in_its_octave_and_white_noise_in_proportion():
    rate, samples = 16000, 16384
    t = np.arange(samples) / rate
    tone = 0.5 * np.sin(2 * np.pi * 3000.0 * t)  # in the 2-4 kHz octave, power 0.125
    edges, tone_db = evaluation.octave_power_db(tone[None], rate)
    assert edges.tolist() == [0.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0]
    assert tone_db[5] == pytest.approx(10 * np.log10(0.125), abs=0.01)
    assert np.all(np.delete(tone_db, 5) < tone_db[5] - 60)
    # White noise of std s: power s**2 spread evenly up to Nyquist, so the top octave
    # holds half of it, the next a quarter, ...; together s**2 (Parseval).
    noise = 0.01 * np.random.default_rng(0).standard_normal((32, samples))
    _, noise_db = evaluation.octave_power_db(noise[..., None], rate)
    share = np.diff(edges) / edges[-1]
    np.testing.assert_allclose(noise_db, 10 * np.log10(1e-4 * share), atol=0.3)
    assert 10 * np.log10(np.sum(10 ** (noise_db / 10))) == pytest.approx(
        10 * np.log10(np.mean(noise ** 2)), abs=1e-3)


def test_band_share_of_two_tones_counts_every_channel():
    rate, samples = 16000, 4096
    t = np.arange(samples) / rate
    low, high = np.sin(2 * np.pi * 500.0 * t), 0.1 * np.sin(2 * np.pi * 5000.0 * t)
    two = (low + high)[None]
    # Powers 0.5 and 0.005: the top octave holds 0.005 / 0.505 of the clip's.
    assert evaluation.band_share_db(two, rate, 4000.0) == pytest.approx(
        10 * np.log10(0.005 / 0.505), abs=0.01)
    assert evaluation.band_share_db(two, rate, 100.0) == pytest.approx(0.0, abs=1e-6)
    # A second channel with only the high tone, 10x louder: (0.005 + 0.5) / 1.005.
    channels = np.stack([low + high, 10 * high], axis=-1)[None]
    assert evaluation.band_share_db(channels, rate, 4000.0) == pytest.approx(
        10 * np.log10(0.505 / 1.005), abs=0.01)
    with pytest.raises(ValueError, match=r"signals: expected \(N, samples\)"):
        evaluation.band_share_db(low, rate, 4000.0)


def test_augmentation_keeps_a_mixed_precision_dtype():
    x = tf.cast(_ramp(2, 64), tf.bfloat16)
    u = np.full((2, layers.AUGMENT_UNIFORMS), 0.3, np.float32)
    y = layers.augment_audio(x, u, tf.zeros((2, 64, 1)))
    assert y.dtype == tf.bfloat16 and y.shape == x.shape
