"""Tests of pggan_lib.training and the presets in pggan_lib.config.

A tiny dataset (two classes of generated tones, 3 scales, 256-sample clips)
and the ``tiny`` preset keep every run to a few seconds of compute.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import audio, config, data, training  # noqa: E402
from pggan_lib import layers as L  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def straight_run(tone_dataset, tmp_path_factory):
    """A complete tiny run (20 steps over 3 scales), uninterrupted."""
    run = tmp_path_factory.mktemp("straight") / "run"
    history = training.train(tone_dataset, run, preset="tiny", progress=False)
    return run, history


# ------------------------------------------------------------------ presets
def test_get_preset_names_and_error():
    assert config.get_preset("quick").name == "quick"
    assert config.get_preset(config.PRESETS["colab"]) is config.PRESETS["colab"]
    with pytest.raises(ValueError, match="valid presets: colab, quick, reference, tiny"):
        config.get_preset("fast")


def test_presets_fit_their_purpose():
    quick, colab = config.get_preset("quick"), config.get_preset("colab")
    # quick: every one of 7 scales, small and short; colab: >= 4 s clips at 16 kHz.
    assert len(training.make_schedule(quick, 7)) == 13
    assert max(quick.channels) <= 32 and max(quick.batch_sizes) <= 16
    assert colab.min_clip_samples >= 4 * 16_000
    assert quick.per_scale("channels", 3) == (32, 32, 24)
    assert quick.per_scale("channels", 9)[-3:] == (16, 16, 16)  # last value repeats
    assert config.get_preset("tiny").per_scale("batch_sizes", 4) == (4, 4, 4, 4)


# ---------------------------------------------------------- schedule/alpha
def test_schedule_phases_and_steps():
    preset = config.Preset(name="t", description="", stable_steps=(5, 6, 7), fade_steps=3)
    phases = training.make_schedule(preset, 3)
    assert [(p.scale, p.kind, p.steps, p.start_step) for p in phases] == [
        (0, "stable", 5, 0), (1, "fade", 3, 5), (1, "stable", 6, 8),
        (2, "fade", 3, 14), (2, "stable", 7, 17)]


def test_single_scale_schedule_trains_one_scale_and_finest_only_keeps_the_steps():
    preset = config.get_preset("tiny").replace(stable_steps=(5, 6, 7), fade_steps=(0, 3, 3))
    phases = training.make_schedule(preset.single_scale(1, 3, 9), 3)
    assert [(p.scale, p.kind, p.steps, p.start_step) for p in phases] == [(1, "stable", 9, 0)]
    finest = training.make_schedule(preset.finest_scale_only(3), 3)
    assert [(p.scale, p.kind, p.steps) for p in finest] == [(2, "stable", 5 + 6 + 7 + 3 + 3)]
    with pytest.raises(ValueError, match="scale must be in"):
        preset.single_scale(3, 3, 9)


def test_fade_alpha_is_linear_from_0_to_1():
    fade = training.Phase(index=1, scale=1, kind="fade", steps=5, start_step=0, batch_size=4)
    stable = training.Phase(index=2, scale=1, kind="stable", steps=5, start_step=5, batch_size=4)
    np.testing.assert_allclose([training.fade_alpha(fade, i) for i in range(5)],
                               [0.0, 0.25, 0.5, 0.75, 1.0])
    assert all(training.fade_alpha(stable, i) == 1.0 for i in range(5))


# -------------------------------------------------------------- the model
def tiny_gan(loss="wgan-gp", num_classes=0):
    manifest = {"num_scales": 3, "clip_samples": 256, "class_names": ["a", "b"]}
    preset = config.get_preset("tiny")
    spec = training.model_spec_for(preset, manifest, conditional=num_classes > 0)
    return training.build_gan(spec, preset, loss=loss, seed=3), spec


def test_ema_update_math():
    gan, _ = tiny_gan()
    for weight in gan.generator.trainable_variables:  # make generator and EMA differ
        weight.assign(weight + 0.5)
    before_ema = [np.array(v) for v in gan.ema_generator.trainable_variables]
    weights = [np.array(v) for v in gan.generator.trainable_variables]
    gan.update_ema()
    decay = gan.ema_decay
    for ema, old, w in zip(gan.ema_generator.trainable_variables, before_ema, weights):
        np.testing.assert_allclose(np.array(ema), decay * old + (1 - decay) * w, rtol=1e-6,
                                   atol=1e-7)


def test_silent_heads_preset_starts_generator_and_ema_silent():
    manifest = {"num_scales": 3, "clip_samples": 256, "class_names": ["a", "b"]}
    preset = config.get_preset("tiny").replace(output_skips=True, silent_heads=True)
    spec = training.model_spec_for(preset, manifest)
    assert spec.silent_heads
    gan = training.build_gan(spec, preset, seed=3)
    gan.set_scale(2)
    z = np.random.default_rng(0).normal(size=(2, spec.latent_dim)).astype("float32")
    for generator in (gan.generator, gan.ema_generator):
        np.testing.assert_array_equal(np.asarray(generator(z)), 0.0)


@pytest.mark.parametrize("loss", ["wgan-gp", "report"])
def test_train_step_measurements(loss):
    gan, spec = tiny_gan(loss, num_classes=2)
    gan.set_scale(1)
    gan.set_alpha(0.5)
    real = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 128, 1)).astype(np.float32)
    labels = np.array([0, 1, 0, 1], np.int32)
    critic_before = [np.array(v) for v in gan.critic.variables_for_scale(1)]
    values = {k: float(v) for k, v in gan.train_step((real, labels)).items()}
    assert set(values) == set(training.METRIC_NAMES)
    assert all(np.isfinite(list(values.values())))
    assert values["delta"] == pytest.approx(abs(values["d_fake"] - values["d_real"]), abs=1e-6)
    assert (values["gp"] > 0) == (loss == "wgan-gp")  # the report's loss has no penalty
    assert any(not np.array_equal(b, np.array(a))
               for b, a in zip(critic_before, gan.critic.variables_for_scale(1)))
    assert float(gan.metrics[0].result()) == pytest.approx(values["d_loss"])


def test_spectrum_match_adds_its_weighted_gap_to_the_generator_loss():
    manifest = {"num_scales": 3, "clip_samples": 256, "class_names": ["a", "b"]}
    real = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 128, 1)).astype(np.float32)
    labels = np.zeros(4, np.int32)
    values, gaps = {}, {}
    for weight in (0.0, 2.5):
        preset = config.get_preset("tiny").replace(spectrum_match=weight)
        spec = training.model_spec_for(preset, manifest)
        gan = training.build_gan(spec, preset, seed=3)  # same seed: same weights
        gan.set_scale(1)
        noise = gan.draw_noise(4, 128)
        # The critic updates leave the generator alone: its fake is this one.
        fake = gan.generator(noise["z_generator"], training=True)
        gaps[weight] = float(gan.spectrum_gap(real, fake))
        values[weight] = {k: float(v) for k, v in gan.train_step((real, labels), noise).items()}
    assert gaps[0.0] == pytest.approx(gaps[2.5]) and gaps[0.0] > 0.01
    assert values[2.5]["d_loss"] == pytest.approx(values[0.0]["d_loss"], rel=1e-6)
    assert values[2.5]["g_loss"] - values[0.0]["g_loss"] == pytest.approx(2.5 * gaps[0.0],
                                                                          rel=1e-4)


# ------------------------------------------------------- checkpoints/resume
def test_resume_equals_uninterrupted_run(tone_dataset, straight_run, tmp_path,
                                        compare_runs_retrying):
    def check(attempt):
        run, straight = straight_run
        if attempt:  # a fresh uninterrupted run too: either may have rounded differently
            run = tmp_path / f"straight{attempt}"
            straight = training.train(tone_dataset, run, preset="tiny", progress=False)
        assert straight["step"] == list(range(1, 21))
        resumed = tmp_path / f"resumed{attempt}"
        # Stop mid-phase (step 10 is inside scale 1's stable phase), then resume
        # with new objects: weights, optimisers, EMA, RNG and data position.
        first = training.train(tone_dataset, resumed, preset="tiny", max_steps=10,
                               progress=False)
        assert first["step"] == list(range(1, 11))
        history = training.train(tone_dataset, resumed, resume=True, progress=False)
        assert history["step"] == list(range(1, 21))  # continuous: nothing missing or doubled
        _assert_same_history(history, straight)
        assert training.latest_checkpoint(run).name == "ckpt-00000020.npz"
        _assert_same_checkpoints(run, resumed)

    compare_runs_retrying(check)


def _assert_same_history(history, straight):
    """Every metric of every step equal (to float32 rounding)."""
    for name in training.METRIC_NAMES:
        np.testing.assert_allclose(history[name], straight[name], rtol=1e-5, atol=1e-6,
                                   err_msg=name)


def _assert_same_checkpoints(run, other):
    """The two runs' newest checkpoints hold equal arrays (to float32 rounding)."""
    a = np.load(training.latest_checkpoint(run))
    b = np.load(training.latest_checkpoint(other))
    for key in a.files:
        if key != "__meta__":
            np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_run_folder_contents(straight_run):
    run, _ = straight_run
    config_json = json.loads((run / "config.json").read_text())
    assert config_json["loss"] == "wgan-gp" and config_json["model_spec"]["num_scales"] == 3
    assert json.loads((run / "run_state.json").read_text())["trained_scale"] == 2
    assert (run / "generator.keras").is_file()
    # 5 phases x 2 samples; the finest scale's WAV is 256 samples at 16 kHz.
    wavs = sorted((run / "samples").glob("*.wav"))
    assert len(wavs) == 10
    clip = audio.load_audio(wavs[-1])
    assert clip.shape == (256,)
    assert any((run / "tb").iterdir())
    assert not list((run / "checkpoints").glob(".*"))  # no temp files left


