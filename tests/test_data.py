"""Tests for pggan_lib.data: a messy generated source folder -> dataset -> tf.data."""

import collections
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import pggan_lib
from pggan_lib import audio, data

SAMPLE_RATE = 8000
CLIP = 1024  # 0.128 s at 8 kHz
SCALES = 4  # 1000, 2000, 4000, 8000 Hz
BUILD = dict(sample_rate=SAMPLE_RATE, clip_samples=CLIP, num_scales=SCALES, test_fraction=0.3,
             seed=3, progress=False)

# class -> [(file name, source rate, channels, whole clips at 8 kHz)]; each file lasts
# n + 0.5 clips, so that it yields exactly n clips whatever the resampler's rounding.
GOOD_FILES = {
    "bach": [("b1.wav", 8000, 1, 5), ("b2.flac", 22050, 2, 4), ("b3.ogg", 44100, 1, 3),
             ("album/b4.mp3", 44100, 2, 3)],
    "folk": [("f1.wav", 44100, 2, 6), ("f2.flac", 8000, 1, 2), ("f3.ogg", 22050, 2, 4)],
    "palestrina": [("p1.flac", 44100, 1, 4), ("p2.wav", 22050, 1, 5), ("p3.mp3", 22050, 1, 3),
                   ("p4.wav", 8000, 2, 2)],
}
BAD_FILES = {
    "bach/corrupt.wav": "not a recognised audio format",
    "folk/empty.flac": "empty file (0 bytes)",
    "palestrina/notes.wav": "not a recognised audio format",
    "bach/short.wav": "shorter than one clip",
    "folk/silent.wav": "near-silent",
    "empty_class": "empty class folder",
}


def music_like(sample_rate, seconds, channels, rng, base):
    """Notes that change every 0.1 s plus a little noise: never near-silent."""
    t = np.arange(int(round(sample_rate * seconds))) / sample_rate
    pitch = base * 2 ** (np.floor(t * 10) % 5 / 12)
    x = 0.3 * np.sin(2 * np.pi * pitch * t) + 0.02 * rng.standard_normal(t.shape)
    x = np.stack([x * (0.5 + 0.5 * c) for c in range(channels)], axis=1)
    return x if channels > 1 else x[:, 0]


