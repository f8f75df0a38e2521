"""Tests of pggan_lib.playground: slerp, equal-power overlap-add, tracks, seeds.

Values, not shapes only: slerp keeps the norm and the great circle, the
crossfade keeps the loudness of unrelated signals within 0.5 dB through a
join and puts no click in it (energy above the tones, in dB), a one-clip
track is the seed's clip, and a seed gives the clip `pggan generate` writes.
"""

import numpy as np
import pytest
import soundfile as sf

from pggan_lib import playground, training

REFERENCE = "results/reference"


def test_slerp_keeps_the_sphere_and_its_ends():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    path = playground.slerp(a, b, np.linspace(0, 1, 11))
    np.testing.assert_allclose(path[0], a, atol=1e-5)
    np.testing.assert_allclose(path[-1], b, atol=1e-5)
    # Same norm all along (a straight line would dip to |a| cos(omega / 2) midway).
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), np.linalg.norm(a), rtol=1e-5)
    # Equal angular steps: consecutive points equally far apart.
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    np.testing.assert_allclose(steps, steps[0], rtol=1e-4)
    assert playground.slerp(a, b, 0.5).shape == (64,)
    np.testing.assert_allclose(playground.slerp(a, 2 * a, 0.5), 1.5 * a, rtol=1e-5)


def test_crossfade_ramps_have_equal_power():
    fade_in, fade_out = playground.crossfade_ramps(1000)
    np.testing.assert_allclose(fade_in ** 2 + fade_out ** 2, 1.0, atol=1e-6)
    assert fade_in[0] < 0.01 and fade_out[-1] < 0.01 and np.all(np.diff(fade_in) > 0)


def _power_db(signals, frame):
    """Level per frame, averaged over many independent signals (rows)."""
    power = np.mean(np.asarray(signals) ** 2, axis=0)
    return 10 * np.log10(power[: len(power) // frame * frame].reshape(-1, frame).mean(axis=1))


def test_overlap_add_keeps_loudness_of_unrelated_clips():
    rng = np.random.default_rng(1)
    trials = rng.standard_normal((64, 4, 16384)).astype(np.float32) * 0.1
    tracks = [playground.overlap_add(clips, overlap=4096) for clips in trials]
    assert tracks[0].shape == (3 * 12288 + 16384,)
    level = _power_db(tracks, 512)
    assert np.max(np.abs(level + 20.0)) < 0.5, level  # 0.1 rms = -20 dB, joins included
    # The linear crossfade this replaces dips by about 3 dB in the middle of a join.
    ramp = np.linspace(0, 1, 4096, dtype=np.float32)
    linear = [np.concatenate([c[0][:-4096], c[0][-4096:] * ramp[::-1] + c[1][:4096] * ramp,
                              c[1][4096:]]) for c in trials]
    assert _power_db(linear, 512).min() < -22.5


def test_joins_have_no_click():
    rate, n = 16000, 16384
    t = np.arange(n) / rate
    clips = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 587 * t + 1.3)])

    hard_cut = np.concatenate([clips[0][:n - 2048], clips[1][2048:]])
    smooth = playground.overlap_add(clips, overlap=4096)
    join = n - 2048  # both joins are centred here
    assert playground.band_energy_db(hard_cut, rate, join) > -50  # the click: broadband
    # As clean as one tone alone (about -121 dB).
    assert playground.band_energy_db(smooth, rate, join) < -100
    assert playground.band_energy_db(clips[0], rate, join) < -100


def test_track_clip_count_covers_the_length():
    assert playground.track_clip_count(100, 256, 64) == 1
    for length in (257, 448, 449, 5000):
        count = playground.track_clip_count(length, 256, 64)
        assert (count - 1) * 192 + 256 >= length > (count - 2) * 192 + 256


def test_encode_audio_round_trip(tmp_path):
    x = np.sin(np.linspace(0, 100, 8000)).astype(np.float32) * 0.5
    for fmt in ("wav", "flac"):
        path = tmp_path / f"x.{fmt}"
        path.write_bytes(playground.encode_audio(x, 8000, fmt))
        y, rate = sf.read(path)
        assert rate == 8000 and len(y) == 8000 and np.max(np.abs(y - x)) < 1e-4
    with pytest.raises(ValueError, match="format"):
        playground.encode_audio(x, 8000, "mp3")


@pytest.fixture(scope="module")
def reference():
    return playground.Playground(REFERENCE)


def test_seed_gives_the_clip_pggan_generate_writes(reference):
    clips, rate, _ = training.generate_audio(REFERENCE, 1, seed=3)
    np.testing.assert_array_equal(reference.clips([3]), clips)
    assert rate == reference.sample_rate == 16000
    # A one-clip track is the seed's clip, cut to length.
    np.testing.assert_array_equal(reference.track(0.5, seed=3), clips[0][:8000])


def test_track_of_any_length_is_smooth_and_finite(reference):
    track = reference.track(7.3, seed=2)
    assert track.shape == (round(7.3 * 16000),) and np.all(np.isfinite(track))
    again = reference.track(7.3, seed=2)
    np.testing.assert_array_equal(track, again)
    assert not np.array_equal(track, reference.track(7.3, seed=4))
    walk = reference.walk_latents(2, 9, clips_per_anchor=4)
    np.testing.assert_array_equal(walk[0], reference.latent_vectors([2])[0])
    # Successive latents of the walk are closer than two independent latents.
    assert np.linalg.norm(np.diff(walk, axis=0), axis=1).max() < 0.6 * np.sqrt(2 * 64)


def test_interpolation_ends_are_the_seeds(reference):
    ends = reference.interpolate(5, 9, [0.0, 1.0])
    np.testing.assert_allclose(ends, reference.clips([5, 9]), atol=1e-5)


def test_write_is_atomic_and_by_suffix(reference, tmp_path):
    track = reference.track(2.0, seed=1)
    for fmt in ("wav", "flac"):
        path = reference.write(tmp_path / f"t.{fmt}", track)
        info = sf.info(path)
        assert info.format == fmt.upper() and info.frames == 32000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.flac", "t.wav"]


def test_bad_requests_are_named(reference, conditional_run):
    with pytest.raises(ValueError, match="seed must be >= 0"):
        reference.clips([-1])
    with pytest.raises(ValueError, match="unconditional"):
        reference.clips([1], class_name="folk_tunes")
    with pytest.raises(ValueError, match="seconds must be > 0"):
        reference.track(0.0)
    conditional = playground.Playground(conditional_run)
    with pytest.raises(ValueError, match="unknown class 'jazz'"):
        conditional.clips([1], class_name="jazz")
    low = conditional.clips([1, 2], class_name="low")
    high = conditional.clips([1, 2], class_name="high")
    assert low.shape == high.shape and not np.allclose(low, high)