def test_critic_output_and_kept_checkpoints_are_options(tone_dataset, straight_run, tmp_path):
    straight, _ = straight_run
    assert len(list((straight / "checkpoints").glob("ckpt-*.npz"))) == 3  # the default keeps 3
    run = tmp_path / "run"
    training.train(tone_dataset, run, preset="tiny", activation="leaky",
                   critic_output="report", keep_checkpoints=None, max_steps=8, progress=False)
    config_json = json.loads((run / "config.json").read_text())
    assert config_json["critic_output"] == "report"
    assert config_json["model_spec"]["activation"] == "leaky"
    assert config_json["model_spec"]["critic_output_activation"] == "report"
    # tiny: checkpoint every 3 steps and at phase ends, from step 0; none pruned.
    steps = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("ckpt-*.npz"))
    assert steps[0] == 0 and steps[-1] == 8 and len(steps) >= 4


def test_generate_audio_at_finest_trained_scale(straight_run):
    run, _ = straight_run
    clips, rate, labels = training.generate_audio(run, 3, seed=1)
    assert clips.shape == (3, 256) and rate == 16_000
    coarse, coarse_rate, _ = training.generate_audio(run, 2, scale=0, use_ema=False)
    assert coarse.shape == (2, 64) and coarse_rate == 4_000
    with pytest.raises(training.RunError, match="unconditional"):
        training.generate_audio(run, 1, class_name="low")