def make_source(root):
    rng = np.random.default_rng(0)
    for class_index, (name, files) in enumerate(GOOD_FILES.items()):
        for file_name, rate, channels, clips in files:
            path = root / name / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            seconds = (clips + 0.5) * CLIP / SAMPLE_RATE
            sf.write(path, music_like(rate, seconds, channels, rng, 150 + 80 * class_index), rate)
    (root / "bach" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(500))
    (root / "folk" / "empty.flac").write_bytes(b"")
    (root / "palestrina" / "notes.wav").write_text("not audio at all\n")
    sf.write(root / "bach" / "short.wav", music_like(8000, 0.05, 1, rng, 200), 8000)
    sf.write(root / "folk" / "silent.wav", np.zeros(4 * CLIP), SAMPLE_RATE)
    (root / "empty_class").mkdir()
    (root / "folk" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (root / "README.txt").write_text("my music\n")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    source = make_source(root / "source")
    report = data.build_dataset(source, root / "dataset", **BUILD)
    return source, root / "dataset", report


def test_build_keeps_every_clip_of_every_good_file(built):
    _, dataset_dir, report = built
    manifest = data.read_manifest(dataset_dir)
    assert manifest["class_names"] == ["bach", "folk", "palestrina"]
    for name, files in GOOD_FILES.items():
        expected = sum(clips for *_, clips in files)
        got = sum(manifest["splits"][s]["clips_per_class"][name] for s in data.SPLITS)
        assert got == expected, name
    by_path = {s["path"]: s for s in manifest["sources"]}
    for name, files in GOOD_FILES.items():
        for file_name, *_, clips in files:
            assert by_path[f"{name}/{file_name}"]["num_clips"] == clips
    assert manifest["scale_samples"] == [128, 256, 512, 1024]
    assert manifest["scale_sample_rates"] == [1000, 2000, 4000, 8000]
    total = sum(clips for files in GOOD_FILES.values() for *_, clips in files)
    assert report.num_clips("train") + report.num_clips("test") == total == 41


def test_build_names_each_bad_file_with_its_reason(built):
    _, dataset_dir, report = built
    skipped = dict(report.skipped)
    assert set(skipped) == set(BAD_FILES)
    for path, reason in BAD_FILES.items():
        assert reason in skipped[path], (path, skipped[path])
    manifest = data.read_manifest(dataset_dir)
    assert {e["path"]: e["reason"] for e in manifest["skipped"]} == skipped
    ignored = dict(report.ignored)
    assert set(ignored) == {"folk/cover.jpg", "README.txt"}
    summary = report.summary()
    for path in list(BAD_FILES) + ["folk/cover.jpg"]:
        assert path in summary
    assert "empty file (0 bytes)" in summary and "bach" in summary and "x real time" in summary


def test_split_is_by_source_file(built):
    _, dataset_dir, _ = built
    manifest = data.read_manifest(dataset_dir)
    train = set(manifest["splits"]["train"]["sources"])
    test = set(manifest["splits"]["test"]["sources"])
    assert not train & test
    assert train | test == {f"{c}/{f[0]}" for c, files in GOOD_FILES.items() for f in files}
    for name in GOOD_FILES:  # every class has files in both splits
        assert manifest["splits"]["test"]["clips_per_class"][name] > 0
        assert manifest["splits"]["train"]["clips_per_class"][name] > 0
    # records say which source they came from, and it is one of their split's sources
    for split in data.SPLITS:
        _, labels, source_ids = data.load_clips(dataset_dir, split, 0, with_source=True)
        for label, source_id in zip(labels, source_ids):
            entry = manifest["sources"][source_id]
            assert entry["split"] == split
            assert entry["class"] == manifest["class_names"][label]


def test_clips_are_loudness_normalised_at_every_scale(built):
    _, dataset_dir, _ = built
    for scale in range(SCALES):
        clips, _ = data.load_clips(dataset_dir, "train", scale)
        levels = audio.rms_db(clips[..., 0], axis=-1)
        np.testing.assert_allclose(levels, -20.0, atol=0.05)
        assert np.abs(clips).max() <= 0.99 + 1 / 32768


def test_stored_clips_equal_the_pyramid_of_the_source(built):
    source, dataset_dir, _ = built
    # b1.wav is already at 8 kHz and mono: the stored clips must equal the pyramid of the
    # whole file, cut into clips and normalised, up to int16 rounding.
    x = audio.load_audio(source / "bach" / "b1.wav")
    manifest = data.read_manifest(dataset_dir)
    source_id = [s["path"] for s in manifest["sources"]].index("bach/b1.wav")
    split = manifest["sources"][source_id]["split"]
    levels = [x]
    for _ in range(SCALES - 1):
        levels.append(audio.downsample2(levels[-1]))
    for scale in range(SCALES):
        length = CLIP >> (SCALES - 1 - scale)
        expected = audio.normalize_loudness(audio.segment(levels[SCALES - 1 - scale], length)[:5],
                                            axis=-1)
        clips, _, ids = data.load_clips(dataset_dir, split, scale, with_source=True)
        stored = clips[ids == source_id, :, 0]
        assert stored.shape == (5, length)
        for row in expected:
            assert np.min(np.abs(stored - row).max(axis=1)) <= 1.5 / 32768


def test_manifest_and_shards_are_deterministic(built, tmp_path):
    source, dataset_dir, _ = built
    data.build_dataset(source, tmp_path / "again", **BUILD)
    first = (dataset_dir / "manifest.json").read_text()
    assert first == (tmp_path / "again" / "manifest.json").read_text()
    for shard in json.loads(first)["splits"]["train"]["shards"]:
        digests = [hashlib.sha256((d / shard["file"]).read_bytes()).hexdigest()
                   for d in (dataset_dir, tmp_path / "again")]
        assert digests[0] == digests[1]


def test_make_tf_dataset_matches_load_clips(built):
    import tensorflow as tf

    _, dataset_dir, _ = built
    for scale in (0, SCALES - 1):
        samples = data.scale_samples(dataset_dir, scale)
        dataset = data.make_tf_dataset(dataset_dir, "train", scale=scale, batch_size=4,
                                       repeat=False, drop_remainder=False)
        batches = list(dataset)
        audio_batch, labels = batches[0]
        assert audio_batch.shape == (4, samples, 1) and audio_batch.dtype == tf.float32
        assert labels.shape == (4,) and labels.dtype == tf.int32
        streamed = np.concatenate([b[0].numpy() for b in batches])
        streamed_labels = np.concatenate([b[1].numpy() for b in batches])
        loaded, loaded_labels = data.load_clips(dataset_dir, "train", scale)
        assert loaded.shape == streamed.shape == (len(loaded), samples, 1)

        def multiset(clips, labels):
            return collections.Counter((int(lab), np.round(c * 32768).astype(np.int16).tobytes())
                                       for c, lab in zip(clips, labels))

        assert multiset(streamed, streamed_labels) == multiset(loaded, loaded_labels)
        cached = data.make_tf_dataset(dataset_dir, "train", scale=scale, batch_size=64,
                                      repeat=False, drop_remainder=False, cache=True, seed=5)
        for _ in range(2):  # the second pass is served from the cache
            clips, labels = (np.concatenate(t) for t in zip(*[(a.numpy(), b.numpy())
                                                                for a, b in cached]))
            assert multiset(clips, labels) == multiset(loaded, loaded_labels)
        # values are int16 / 32768 exactly
        np.testing.assert_array_equal(np.round(loaded * 32768) / 32768, loaded)
    # repeating, fixed batch shape
    repeated = data.make_tf_dataset(dataset_dir, "test", scale=1, batch_size=16)
    assert repeated.element_spec[0].shape.as_list() == [16, 256, 1]
    for batch, _ in repeated.take(3):  # more clips than the test split holds
        assert batch.shape == (16, 256, 1)


def test_load_clips_max_clips_and_class_names(built):
    _, dataset_dir, _ = built
    clips, labels = data.load_clips(dataset_dir, "train", 2, max_clips=3)
    assert clips.shape == (3, 512, 1) and clips.dtype == np.float32 and labels.dtype == np.int32
    assert data.class_names(dataset_dir) == ["bach", "folk", "palestrina"]
    assert data.scale_rate(dataset_dir, 0) == 1000


def test_folder_without_class_subfolders_is_a_clear_error(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(100), 8000)
    with pytest.raises(data.DatasetError, match="no class subfolders .*1 audio files directly"):
        data.build_dataset(tmp_path, tmp_path / "out", **BUILD)
    with pytest.raises(data.DatasetError, match="does-not-exist.* does not exist"):
        data.build_dataset(tmp_path / "does-not-exist", tmp_path / "out", **BUILD)


def test_nothing_usable_is_an_error_listing_the_reasons(tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "x.wav").write_text("text")
    sf.write(tmp_path / "src" / "a" / "quiet.wav", np.zeros(3 * CLIP), SAMPLE_RATE)
    with pytest.raises(data.DatasetError) as caught:
        data.build_dataset(tmp_path / "src", tmp_path / "out", **BUILD)
    message = str(caught.value)
    assert "no usable audio" in message
    assert "a/x.wav: not a recognised audio format" in message
    assert "a/quiet.wav: all clips near-silent" in message
    assert not (tmp_path / "out").exists()


def test_one_shot_sounds_get_one_line_with_a_clip_length_that_fits(tmp_path):
    # 40 one-shot files of 0.1 s (800 samples at 8 kHz), like spoken digits at 1.0 s / 16 kHz.
    rng = np.random.default_rng(1)
    for i in range(40):
        path = tmp_path / "src" / f"c{i % 2}" / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, music_like(SAMPLE_RATE, 0.1 + 0.001 * (i % 3), 1, rng, 200), SAMPLE_RATE)
    with pytest.raises(data.DatasetError) as caught:
        data.build_dataset(tmp_path / "src", tmp_path / "out", **BUILD)
    message = str(caught.value)
    assert "\n" not in message and "all 40 files are shorter than one clip" in message
    assert "they last 0.100 to 0.102 s" in message
    # 800 samples, rounded down to a multiple of 2**(4-1) = 8: 800.
    assert "`pggan dataset --clip-samples 800` (0.100 s) fits all of them" in message
    assert "`--pad-short 0.5`" in message
    report = data.build_dataset(tmp_path / "src", tmp_path / "out", **{**BUILD, "clip_samples": 800})
    assert report.manifest["splits"]["train"]["num_clips"] + \
        report.manifest["splits"]["test"]["num_clips"] == 40
    # Or pad: every file becomes one 1024-sample clip, its sound first, then zeros.
    report = data.build_dataset(tmp_path / "src", tmp_path / "padded", **BUILD, pad_short=0.5)
    manifest = report.manifest
    assert sum(manifest["splits"][s]["num_clips"] for s in data.SPLITS) == 40
    assert manifest["build_parameters"]["pad_short"] == 0.5
    assert {e["padded_samples"] for e in manifest["sources"]} == {224, 216, 208}  # 800, 808 and 816 samples
    clips, _ = data.load_clips(tmp_path / "padded", "train", SCALES - 1)
    assert clips.shape[1] == CLIP and np.all(clips[:, 816:] == 0)
    assert np.all(np.abs(clips[:, :700]).max(axis=1) > 0.01)
    with pytest.raises(data.DatasetError, match=r"pad_short \(--pad-short\) must be in \[0, 1\)"):
        data.build_dataset(tmp_path / "src", tmp_path / "bad", **BUILD, pad_short=1.5)


