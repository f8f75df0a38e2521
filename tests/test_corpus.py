"""Tests for pggan_lib.corpus: the embedded default corpus (music21 -> MIDI -> WAV).

One tiny corpus (two classes, 6 s each, excerpts of at most 4 s) is rendered
once per session and shared; the other tests copy it or render a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings

import numpy as np
import pytest
import soundfile

from pggan_lib import corpus

TINY = dict(minutes_per_class=0.1, classes=["bach_chorales", "folk_tunes"],
            max_excerpt_seconds=4.0, progress=False)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """(folder, report) of one tiny corpus rendered for the whole session."""
    out_dir = tmp_path_factory.mktemp("tiny_corpus")
    report = corpus.make_demo_corpus(out_dir, **TINY)
    return out_dir, report


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_one_folder_per_class_with_16khz_mono_pcm16(tiny_corpus):
    out_dir, report = tiny_corpus
    assert sorted(p.name for p in out_dir.iterdir() if p.is_dir()) == ["bach_chorales", "folk_tunes"]
    manifest = corpus.read_corpus_manifest(out_dir)
    assert manifest["classes"] == ["bach_chorales", "folk_tunes"]
    assert manifest["sample_rate"] == 16000 and manifest["instrument"] == "piano"
    assert manifest["renderer"] == report.renderer == "fluidsynth"
    wavs = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.wav"))
    assert wavs == sorted(entry["path"] for entry in manifest["files"])
    for entry in manifest["files"]:
        info = soundfile.info(out_dir / entry["path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert entry["path"].startswith(entry["class"] + "/")
        assert entry["sample_rate"] == 16000 and entry["instrument"] == "piano"


def test_manifest_durations_and_checksums_match_files(tiny_corpus):
    out_dir, _ = tiny_corpus
    manifest = corpus.read_corpus_manifest(out_dir)
    for entry in manifest["files"]:
        path = out_dir / entry["path"]
        audio, rate = soundfile.read(path, dtype="float32")
        assert audio.shape == (entry["num_samples"],)
        assert entry["duration_seconds"] == pytest.approx(audio.size / rate, abs=1e-6)
        assert entry["sha256"] == _sha256(path)
        assert (corpus.corpus_root() / entry["source"].partition("#")[0]).is_file()
        # Excerpts respect the limit (plus FluidSynth's release tail).
        assert entry["duration_seconds"] <= entry["excerpt_limit_seconds"] + 1.5


def test_each_class_reaches_its_minutes(tiny_corpus):
    out_dir, report = tiny_corpus
    manifest = corpus.read_corpus_manifest(out_dir)
    for name in TINY["classes"]:
        seconds = sum(e["duration_seconds"] for e in manifest["files"] if e["class"] == name)
        assert seconds == pytest.approx(manifest["seconds_per_class"][name])
        # 6 s asked; it stops once less than 2 s remain; a last excerpt may
        # ring on for its release tail.
        assert 4.0 <= seconds <= 6.0 + 1.5
    assert report.seconds_rendered == pytest.approx(report.seconds_total)
    assert len(report.files_written) == len(manifest["files"])


def test_files_are_peak_normalised_without_edge_silence(tiny_corpus):
    out_dir, _ = tiny_corpus
    for path in out_dir.rglob("*.wav"):
        audio, _ = soundfile.read(path, dtype="float64")
        peak = np.abs(audio).max()
        assert peak == pytest.approx(10 ** (-1 / 20), abs=1 / 32767)
        threshold = peak * 10 ** (-50 / 20) - 1 / 32767
        assert abs(audio[0]) >= threshold and abs(audio[-1]) >= threshold


def test_deterministic_second_build_is_byte_identical(tiny_corpus, tmp_path):
    out_dir, _ = tiny_corpus
    corpus.make_demo_corpus(tmp_path, **TINY)
    assert (tmp_path / "manifest.json").read_bytes() == (out_dir / "manifest.json").read_bytes()
    for entry in corpus.read_corpus_manifest(out_dir)["files"]:
        assert (tmp_path / entry["path"]).read_bytes() == (out_dir / entry["path"]).read_bytes()


def test_idempotent_second_run_renders_nothing(tiny_corpus, tmp_path, capsys, monkeypatch):
    source_dir, first = tiny_corpus
    out_dir = tmp_path / "copy"
    shutil.copytree(source_dir, out_dir)
    manifest_bytes = (out_dir / "manifest.json").read_bytes()
    mtime = (out_dir / "manifest.json").stat().st_mtime_ns

    def no_parsing(*args, **kwargs):
        raise AssertionError("an up-to-date corpus must not parse any score")

    monkeypatch.setattr(corpus, "parse_score", no_parsing)
    report = corpus.make_demo_corpus(out_dir, **{**TINY, "progress": True})
    assert report.files_written == [] and report.files_removed == []
    assert sorted(report.files_reused) == sorted(first.files_written)
    assert report.nothing_to_do and report.seconds_rendered == 0.0
    assert report.skipped == first.skipped
    assert (out_dir / "manifest.json").read_bytes() == manifest_bytes
    assert (out_dir / "manifest.json").stat().st_mtime_ns == mtime
    assert "nothing needed doing" in capsys.readouterr().out
    assert "Nothing needed doing" in report.summary()


def test_a_corrupted_file_is_rendered_again_and_only_that_one(tiny_corpus, tmp_path):
    source_dir, _ = tiny_corpus
    out_dir = tmp_path / "copy"
    shutil.copytree(source_dir, out_dir)
    entry = corpus.read_corpus_manifest(out_dir)["files"][0]
    (out_dir / entry["path"]).write_bytes(b"not a wav file")
    report = corpus.make_demo_corpus(out_dir, **TINY)
    assert report.files_written == [entry["path"]]
    assert _sha256(out_dir / entry["path"]) == entry["sha256"]


def test_ensure_demo_corpus_builds_only_when_absent(tiny_corpus, tmp_path, monkeypatch):
    source_dir, _ = tiny_corpus
    out_dir = tmp_path / "copy"
    shutil.copytree(source_dir, out_dir)
    calls = []
    monkeypatch.setattr(corpus, "make_demo_corpus", lambda *a, **k: calls.append(k))
    kwargs = dict(classes=TINY["classes"], max_excerpt_seconds=4.0)
    assert corpus.ensure_demo_corpus(out_dir, minutes_per_class=0.1, **kwargs) == out_dir
    assert calls == []
    corpus.ensure_demo_corpus(out_dir, minutes_per_class=0.2, **kwargs)  # different size
    assert len(calls) == 1 and calls[0]["minutes_per_class"] == 0.2
    corpus.ensure_demo_corpus(tmp_path / "absent", minutes_per_class=0.1, **kwargs)
    assert len(calls) == 2


def test_unknown_class_names_the_class_and_lists_valid_ones(tmp_path):
    with pytest.raises(ValueError) as error:
        corpus.make_demo_corpus(tmp_path, classes=["bach_chorales", "jazz"], progress=False)
    message = str(error.value)
    assert "'jazz'" in message
    for name in corpus.CORPUS_CLASSES:
        assert name in message
    assert not (tmp_path / "manifest.json").exists()


def test_classes_accept_a_comma_separated_string(tmp_path):
    with pytest.raises(ValueError, match="'rock'"):
        corpus.make_demo_corpus(tmp_path, classes="palestrina,rock", progress=False)


def test_unknown_instrument_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="instrument: unknown instrument 'kazoo'"):
        corpus.make_demo_corpus(tmp_path, instrument="kazoo", progress=False)


def test_at_least_five_classes_with_sources():
    assert {"bach_chorales", "palestrina", "monteverdi_madrigals", "classical_quartets",
            "folk_tunes"} <= set(corpus.CORPUS_CLASSES)
    assert len(corpus.class_sources("monteverdi_madrigals")) == 49
    quartets = corpus.class_sources("classical_quartets", shuffle=False)
    assert quartets == sorted(quartets) and "mozart/k545/movement1_exposition.mxl" not in quartets
    # The shuffled order is fixed (same list every call) and a permutation.
    shuffled = corpus.class_sources("classical_quartets")
    assert shuffled == corpus.class_sources("classical_quartets")
    assert sorted(shuffled) == quartets and shuffled != quartets
    assert "bach/bwv846.mxl" not in corpus.class_sources("bach_chorales")
    assert any("#" in s for s in corpus.class_sources("folk_tunes"))


def test_a_failing_score_is_skipped_with_its_reason(tmp_path, monkeypatch):
    first_source = corpus.class_sources("bach_chorales")[0]
    real_parse = corpus.parse_score

    def parse_or_fail(source, *args, **kwargs):
        if source == first_source:
            raise RuntimeError("simulated broken score")
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(corpus, "parse_score", parse_or_fail)
    report = corpus.make_demo_corpus(tmp_path, minutes_per_class=0.05, classes=["bach_chorales"],
                                     max_excerpt_seconds=3.0, progress=False)
    assert (first_source, "RuntimeError: simulated broken score") in report.skipped
    manifest = corpus.read_corpus_manifest(tmp_path)
    assert {"source": first_source, "class": "bach_chorales",
            "reason": "RuntimeError: simulated broken score"} in manifest["skipped"]
    assert first_source not in {e["source"] for e in manifest["files"]}
    assert manifest["seconds_per_class"]["bach_chorales"] >= 1.0  # the run went on


def test_fallback_renderer_warns_when_fluidsynth_is_unavailable(tmp_path, monkeypatch):
    import pretty_midi.fluidsynth

    monkeypatch.setattr(pretty_midi.fluidsynth, "_HAS_FLUIDSYNTH", False)
    with pytest.warns(UserWarning, match="FluidSynth is unavailable"):
        report = corpus.make_demo_corpus(tmp_path, minutes_per_class=0.05, classes=["folk_tunes"],
                                         max_excerpt_seconds=3.0, progress=False)
    assert report.renderer == "pretty_midi.synthesize"
    assert corpus.read_corpus_manifest(tmp_path)["renderer"] == "pretty_midi.synthesize"
    assert "WARNING" in report.summary()
    assert report.files_written


def test_pick_renderer_prefers_fluidsynth_here():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning on this machine
        assert corpus.pick_renderer(16000) == "fluidsynth"


def test_render_score_to_audio_keeps_the_excerpt_length():
    audio = corpus.render_score_to_audio("bach/bwv1.6.mxl", max_seconds=3.0, renderer="fluidsynth")
    assert audio.dtype == np.float32 and audio.ndim == 1
    # 3 s of notes (minus a leading rest, if any) plus at most ~1 s of release.
    assert 2.0 * 16000 <= audio.size <= 4.5 * 16000
    assert np.abs(audio).max() == pytest.approx(10 ** (-1 / 20), rel=1e-5)


def test_score_to_midi_sets_one_program_for_every_part():
    score = corpus.parse_score("bach/bwv1.6.mxl", max_seconds=4.0)
    organ = corpus.score_to_midi(score, instrument="organ", max_seconds=4.0)
    assert organ.instruments and {i.program for i in organ.instruments} == {19}
    assert max(n.end for i in organ.instruments for n in i.notes) <= 4.0
    assert corpus.score_to_midi(score, instrument="Acoustic Grand Piano").instruments[0].program == 0


def test_trim_silence_and_normalize_peak_values():
    x = np.concatenate([np.zeros(10), [0.0, 0.5, -0.25, 0.1], np.full(5, 1e-4)])
    trimmed = corpus.trim_silence(x, threshold_db=-50.0)
    np.testing.assert_array_equal(trimmed, [0.5, -0.25, 0.1])
    assert corpus.trim_silence(np.zeros(8)).size == 0
    normalized = corpus.normalize_peak(trimmed, peak=0.8)
    np.testing.assert_allclose(normalized, [0.8, -0.4, 0.16], rtol=1e-6)
    np.testing.assert_array_equal(corpus.normalize_peak(np.zeros(3)), np.zeros(3))


def test_manifest_is_plain_json_with_global_fields(tiny_corpus):
    out_dir, _ = tiny_corpus
    manifest = json.loads((out_dir / "manifest.json").read_text())
    for key in ("classes", "instrument", "sample_rate", "minutes_per_class", "skipped",
                "renderer", "files", "seconds_per_class", "max_excerpt_seconds"):
        assert key in manifest
    assert manifest["minutes_per_class"] == 0.1


def test_genre_plays_each_class_with_its_mapped_program():
    score = corpus.parse_score("bach/bwv1.6.mxl", max_seconds=3.0)
    programs = {name: corpus.INSTRUMENT_PROGRAMS[instrument]
                for name, instrument in corpus.GENRE_INSTRUMENTS.items()}
    assert programs == {"bach_chorales": 19, "palestrina": 52, "monteverdi_madrigals": 52,
                        "classical_quartets": 48, "folk_tunes": 110}
    assert set(corpus.GENRE_INSTRUMENTS) == set(corpus.CORPUS_CLASSES)
    for name, program in programs.items():
        midi = corpus.score_to_midi(score, instrument="genre", class_name=name)
        assert len(midi.instruments) == 5  # horn and the chorale's four voices
        assert {part.program for part in midi.instruments} == {program}
    # The default stays the piano, whatever the class.
    piano = corpus.score_to_midi(score, class_name="folk_tunes")
    assert {part.program for part in piano.instruments} == {0}


def test_genre_without_or_with_an_unknown_class_is_refused():
    score = corpus.parse_score("bach/bwv1.6.mxl", max_seconds=2.0)
    with pytest.raises(ValueError, match=r"^instrument: 'genre' .* needs class_name"):
        corpus.score_to_midi(score, instrument="genre")
    with pytest.raises(ValueError, match=r"^class_name: 'jazz' has no genre instrument"):
        corpus.score_to_midi(score, instrument="genre", class_name="jazz")
    with pytest.raises(ValueError, match=r"^instrument: unknown instrument 'genres'; .*'genre'"):
        corpus.score_to_midi(score, instrument="genres", class_name="palestrina")


def test_genre_corpus_records_genre_and_each_files_instrument(tmp_path):
    report = corpus.make_demo_corpus(tmp_path, minutes_per_class=0.05, instrument="genre",
                                     classes=["bach_chorales", "folk_tunes"],
                                     max_excerpt_seconds=3.0, progress=False)
    manifest = corpus.read_corpus_manifest(tmp_path)
    assert manifest["instrument"] == manifest["settings"]["instrument"] == "genre"
    assert {(e["class"], e["instrument"]) for e in manifest["files"]} == {
        ("bach_chorales", "organ"), ("folk_tunes", "fiddle")}
    # The organ sustains: a chorale excerpt sounds different from the piano's.
    entry = next(e for e in manifest["files"] if e["class"] == "bach_chorales")
    organ, rate = soundfile.read(tmp_path / entry["path"], dtype="float32")
    piano = corpus.render_score_to_audio(entry["source"], sample_rate=rate,
                                         max_seconds=entry["excerpt_limit_seconds"],
                                         renderer=report.renderer)
    assert organ.shape != piano.shape or not np.allclose(organ, piano, atol=1e-3)
    # A second run with the same settings renders nothing.
    again = corpus.make_demo_corpus(tmp_path, minutes_per_class=0.05, instrument="genre",
                                    classes=["bach_chorales", "folk_tunes"],
                                    max_excerpt_seconds=3.0, progress=False)
    assert again.nothing_to_do and sorted(again.files_reused) == sorted(report.files_written)
