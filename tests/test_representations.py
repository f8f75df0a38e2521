"""The representation switch: spectrogram specs, real batches per scale, audio back, runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import audio, config, representations, spectral, spectral_models, training  # noqa: E402

MANIFEST = {"num_scales": 7, "clip_samples": 16_384}


def _tones(n=2, samples=16_384, rate=16_000):
    t = np.arange(samples) / rate
    rng = np.random.default_rng(0)
    return np.stack([0.3 * np.sin(2 * np.pi * (220.0 * (k + 1)) * t) * np.exp(-1.5 * t)
                     + 0.003 * rng.standard_normal(samples) for k in range(n)]).astype(np.float32)


def test_stft_gives_twice_as_many_bins_as_frames():
    for samples, n_fft in ((16_384, 512), (65_536, 1024), (256, 64)):
        stft = representations.stft_for_clip(samples)
        assert (stft.n_fft, stft.hop_length) == (n_fft, n_fft // 4)
        assert stft.n_fft // 2 == 2 * (samples // stft.hop_length)
    spec = representations.spectral_model_spec(config.get_preset("quick").replace(
        representation="magnitude"), MANIFEST, "leaky", "linear")
    assert (spec.top_frames, spec.top_bins, spec.out_channels) == (128, 256, 1)
    assert spec.shape_at_scale(0) == (2, 4) and spec.samples_at_scale(0) == 256
    assert representations.spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_real_batch_is_the_pooled_normalised_spectrogram():
    preset = config.get_preset("quick").replace(representation="spectral")
    spec = representations.spectral_model_spec(preset, MANIFEST, "leaky", "linear")
    clips = _tones()[..., None]
    top = np.asarray(representations.real_batch(clips, spec, 6))
    raw = np.asarray(spectral_models.representation_tensor(clips, spec.stft, 128, 256))
    np.testing.assert_allclose(top[..., 1], raw[..., 1], atol=1e-6)
    np.testing.assert_allclose(top[..., 0] * 4.0 - 4.0, raw[..., 0], atol=1e-5)
    pyramid = spectral_models.spectral_pyramid(top, 7)
    for scale in (0, 3, 5):
        got = np.asarray(representations.real_batch(clips, spec, scale))
        assert got.shape == (2, *spec.shape_at_scale(scale), 2)
        np.testing.assert_allclose(got, pyramid[scale], atol=1e-4)


@pytest.mark.parametrize("kind, least_db", [("spectral", 30.0), ("magnitude", None)])
def test_to_audio_inverts_real_spectrograms(kind, least_db):
    spec = representations.spectral_model_spec(
        config.get_preset("quick").replace(representation=kind), MANIFEST, "leaky", "linear")
    clips = _tones()
    r = np.asarray(representations.real_batch(clips[..., None], spec, 6))
    back = representations.to_audio(spec, r, 6)
    assert back.shape == clips.shape and back.dtype == np.float32
    body = slice(spec.n_fft, -spec.n_fft)  # the cropped last hop aside
    if least_db is not None:
        assert spectral.snr_db(clips[:, body], back[:, body]) > least_db
    else:  # Griffin-Lim: the magnitudes come back (within 2 dB where loud), not the phase
        stft = spec.stft
        want = np.abs(spectral.stft(clips, stft))[:, 8:-8]
        got = np.abs(spectral.stft(back, stft))[:, 8:-8]
        loud = want > want.max() / 100
        error_db = np.abs(20 * np.log10(got[loud] / want[loud]))
        assert np.median(error_db) < 2.0
    coarse = representations.to_audio(spec, np.asarray(
        representations.real_batch(clips[..., None], spec, 2)), 2)
    assert coarse.shape == (2, spec.samples_at_scale(2))  # 1 kHz: 1024 samples


def test_waveform_outputs_pass_through():
    spec = training.model_spec_for(config.get_preset("tiny"), {
        "num_scales": 3, "clip_samples": 256, "class_names": ["a", "b"]})
    x = np.random.default_rng(0).standard_normal((3, 64, 1)).astype(np.float32)
    np.testing.assert_array_equal(representations.to_audio(spec, x, 0), x[..., 0])


def test_spectral_run_trains_all_scales_generates_and_evaluates(tone_dataset, tmp_path):
    from pggan_lib import evaluation

    run = tmp_path / "run"
    history = training.train(tone_dataset, run, preset="tiny",
                             overrides={"representation": "spectral"}, progress=False)
    assert history["step"][-1] == 20 and max(history["scale"]) == 2
    stored = json.loads((run / "config.json").read_text())
    assert stored["preset"]["representation"] == "spectral"
    assert stored["model_spec"]["top_frames"] == 16 and stored["model_spec"]["top_bins"] == 32
    assert np.all(np.isfinite(history["gp"])) and max(history["gp"]) > 0
    clips, rate, _ = training.generate_audio(run, 3)
    assert clips.shape == (3, 256) and rate == 16_000 and np.all(np.isfinite(clips))
    coarse, rate, _ = training.generate_audio(run, 2, scale=0)
    assert coarse.shape == (2, 64) and rate == 4_000
    assert len(list((run / "samples").glob("*scale2*.wav"))) > 0
    metrics = evaluation.evaluate_run(run, tone_dataset, n=20, splits=2, use_ema=(True,),
                                      write=False)
    assert set(metrics["scales"]) == {"0", "1", "2"}
    assert np.isfinite(metrics["scales"]["2"]["ema"]["frechet_distance"])


def test_spectral_runs_refuse_what_they_cannot_do(tone_dataset, tmp_path):
    with pytest.raises(training.RunError, match="unconditional"):
        training.train(tone_dataset, tmp_path / "a", preset="tiny", conditional=True,
                       overrides={"representation": "spectral"}, progress=False)
    with pytest.raises(training.RunError, match="representation='pixels'"):
        training.train(tone_dataset, tmp_path / "b", preset="tiny",
                       overrides={"representation": "pixels"}, progress=False)
    run = tmp_path / "c"
    training.train(tone_dataset, run, preset="tiny", max_steps=2, progress=False,
                   overrides={"representation": "magnitude",
                              "augment": ("gain", "polarity")})
    # The augmentations transform waveforms: a spectrogram run records none.
    assert json.loads((run / "config.json").read_text())["preset"]["augment"] == []


def test_a_preset_tuned_for_waveforms_trains_a_spectrogram_run(tone_dataset, tmp_path):
    """The presets' sub-pixel upsampling and log-spectrum term are waveform-only: with
    --representation spectral they are switched off and recorded off; named on purpose
    (an override) they are refused."""
    tuned = config.get_preset("tiny").replace(**config.PRESET_UPSAMPLING, critic_emphasis=0.5)
    run = tmp_path / "run"
    training.train(tone_dataset, run, preset=tuned, max_steps=2, progress=False,
                   overrides={"representation": "spectral"})
    stored = json.loads((run / "config.json").read_text())["preset"]
    assert {field: stored[field] for field in config.WAVEFORM_PLAYER_FIELDS} == \
        config.WAVEFORM_PLAYER_FIELDS
    with pytest.raises(training.RunError, match="spectrum_match=2.0: the progressive"):
        training.train(tone_dataset, tmp_path / "bad", preset=tuned, progress=False,
                       overrides={"representation": "spectral", "spectrum_match": 2.0})


def test_cli_trains_and_generates_a_spectral_run(tone_dataset, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    run, out = tmp_path / "run", tmp_path / "wav"

    def pggan(*args):
        return subprocess.run([sys.executable, "-m", "pggan_lib.cli", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=300)

    done = pggan("train", "--data", tone_dataset, "--out", run, "--preset", "tiny",
                 "--representation", "spectral", "--no-progress")
    assert done.returncode == 0, done.stderr
    again = pggan("train", "--data", tone_dataset, "--out", run, "--resume",
                  "--representation", "waveform")
    assert again.returncode == 2 and "--representation" in again.stderr
    made = pggan("generate", "--run", run, "--n", "2", "--out", out)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in out.glob("*.wav")) == ["sample_0000.wav", "sample_0001.wav"]


def test_a_coarse_picture_can_be_heard_over_the_whole_band():
    spec = representations.spectral_model_spec(
        config.get_preset("quick").replace(representation="spectral"), MANIFEST, "leaky", "linear")
    clips = _tones()
    coarse = np.asarray(representations.real_batch(clips[..., None], spec, 3))
    full = representations.to_audio(spec, coarse, 3, at_finest_rate=True)
    assert full.shape == clips.shape
    # Taken down three octaves, it is what to_audio gives at the scale's own rate.
    np.testing.assert_allclose(representations.to_audio(spec, coarse, 3),
                               audio.downsample2(audio.downsample2(audio.downsample2(
                                   full.T))).T, atol=1e-5)
    with pytest.raises(ValueError, match="spectrogram outputs only"):
        representations.to_audio(training.model_spec_for(
            config.get_preset("tiny"), {"num_scales": 3, "clip_samples": 256,
                                        "class_names": ["a"]}),
            np.zeros((1, 64, 1), np.float32), 0, at_finest_rate=True)