def test_bad_arguments_and_overwrite(built, tmp_path):
    source, _, _ = built
    with pytest.raises(data.DatasetError, match="divisible by 2\\*\\*\\(scales-1\\) = 8"):
        data.build_dataset(source, tmp_path / "o", **{**BUILD, "clip_samples": 1020})
    with pytest.raises(data.DatasetError, match="test_fraction"):
        data.build_dataset(source, tmp_path / "o", **{**BUILD, "test_fraction": 1.5})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(data.DatasetError, match="not empty.*--overwrite"):
        data.build_dataset(source, tmp_path / "busy", **BUILD)
    report = data.build_dataset(source, tmp_path / "busy", overwrite=True, **BUILD)
    assert report.num_clips("train") > 0
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"  # only dataset files replaced


def test_split_by_source_fraction_and_determinism():
    durations = {"a": {f"a/{i}": 10.0 for i in range(10)}, "b": {"b/0": 5.0, "b/1": 50.0},
                 "c": {"c/only": 3.0}}
    split = data.split_by_source(durations, 0.2, seed=1)
    assert split == data.split_by_source(durations, 0.2, seed=1)
    assert sum(v == "test" for k, v in split.items() if k.startswith("a/")) == 2
    assert sorted(split[k] for k in ("b/0", "b/1")) == ["test", "train"]
    assert split["c/only"] == "train"
    assert data.split_by_source(durations, 0.0)["b/0"] == "train"