@pytest.mark.parametrize("overrides", [{"mixed_precision": "mixed_float16"},
                                       {"mixed_precision": "mixed_bfloat16"},
                                       {"jit_compile": True},
                                       # the colab preset's combination
                                       {"mixed_precision": "mixed_float16", "jit_compile": True,
                                        "spectrum_match": 1.0}])
def test_precision_and_xla_switches(tone_dataset, straight_run, tmp_path, overrides):
    history = training.train(tone_dataset, tmp_path / "run", preset="tiny", overrides=overrides,
                             max_steps=3, progress=False)
    _, fp32 = straight_run
    assert np.all(np.isfinite(history["d_loss"])) and np.all(np.isfinite(history["g_loss"]))
    # Same seed, same first batch: the first critic loss agrees with float32.
    assert history["d_loss"][0] == pytest.approx(fp32["d_loss"][0], rel=0.05)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    gan, _ = tiny_gan()
    path = tmp_path / "ckpt-00000001.npz"
    training.save_checkpoint(gan, path, {"global_step": 1})
    good = np.array(gan.generator.trainable_variables[0])

    def crash_midway(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full (simulated)")

    for weight in gan.generator.trainable_variables:
        weight.assign(weight + 1.0)
    monkeypatch.setattr(training.np, "savez", crash_midway)
    with pytest.raises(OSError, match="simulated"):
        training.save_checkpoint(gan, path, {"global_step": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # temp file removed
    assert training.load_checkpoint(gan, path)["global_step"] == 1
    np.testing.assert_array_equal(np.array(gan.generator.trainable_variables[0]), good)


def test_nan_guard_names_the_step(tone_dataset, tmp_path, monkeypatch):
    make = data.make_tf_dataset

    def poisoned(*args, **kwargs):  # batch 3 of the first phase holds a NaN
        import tensorflow as tf

        def poison(index, batch):
            audio_batch, labels = batch
            bad = tf.where(index == 2, np.nan, 0.0)
            return audio_batch + bad, labels

        return make(*args, **kwargs).enumerate().map(poison)

    monkeypatch.setattr(training.data, "make_tf_dataset", poisoned)
    run = tmp_path / "run"
    with pytest.raises(training.TrainingDiverged, match="step 3 .scale 0") as caught:
        training.train(tone_dataset, run, preset="tiny", progress=False)
    assert caught.value.step == 3 and caught.value.scale == 0
    assert caught.value.history["step"] == [1, 2, 3]
    assert not np.isfinite(caught.value.history["d_loss"][-1])
    # The last good checkpoint (step 0; the next would be step 3) is untouched.
    assert training.latest_checkpoint(run).name == "ckpt-00000000.npz"
    assert training.read_checkpoint_meta(training.latest_checkpoint(run))["global_step"] == 0


def test_run_errors(tone_dataset, straight_run, tmp_path):
    run, _ = straight_run
    with pytest.raises(training.RunError, match=r"already exists; pass resume=True \(--resume\)"):
        training.train(tone_dataset, run, preset="tiny", progress=False)
    with pytest.raises(training.RunError, match="manifest.json"):
        training.train(tmp_path, tmp_path / "new", preset="tiny", progress=False)
    with pytest.raises(training.RunError, match="no such run folder|not a run folder"):
        training.train(tone_dataset, tmp_path / "absent", resume=True, progress=False)
    with pytest.raises(training.RunError, match="--clip-samples 65536"):
        training.train(tone_dataset, tmp_path / "colab", preset="colab", progress=False)
    with pytest.raises(training.RunError, match="started with loss='wgan-gp'"):
        training.train(tone_dataset, run, resume=True, loss="report", progress=False)


# ------------------------------------------------------ MirroredStrategy
MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pggan_lib import training
    data_dir, out = sys.argv[1], sys.argv[2]
    # Phase shuffle on: its shifts must also split across replicas as one device draws them.
    shuffle = {"phase_shuffle": 2}
    one = training.train(data_dir, out + "/one", preset="tiny", max_steps=7, progress=False,
                         overrides=shuffle)
    two = training.train(data_dir, out + "/two", preset="tiny", max_steps=7, progress=False,
                         overrides=shuffle,
                         strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    print("RESULT" + json.dumps({"one": one, "two": two}))
""")


def test_mirrored_strategy_matches_one_device(tone_dataset, tmp_path):
    # Logical devices must be configured before TF starts: a fresh interpreter.
    done = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tone_dataset),
                           str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    one, two = result["one"], result["two"]
    assert one["step"] == two["step"] == list(range(1, 8))
    for name in ("d_loss", "g_loss", "d_real", "d_fake", "gp"):
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)


# ------------------------------------------------ random windows, augmentation
WINDOWS_AUG = {"data": "windows", "augment": ("gain", "polarity", "shift", "cutout", "noise")}


def _resume_matches_straight(tone_dataset, tmp_path, overrides, retrying, also=None):
    """Train ``tiny`` with ``overrides`` straight and stopped at step 10 + resumed; the
    resumed history must equal the straight one, and ``also(straight, folder)`` pass
    (a check that compares with another run). Retried as ``compare_runs_retrying``
    says. Returns the straight history and the folder of the attempt that passed."""
    def check(attempt):
        folder = tmp_path / f"attempt{attempt}"
        straight = training.train(tone_dataset, folder / "straight", preset="tiny",
                                  overrides=overrides, progress=False)
        training.train(tone_dataset, folder / "resumed", preset="tiny", overrides=overrides,
                       max_steps=10, progress=False)
        resumed = training.train(tone_dataset, folder / "resumed", resume=True, progress=False)
        assert resumed["step"] == list(range(1, 21))
        _assert_same_history(resumed, straight)
        if also is not None:
            also(straight, folder)
        return straight, folder

    return retrying(check)


def test_resume_with_windows_and_augmentation_equals_uninterrupted(tone_dataset, tmp_path,
                                                                  compare_runs_retrying):
    straight, folder = _resume_matches_straight(tone_dataset, tmp_path, WINDOWS_AUG,
                                                compare_runs_retrying)
    plain = training.train(tone_dataset, tmp_path / "plain", preset="tiny", max_steps=3,
                           progress=False)
    # Augmentation and windows change what the critic sees from the first step.
    assert straight["d_loss"][0] != pytest.approx(plain["d_loss"][0], rel=1e-3)
    stored = json.loads((folder / "resumed" / "config.json").read_text())["preset"]
    assert stored["data"] == "windows" and stored["augment"] == list(WINDOWS_AUG["augment"])


@pytest.mark.parametrize("representation", ["spectral", "magnitude"])
def test_spectral_resume_equals_uninterrupted(tone_dataset, tmp_path, representation,
                                             compare_runs_retrying):
    def same_checkpoints(_, folder):
        _assert_same_checkpoints(folder / "straight", folder / "resumed")

    _resume_matches_straight(tone_dataset, tmp_path,
                             {"representation": representation, "data": "windows"},
                             compare_runs_retrying, also=same_checkpoints)


def test_augmented_step_feeds_the_critic_transformed_audio():
    gan, _ = tiny_gan()
    gan.augment = ("polarity",)
    gan.set_scale(1)
    real = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 128, 1)).astype(np.float32)
    noise = gan.draw_noise(4, 128)
    assert noise["aug_uniform"].shape == (2 * gan.n_critic + 1, 4, 4)
    row = np.array(noise["aug_uniform"][0])
    seen = np.array(gan._augmented(real, noise, 0))
    np.testing.assert_allclose(seen, real * np.where(row[:, 1] < 0.5, -1, 1)[:, None, None])


def test_bad_penalty_and_architecture_are_named(tone_dataset, tmp_path):
    cases = [({"penalty": "r2"}, "penalty='r2'"),
             ({"architecture": "stylegan"}, "architecture='stylegan'"),
             ({"architecture": "wavegan"}, "only the finest scale"),
             ({"architecture": "wavegan", "representation": "spectral",
               "stable_steps": (0, 0, 5), "fade_steps": 0}, "representation='spectral'"),
             ({"scale_gains": "loudest"}, "scale_gains='loudest'"),
             ({"scale_gains": "finest"}, "needs data='windows'"),
             ({"critic_emphasis": 1.0}, r"critic_emphasis=1.0: must be in \[0, 1\)"),
             ({"critic_emphasis": 0.9, "representation": "magnitude"},
              "critic_emphasis=0.9: the progressive waveform players only"),
             ({"critic_spectrum": 100}, "critic_spectrum=100: must be 0 .* power of 2"),
             ({"critic_spectrum": 64, "architecture": "wavegan", "stable_steps": (0, 0, 5),
               "fade_steps": 0}, "critic_spectrum=64: the progressive waveform players"),
             ({"spectrum_match": -1.0}, r"spectrum_match=-1.0: must be >= 0"),
             ({"upsample": "nearest"}, r"upsample='nearest': must be one of \('fir', "),
             ({"upsample": "subpixel", "representation": "spectral"},
              "upsample=subpixel: the progressive waveform players only"),
             ({"spectrum_match": 1.0, "representation": "magnitude"},
              "spectrum_match=1.0: the progressive waveform players only")]
    for i, (overrides, message) in enumerate(cases):
        with pytest.raises(training.RunError, match=message):
            training.train(tone_dataset, tmp_path / str(i), preset="tiny", overrides=overrides,
                           progress=False)


WAVEGAN = {"architecture": "wavegan", "stable_steps": (0, 0, 20), "fade_steps": 0}


def test_wavegan_run_trains_the_finest_scale_resumes_and_generates(tone_dataset, tmp_path,
                                                                   compare_runs_retrying):
    straight, folder = _resume_matches_straight(tone_dataset, tmp_path,
                                                {**WAVEGAN, "penalty": "r1"},
                                                compare_runs_retrying)
    assert all(np.isfinite(straight["gp"])) and max(straight["gp"]) > 0
    generator, info = training.load_generator(folder / "straight")
    assert type(generator).__name__ == "WaveGANGenerator" and info["scale"] == 2
    with pytest.raises(training.RunError, match="trained scales are 2..2"):
        training.load_generator(folder / "straight", scale=0)


def test_finest_gains_reach_the_phase_batches(tone_dataset, tmp_path, monkeypatch):
    from pggan_lib import config, data

    asked = []
    window_dataset = data.make_window_dataset

    def spy(*args, gain_scale=None, **kwargs):
        asked.append((args[2], gain_scale))  # (scale of the windows, whose gains)
        return window_dataset(*args, gain_scale=gain_scale, **kwargs)

    monkeypatch.setattr(data, "make_window_dataset", spy)
    for gains in config.SCALE_GAINS:
        training.train(tone_dataset, tmp_path / gains, preset="tiny", progress=False,
                       overrides={"data": "windows", "scale_gains": gains})
    # One dataset per phase (3 stable + 2 fades); "finest" reads the finest scale's gains.
    assert asked == [(k, None) for k in (0, 1, 1, 2, 2)] + [(k, 2) for k in (0, 1, 1, 2, 2)]
    stored = json.loads((tmp_path / "finest" / "config.json").read_text())["preset"]
    assert stored["scale_gains"] == "finest"


def test_r1_changes_only_the_penalty(tone_dataset, tmp_path):
    gp = training.train(tone_dataset, tmp_path / "gp", preset="tiny", max_steps=3,
                        progress=False)
    r1 = training.train(tone_dataset, tmp_path / "r1", preset="tiny", max_steps=3,
                        overrides={"penalty": "r1"}, progress=False)
    # Same weights and batches at step 1: the same D(x), D(G(z)); another penalty.
    assert r1["d_real"][0] == pytest.approx(gp["d_real"][0], rel=1e-5)
    assert r1["d_fake"][0] == pytest.approx(gp["d_fake"][0], rel=1e-5)
    assert r1["gp"][0] != pytest.approx(gp["gp"][0], rel=1e-3)


def test_bad_data_mode_and_augmentation_are_named(tone_dataset, tmp_path):
    with pytest.raises(training.RunError, match="data='shuffled'"):
        training.train(tone_dataset, tmp_path / "a", preset="tiny",
                       overrides={"data": "shuffled"}, progress=False)
    with pytest.raises(training.RunError, match="augment: unknown augmentation"):
        training.train(tone_dataset, tmp_path / "b", preset="tiny",
                       overrides={"augment": ("reverse",)}, progress=False)


def test_preset_pixel_norm_and_critic_options_reach_the_networks(tone_dataset, tmp_path):
    history = training.train(tone_dataset, tmp_path / "run", preset="tiny", max_steps=2,
                             progress=False, overrides={"feature_pixel_norm": False,
                                                        "critic_emphasis": 0.9,
                                                        "critic_spectrum": 16})
    assert np.isfinite(history["d_loss"]).all()
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["model_spec"]
    assert stored["feature_pixel_norm"] is False and stored["critic_emphasis"] == 0.9
    assert stored["critic_spectrum"] == 16
    generator, _ = training.load_generator(tmp_path / "run")
    assert isinstance(generator.latent_norm, L.PixelNorm)  # the latent's stays
    assert not any(isinstance(layer, L.PixelNorm) for block in generator.blocks
                   for layer in block)
    with pytest.raises(training.RunError, match="feature_pixel_norm=False: the progressive "
                                                "waveform players only"):
        training.train(tone_dataset, tmp_path / "bad", preset="tiny", progress=False,
                       overrides={"feature_pixel_norm": False, "representation": "spectral"})


def test_learning_rate_per_scale_is_each_phase_s_and_resumes(tone_dataset, tmp_path,
                                                            compare_runs_retrying):
    rates = (1e-3, 5e-4, 2.5e-4)
    seen = {}

    def record(gan, phase, step):
        seen.setdefault(phase.scale, set()).update(
            {float(gan.d_optimizer.learning_rate), float(gan.g_optimizer.learning_rate)})
        return False

    training.train(tone_dataset, tmp_path / "seen", preset="tiny", progress=False,
                   overrides={"learning_rate": rates}, on_step=record)
    assert seen == {k: {float(np.float32(rate))} for k, rate in enumerate(rates)}

    def scale_0_as_single_rate(straight, folder):
        single = training.train(tone_dataset, folder / "single", preset="tiny",
                                progress=False)
        # Scale 0 trains at the same rate as the single-rate run; scale 1 does not.
        first = straight["scale"].index(1)
        np.testing.assert_allclose(straight["d_loss"][:first + 1],
                                   single["d_loss"][:first + 1], rtol=1e-5)
        assert straight["d_loss"][first + 1:] != pytest.approx(single["d_loss"][first + 1:])

    _resume_matches_straight(tone_dataset, tmp_path, {"learning_rate": rates},
                             compare_runs_retrying, also=scale_0_as_single_rate)
    with pytest.raises(training.RunError, match=r"learning_rate=\(0.001, 0.0\): every rate"):
        training.train(tone_dataset, tmp_path / "bad", preset="tiny", progress=False,
                       overrides={"learning_rate": (1e-3, 0.0)})


def test_on_step_stops_the_run_where_it_says(tone_dataset, tmp_path):
    seen = []

    def stop_at_seven(gan, phase, step):
        seen.append((phase.scale, step))
        return step == 7

    history = training.train(tone_dataset, tmp_path / "run", preset="tiny", progress=False,
                             on_step=stop_at_seven)
    assert history["step"] == list(range(1, 8)) and seen[-1][1] == 7
    assert training.latest_checkpoint(tmp_path / "run").name == "ckpt-00000007.npz"


def test_max_minutes_stop_is_one_plain_line_and_resumes(tone_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    first = training.train(tone_dataset, run, preset="tiny", max_minutes=1e-9, progress=False)
    err = capsys.readouterr().err.strip().splitlines()
    stopped = [line for line in err if line.startswith("stopped after")]
    assert stopped == [f"stopped after 1e-09 minutes at step {first['step'][-1]} of 20; "
                       f"continue with resume=True (--resume)"]
    assert not any("Warning" in line for line in err)
    assert training.train(tone_dataset, run, resume=True, progress=False)["step"] == list(
        range(1, 21))


def test_a_phase_end_hook_cut_short_by_a_crash_runs_again_on_resume(tone_dataset, tmp_path):
    run = tmp_path / "run"
    calls = []

    def failing_at_phase_1(run_dir, phase):
        if phase.index == 1:
            raise RuntimeError("disk full while evaluating")
        calls.append((phase.index, training.read_checkpoint_meta(
            training.latest_checkpoint(run_dir))["global_step"]))

    with pytest.raises(RuntimeError, match="disk full"):
        training.train(tone_dataset, run, preset="tiny", progress=False,
                       on_phase_end=failing_at_phase_1)
    schedule = training.make_schedule(config.get_preset("tiny"), 3)
    assert calls == [(0, schedule[0].end_step)]

    def recording(run_dir, phase):
        calls.append((phase.index, json.loads((run_dir / "run_state.json").read_text())["phase"]))

    history = training.train(tone_dataset, run, resume=True, progress=False,
                             on_phase_end=recording)
    assert history["step"] == list(range(1, schedule[-1].end_step + 1))
    # Phase 1's hook first (with generator.keras still from phase 1), then the rest, once each.
    assert calls[1:] == [(p.index, p.index) for p in schedule[1:]]
    # A resume after a clean finish runs no hook again.
    calls.clear()
    training.train(tone_dataset, run, resume=True, progress=False, on_phase_end=recording)
    assert calls == []
