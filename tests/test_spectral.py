"""Spectrogram representations: exact round trips, IF of tones, Griffin-Lim, bad input."""

import numpy as np
import pytest

from pggan_lib import spectral
from pggan_lib.spectral import SpectralSpec

RATE = 16_000


def _piano_like(samples=4096, seed=0):
    """Two clips of decaying harmonic partials with a little noise (music-like, not tones)."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    clips = []
    for f0 in (220.0, 311.1):
        x = sum(np.exp(-3 * t) * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)) / h
                for h in range(1, 8))
        clips.append(0.3 * x + 0.001 * rng.standard_normal(samples))
    return np.stack(clips).astype(np.float32)


def test_shapes_follow_the_spec():
    spec = SpectralSpec(n_fft=256, hop_length=64)
    rep = spectral.to_magnitude_if(np.zeros((3, 4096), np.float32), spec)
    assert rep.shape == (3, spec.frames(4096), 129, 2) == (3, 65, 129, 2)
    assert rep.dtype == np.float32
    # Silence sits at the magnitude floor, with no phase advance.
    assert np.allclose(rep[..., 0], np.log(spectral.MAGNITUDE_FLOOR))
    mel = spectral.to_magnitude_if(np.zeros((1, 4096, 1)), SpectralSpec(mel_bins=48))
    assert mel.shape == (1, 65, 48, 2)


def test_magnitude_if_round_trip_is_exact_up_to_float_rounding():
    clips = _piano_like()
    spec = SpectralSpec(n_fft=256, hop_length=64)
    rep = spectral.to_magnitude_if(clips, spec)
    back = spectral.from_magnitude_if(rep, spec, clips.shape[1])
    # float32 storage of log magnitude and IF: the error is rounding, > 60 dB down.
    assert spectral.snr_db(clips, back) > 60.0
    # The IF channel is the wrapped phase advance over pi: inside [-1, 1].
    assert rep[..., 1].min() >= -1.0 and rep[..., 1].max() <= 1.0


def test_instantaneous_frequency_of_a_pure_tone_is_its_frequency():
    spec = SpectralSpec(n_fft=512, hop_length=128, sample_rate=RATE)
    for f in (440.0, 1234.5, 3000.0):
        tone = np.sin(2 * np.pi * f * np.arange(8192) / RATE)[None]
        inst = spectral.instantaneous_frequency_hz(tone, spec)[0]
        peak = int(round(f * spec.n_fft / RATE))   # the bin nearest the tone
        middle = inst[4:-4, peak]                  # away from the padded edges
        assert np.max(np.abs(middle - f)) < 0.01, (f, middle[:3])
        # The bin's centre frequency is up to half a bin (15.6 Hz) away: the IF is not it.
        assert abs(peak * RATE / spec.n_fft - f) > 1.0 or f == 3000.0


def test_mel_axis_keeps_a_flat_spectrum_and_inverts_approximately():
    spec = SpectralSpec(n_fft=256, hop_length=64, mel_bins=48, sample_rate=RATE)
    to_mel, from_mel = spectral._mel_maps(spec)
    # Normalised filters: a constant across bins stays that constant on the mel axis.
    assert np.allclose(np.ones(spec.linear_bins) @ to_mel.T, 1.0)
    clips = _piano_like()
    back = spectral.from_magnitude_if(spectral.to_magnitude_if(clips, spec), spec, 4096)
    snr = spectral.snr_db(clips, back)
    assert -3.0 < snr < 60.0   # lossy: 48 mel bins for 129 linear ones
    assert np.isfinite(back).all()


def test_griffin_lim_recovers_the_magnitude_not_the_waveform():
    clips = _piano_like()
    spec = SpectralSpec(n_fft=256, hop_length=64)
    rep = spectral.to_magnitude(clips, spec)
    assert rep.shape[-1] == 1
    back = spectral.from_magnitude_griffin_lim(rep, spec, clips.shape[1], n_iter=64)
    target = np.abs(spectral.stft(clips, spec))
    got = np.abs(spectral.stft(back, spec))
    convergence = np.linalg.norm(got - target) / np.linalg.norm(target)
    assert convergence < 0.3                          # the magnitudes nearly match ...
    assert spectral.snr_db(clips, back) < 10.0       # ... the waveform, with its phase, does not
    exact = spectral.from_magnitude_if(spectral.to_magnitude_if(clips, spec), spec, 4096)
    assert spectral.snr_db(clips, exact) > spectral.snr_db(clips, back) + 40


@pytest.mark.parametrize("kwargs, field", [({"n_fft": 300}, "n_fft"),
                                           ({"hop_length": 200}, "hop_length"),
                                           ({"mel_bins": -1}, "mel_bins")])
def test_bad_specs_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SpectralSpec(**kwargs)


def test_too_many_mel_bins_are_refused():
    spec = SpectralSpec(n_fft=256, mel_bins=64)
    with pytest.raises(ValueError, match="mel_bins=64 is too many for n_fft=256"):
        spectral.to_magnitude_if(np.zeros((1, 1024)), spec)


def test_bad_clip_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(N, samples\)"):
        spectral.to_magnitude_if(np.zeros((2, 3, 4)), SpectralSpec())


def test_log_spectral_distance_is_the_level_difference_in_db():
    rng = np.random.default_rng(5)
    clips = rng.standard_normal((2, 4096)).astype(np.float32) * 0.1
    spec = spectral.SpectralSpec(n_fft=256, hop_length=64)
    np.testing.assert_allclose(spectral.log_spectral_distance(clips, clips, spec), 0.0,
                               atol=1e-9)
    louder = clips * 10 ** (6.0 / 20)
    # White noise sits far above the 80 dB floor: every bin is exactly 6 dB up.
    np.testing.assert_allclose(spectral.log_spectral_distance(clips, louder, spec), 6.0,
                               rtol=1e-4)
    # Silence is at most floor_db away, and a wider floor lets it count for more.
    silent = np.zeros_like(clips)
    near, far = (spectral.log_spectral_distance(clips, silent, spec, f) for f in (40.0, 80.0))
    assert np.all((20.0 < near) & (near <= 40.0)) and np.all(far > near + 30.0)
