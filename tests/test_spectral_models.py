"""2-D progressive models over spectrogram resolutions: shapes, fade-in limits, saving."""

import numpy as np
import pytest

import keras

from pggan_lib.spectral_models import (SpectralCritic, SpectralGenerator, SpectralModelSpec,
                                       spectral_pyramid)

SPEC = SpectralModelSpec(num_scales=3, top_frames=16, top_bins=8, latent_dim=8,
                         channels=(8, 6, 4), minibatch_group_size=2)


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    return SpectralGenerator(SPEC), SpectralCritic(SPEC)


def test_shapes_at_every_scale(models):
    generator, critic = models
    z = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    for scale, shape in enumerate([(4, 2), (8, 4), (16, 8)]):
        assert SPEC.shape_at_scale(scale) == shape
        generator.set_scale(scale), critic.set_scale(scale)
        out = np.asarray(generator(z, training=False))
        assert out.shape == (4, *shape, 2)
        assert np.asarray(critic(out)).shape == (4, 1)


def test_fade_in_limits(models):
    """alpha = 0: the new scale's output is the previous scale's, upsampled (generator),
    and the critic scores the 2 x 2 average pool with the previous scale's path."""
    generator, critic = models
    z = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    x = np.random.default_rng(2).standard_normal((4, 16, 8, 2)).astype(np.float32)
    generator.set_scale(1), generator.set_alpha(1.0)
    coarse = np.asarray(generator(z, training=False))
    generator.set_scale(2), generator.set_alpha(0.0)
    faded = np.asarray(generator(z, training=True))
    np.testing.assert_allclose(faded, coarse.repeat(2, axis=1).repeat(2, axis=2), atol=1e-5)
    critic.set_scale(1), critic.set_alpha(1.0)
    pooled = x.reshape(4, 8, 2, 4, 2, 2).mean(axis=(2, 4))
    expected = np.asarray(critic(pooled))
    critic.set_scale(2), critic.set_alpha(0.0)
    np.testing.assert_allclose(np.asarray(critic(x)), expected, rtol=1e-5, atol=1e-5)
    generator.set_alpha(1.0), critic.set_alpha(1.0)
    # alpha = 1 at inference skips the old path: the same as alpha = 1 in training mode.
    np.testing.assert_allclose(np.asarray(generator(z, training=False)),
                               np.asarray(generator(z, training=True)), atol=1e-6)


def test_each_scale_trains_its_own_blocks(models):
    generator, critic = models
    names = {v.path for v in generator.variables_for_scale(0)}
    assert not any("g1_" in n or "g2_" in n for n in names)
    assert len(generator.variables_for_scale(2)) > len(generator.variables_for_scale(1))
    assert critic.count_params_at_scale(2) > critic.count_params_at_scale(0)


def test_keras_round_trip(models, tmp_path):
    generator, _ = models
    generator.set_scale(2)
    z = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    path = tmp_path / "g.keras"
    generator.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.spec == SPEC and loaded.current_scale == 2
    np.testing.assert_allclose(np.asarray(loaded(z, training=False)),
                               np.asarray(generator(z, training=False)), atol=1e-6)


def test_pyramid_is_average_pooling():
    x = np.arange(2 * 8 * 4 * 2, dtype=np.float32).reshape(2, 8, 4, 2)
    levels = spectral_pyramid(x, 3)
    assert [lv.shape for lv in levels] == [(2, 2, 1, 2), (2, 4, 2, 2), (2, 8, 4, 2)]
    np.testing.assert_array_equal(levels[-1], x)
    assert levels[1][0, 0, 0, 0] == pytest.approx(np.mean(x[0, :2, :2, 0]))
    assert levels[0][1, 1, 0, 1] == pytest.approx(np.mean(x[1, 4:, :, 1]))
    with pytest.raises(ValueError, match="divisible"):
        spectral_pyramid(x[:, :6], 3)


@pytest.mark.parametrize("kwargs, field", [({"top_bins": 6}, "top_bins"),
                                           ({"out_channels": 3}, "out_channels"),
                                           ({"channels": (4, 4)}, "channels"),
                                           ({"activation": "relu"}, "activation")])
def test_bad_specs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SpectralModelSpec(**{"num_scales": 3, "top_frames": 16, "top_bins": 8, **kwargs})


def test_in_graph_representation_matches_librosa_and_inverts():
    from pggan_lib import spectral
    from pggan_lib.spectral_models import representation_tensor, waveforms

    rng = np.random.default_rng(0)
    t = np.arange(4096) / 16000
    clips = np.stack([0.3 * np.sin(2 * np.pi * 330 * t) * np.exp(-2 * t)
                      + 0.01 * rng.standard_normal(t.size) for _ in range(2)]).astype(np.float32)
    stft = spectral.SpectralSpec(n_fft=256, hop_length=64)
    reference = spectral.to_magnitude_if(clips, stft)[:, :64, :128]
    got = np.asarray(representation_tensor(clips[..., None], stft, 64, 128))
    assert got.shape == (2, 64, 128, 2)
    np.testing.assert_allclose(got[..., 0], reference[..., 0], atol=2e-3)
    # IF where there is energy (elsewhere the phase is noise); +-1 are the same wrapped value.
    loud = reference[..., 0] > reference[..., 0].max() - 6.0
    difference = np.abs(got[..., 1] - reference[..., 1])[loud]
    assert np.all(np.minimum(difference, 2.0 - difference) < 1e-3)
    back = waveforms(got, stft, 4096)
    # The cropped last frame (the final hop) and Nyquist bin are the only losses.
    assert spectral.snr_db(clips[:, :-stft.n_fft], back[:, :-stft.n_fft]) > 40.0
