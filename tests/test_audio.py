"""Tests for pggan_lib.audio: values measured on generated signals."""

import numpy as np
import pytest
import soundfile as sf

from pggan_lib import audio
from pggan_lib.config import scale_sample_rate


def tone(freq, sample_rate, seconds, amplitude=0.5, phase=0.0):
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def peak_frequency(x, sample_rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * sample_rate / len(x)


def trimmed(x, edge):
    """Drop the edges, where a filter sees the zeros beyond the signal."""
    return x[edge:-edge]


# ---------------------------------------------------------------- levels

def test_rms_db_of_full_scale_sine_is_minus_3_db():
    assert audio.rms_db(tone(440, 16000, 1.0, amplitude=1.0)) == pytest.approx(-3.0103, abs=1e-3)
    assert audio.rms_db(np.zeros(100)) == -200.0
    rows = np.stack([tone(440, 16000, 0.5, 1.0), tone(440, 16000, 0.5, 0.1)])
    np.testing.assert_allclose(audio.rms_db(rows, axis=-1), [-3.0103, -23.0103], atol=1e-3)


def test_normalize_loudness_hits_target_and_respects_peak():
    x = tone(300, 16000, 0.5, amplitude=0.01)
    y = audio.normalize_loudness(x, target_db=-20.0)
    assert y.dtype == np.float32
    assert audio.rms_db(y) == pytest.approx(-20.0, abs=0.01)
    # A spiky signal (crest factor 30) cannot reach -20 dB RMS without exceeding the
    # peak: the gain stops at the peak limit.
    spiky = np.zeros(900, np.float32)
    spiky[::100] = 0.1
    z = audio.normalize_loudness(spiky, target_db=-20.0, peak=0.99)
    assert np.abs(z).max() == pytest.approx(0.99, abs=1e-6)
    assert audio.rms_db(z) < -20.0
    # Gain cap: -80 dB plus at most 40 dB gives -40 dB.
    quiet = tone(300, 16000, 0.5, amplitude=1e-4 * np.sqrt(2))
    assert audio.rms_db(audio.normalize_loudness(quiet, -20.0, max_gain_db=40.0)) == \
        pytest.approx(-40.0, abs=0.01)
    # Silence stays silence (no division by zero).
    assert not np.any(audio.normalize_loudness(np.zeros(64)))


def test_normalize_loudness_per_row():
    rows = np.stack([tone(200, 8000, 0.25, 0.5), tone(200, 8000, 0.25, 0.001), np.zeros(2000)])
    out = audio.normalize_loudness(rows, -20.0, axis=-1)
    np.testing.assert_allclose(audio.rms_db(out[:2], axis=-1), [-20.0, -20.0], atol=0.01)
    assert not np.any(out[2])


# ---------------------------------------------------------------- resampling

@pytest.mark.parametrize("orig_sr, target_sr, freq", [(44100, 16000, 1000.0),
                                                      (8000, 16000, 440.0),
                                                      (22050, 8000, 2500.0)])
def test_resample_keeps_frequency_and_level(orig_sr, target_sr, freq):
    x = tone(freq, orig_sr, 1.0)
    y = audio.resample(x, orig_sr, target_sr)
    assert y.dtype == np.float32
    assert abs(len(y) - target_sr) <= 1
    assert peak_frequency(y, target_sr) == pytest.approx(freq, abs=2.0)
    assert audio.rms_db(trimmed(y, 200)) == pytest.approx(audio.rms_db(x), abs=0.05)


def test_resample_removes_content_above_new_nyquist():
    x = tone(6000, 44100, 1.0)  # above 8000 / 2
    y = audio.resample(x, 44100, 8000)
    assert audio.rms_db(x) - audio.rms_db(trimmed(y, 200)) > 60.0


def test_downsample2_attenuates_above_new_nyquist_by_40_db():
    sample_rate = 16000
    above = tone(0.3 * sample_rate, sample_rate, 1.0)  # 4800 Hz > new Nyquist 4000 Hz
    attenuation = audio.rms_db(above) - audio.rms_db(trimmed(audio.downsample2(above), 100))
    assert attenuation >= 40.0
    # Without the filter the tone folds back at full level (the aliasing it prevents).
    assert audio.rms_db(above) - audio.rms_db(above[::2]) < 1.0


def test_downsample2_keeps_passband_tone_within_1_db():
    sample_rate = 16000
    inside = tone(0.1 * sample_rate, sample_rate, 1.0)  # 1600 Hz < 4000 Hz
    y = audio.downsample2(inside)
    assert len(y) == len(inside) // 2
    assert abs(audio.rms_db(trimmed(y, 100)) - audio.rms_db(inside)) < 1.0
    assert peak_frequency(y, sample_rate // 2) == pytest.approx(1600, abs=2)
    # time alignment: the filter has no delay, sample n of y sits at sample 2n of x
    np.testing.assert_allclose(trimmed(y, 100), trimmed(inside[::2], 100), atol=2e-3)


def test_downsample2_odd_length_and_channels():
    assert audio.downsample2(np.ones(1001, np.float32)).shape == (501,)
    assert audio.downsample2(np.ones((100, 2), np.float32)).shape == (50, 2)


def test_sample_rate_pyramid_lengths_rates_and_content():
    num_scales, sample_rate, clip_samples = 7, 16000, 16384
    x = tone(100, sample_rate, clip_samples / sample_rate) + tone(3000, sample_rate,
                                                                   clip_samples / sample_rate)
    pyramid = audio.sample_rate_pyramid(x, num_scales)
    assert len(pyramid) == num_scales
    for k, level in enumerate(pyramid):
        assert level.shape == (clip_samples // 2 ** (num_scales - 1 - k),)
        rate = scale_sample_rate(k, num_scales, sample_rate)
        assert level.shape[0] == pytest.approx(rate * clip_samples / sample_rate)
    np.testing.assert_array_equal(pyramid[-1], x)
    # The coarsest scale (250 Hz) keeps the 100 Hz tone and drops the 3 kHz one.
    coarsest = trimmed(pyramid[0], 16)
    assert peak_frequency(pyramid[0], 250) == pytest.approx(100, abs=2)
    assert audio.rms_db(coarsest) == pytest.approx(audio.rms_db(tone(100, 16000, 1.0)), abs=0.5)
    with pytest.raises(ValueError, match="divisible by"):
        audio.sample_rate_pyramid(np.zeros(1000, np.float32), 7)


# ---------------------------------------------------------------- segmenting

def test_segment_counts_and_values():
    x = np.arange(10, dtype=np.float32)
    clips = audio.segment(x, 3)
    assert clips.shape == (3, 3)
    np.testing.assert_array_equal(clips[2], [6, 7, 8])
    assert audio.segment(x, 3, hop=2).shape == (4, 3)
    assert audio.segment(x, 4, hop=1).shape == (7, 4)
    assert audio.segment(x, 11).shape == (0, 11)
    assert audio.segment(np.zeros(16384 * 5 + 100), 16384).shape == (5, 16384)


def test_to_mono_averages_channels():
    stereo = np.stack([np.ones(5), -np.ones(5) * 0.5], axis=1).astype(np.float32)
    np.testing.assert_allclose(audio.to_mono(stereo), 0.25)


# ---------------------------------------------------------------- files

@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg", ".mp3"])
def test_load_audio_formats_rates_and_channels(tmp_path, suffix):
    left, right = tone(440, 22050, 1.0, 0.4), tone(660, 22050, 1.0, 0.2)
    path = audio.save_audio(tmp_path / f"x{suffix}", np.stack([left, right], 1), 22050)
    info = audio.audio_info(path)
    assert (info.sample_rate, info.channels) == (22050, 2)
    both = audio.load_audio(path, mono=False)
    assert both.shape[1] == 2 and both.dtype == np.float32
    mono = audio.load_audio(path, sample_rate=16000)
    assert mono.ndim == 1 and abs(len(mono) - 16000) <= 1200  # lossy codecs pad a little
    lossless = suffix in (".wav", ".flac")
    if lossless:
        np.testing.assert_allclose(both[:, 0], left, atol=1 / 32768)
    expected_db = audio.rms_db((left + right) / 2)
    assert audio.rms_db(trimmed(mono, 2000)) == pytest.approx(expected_db,
                                                               abs=0.1 if lossless else 1.0)


def test_iter_audio_blocks_equals_load_audio(tmp_path):
    x = np.stack([tone(440, 44100, 2.0), tone(220, 44100, 2.0)], 1)
    path = audio.save_audio(tmp_path / "s.wav", x, 44100)
    streamed = np.concatenate(list(audio.iter_audio_blocks(path, 16000, block_frames=5000)))
    np.testing.assert_allclose(streamed, audio.load_audio(path, 16000), atol=1e-6)


def test_save_audio_round_trip_and_clipping(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 2.0, -2.0], np.float32)
    path = audio.save_audio(tmp_path / "sub" / "c.flac", x, 8000)
    y, rate = sf.read(path, dtype="float32")
    assert rate == 8000 and sf.info(path).subtype == "PCM_16"
    np.testing.assert_allclose(y, [0, 0.5, -0.5, 1, -1], atol=1 / 32768)


def bad_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("these are my notes, not audio\n")
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    sf.write(tmp_path / "nosamples.wav", np.zeros(0, np.float32), 8000)
    sf.write(tmp_path / "nan.wav", np.array([0.1, np.nan, 0.2], np.float32), 8000,
             subtype="FLOAT")
    return {
        "empty.wav": "empty file (0 bytes)",
        "notes.wav": "not a recognised audio format",
        "corrupt.flac": "not a recognised audio format",
        "nosamples.wav": "contains no samples",
        "nan.wav": "non-finite samples",
        "missing.ogg": "file not found",
    }


def test_audio_error_for_each_bad_input(tmp_path):
    for name, reason in bad_files(tmp_path).items():
        path = tmp_path / name
        with pytest.raises(audio.AudioError) as caught:
            audio.load_audio(path)
        assert reason in caught.value.reason
        assert str(caught.value) == f"{path}: {caught.value.reason}"
        assert isinstance(caught.value, ValueError) and caught.value.path == str(path)
        with pytest.raises(audio.AudioError, match=reason.split(" (")[0]):
            list(audio.iter_audio_blocks(path, 16000))


# ---------------------------------------------------------------- spectrograms

def test_stft_db_peak_at_tone_frequency_and_level():
    sample_rate = 8000
    spectrogram = audio.stft_db(tone(1000, sample_rate, 0.5, amplitude=0.5), n_fft=512)
    assert spectrogram.shape[0] == 257
    peak_bin = np.argmax(spectrogram.mean(axis=1))
    assert peak_bin * sample_rate / 512 == pytest.approx(1000, abs=sample_rate / 512)
    assert spectrogram.max() == pytest.approx(20 * np.log10(0.5), abs=0.5)
    # a coarse-scale clip shorter than n_fft still works
    assert audio.stft_db(np.zeros(256, np.float32) + 0.1, n_fft=512).shape[0] == 129


def test_log_mel_spectrogram_shape_and_peak_band():
    import librosa

    sample_rate = 16000
    mel = audio.log_mel_spectrogram(tone(2000, sample_rate, 0.5), sample_rate, n_mels=40)
    assert mel.shape == (40, 1 + 8000 // 256)
    assert mel.max() == pytest.approx(0.0, abs=1e-4)
    centres = librosa.mel_frequencies(n_mels=42, fmax=sample_rate / 2)[1:-1]
    assert centres[np.argmax(mel.mean(axis=1))] == pytest.approx(2000, rel=0.1)


def test_a_text_file_named_mp3_is_named_plainly_and_decoder_notes_stay_quiet(tmp_path, capfd):
    path = tmp_path / "song.mp3"
    path.write_text("not audio at all, only a name\n" * 20)
    with pytest.raises(audio.AudioError) as caught:
        audio.audio_info(path)
    assert caught.value.reason == "not a recognised audio format: its content is not MP3 audio"
    captured = capfd.readouterr()
    assert "Note:" not in captured.err and "Illegal" not in captured.err


def test_play_resamples_slow_clips_for_the_browser():
    import io
    import soundfile as sf

    rate = 250
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 40.0 * t)).astype(np.float32)   # 1 s at 40 Hz
    player = audio.play(tone[:, None], rate, normalize=False)
    played, played_rate = sf.read(io.BytesIO(player.data))
    assert played_rate == audio.PLAYBACK_RATE
    assert len(played) == audio.PLAYBACK_RATE          # still one second
    rms = np.sqrt(np.mean(played[1000:-1000] ** 2))      # away from the resampler's edges
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.01            # level kept when not normalised
    spectrum = np.abs(np.fft.rfft(played))
    assert abs(np.argmax(spectrum) - 40) <= 1           # still 40 Hz (1 Hz bins)
    fast = audio.play(np.zeros(16_000, np.float32) + 0.1, 16_000)
    assert sf.info(io.BytesIO(fast.data)).samplerate == 16_000