def test_ensure_demo_dataset_builds_once(tmp_path, monkeypatch):
    calls = []

    def ensure_demo_corpus(out_dir, **kwargs):
        calls.append(kwargs)
        make_source(tmp_path / "corpus")
        return tmp_path / "corpus"

    fake = types.SimpleNamespace(ensure_demo_corpus=ensure_demo_corpus)
    monkeypatch.setitem(sys.modules, "pggan_lib.corpus", fake)
    monkeypatch.setattr(pggan_lib, "corpus", fake, raising=False)
    options = {k: v for k, v in BUILD.items() if k != "progress"}
    out = data.ensure_demo_dataset(tmp_path / "corpus", tmp_path / "demo", minutes_per_class=0.5,
                                   progress=False, **options)
    assert out == tmp_path / "demo" and calls == [{"minutes_per_class": 0.5}]
    assert data.read_manifest(out)["splits"]["train"]["num_clips"] > 0
    assert data.ensure_demo_dataset(tmp_path / "corpus", tmp_path / "demo") == out
    assert len(calls) == 1


def test_class_whose_test_files_break_while_read_is_named(tmp_path):
    # A FLAC file with a sound header but zeroed frames passes the header probe, so it is
    # split before it is found broken: its class then has no test clips.
    rng = np.random.default_rng(2)
    seconds = {"a": {}, "b": {}}
    for name, count in (("a", 3), ("b", 2)):
        for j in range(count):
            key = f"{name}/{name}{j}.flac"
            duration = (4 + j + 0.5) * CLIP / SAMPLE_RATE
            (tmp_path / "src" / name).mkdir(parents=True, exist_ok=True)
            sf.write(tmp_path / "src" / key, music_like(SAMPLE_RATE, duration, 1, rng,
                                                        200 + 90 * count), SAMPLE_RATE)
            seconds[name][key] = duration
    split = data.split_by_source(seconds, BUILD["test_fraction"], BUILD["seed"])
    broken = next(k for k in seconds["b"] if split[k] == "test")
    path = tmp_path / "src" / broken
    whole = path.read_bytes()  # keep the header (it says 4.5 clips or more), zero the audio frames
    path.write_bytes(whole[:120] + bytes(len(whole) - 120))
    report = data.build_dataset(tmp_path / "src", tmp_path / "out", **BUILD)
    assert any(key == broken for key, _ in report.skipped), report.skipped
    assert "class 'b' has no test clips: the files assigned to test were skipped" in \
        "\n".join(report.warnings)
    assert "class 'b' has no test clips" in report.summary()
    kept = report.manifest["splits"]["train"]["clips_per_class"]["b"]
    assert kept == sum(4 + int(Path(k).stem[-1]) for k in seconds["b"] if split[k] == "train")
