"""The embedded default corpus: music21 scores -> MIDI -> audio.

The book needs "songs that share an author" without downloading anything. The
music21 package ships about 3,200 scores; this module renders a few minutes
of each of several composers / genres to 16 kHz mono WAV files, one folder per
class, with a ``manifest.json`` that records where every file came from and
its checksum.

The pipeline for one piece (each step is a public function a chapter can
call on its own)::

    parse_score(source)            music21 corpus path -> Score (repeats expanded,
                                   cut to an excerpt from the start)
    score_to_midi(score, ...)      Score -> pretty_midi.PrettyMIDI, one General MIDI
                                   program for every part ("piano"), one per class
                                   ("genre", see GENRE_INSTRUMENTS) or the parts' own
    render_midi(midi, ...)         PrettyMIDI -> float32 waveform with FluidSynth and
                                   the General MIDI SoundFont that pretty_midi ships
    trim_silence / normalize_peak  no leading or trailing silence, peak at -1 dBFS

``make_demo_corpus`` runs it over each class until the class holds
``minutes_per_class`` minutes of audio. It is deterministic (same arguments and
library versions -> byte-identical WAV files and manifest) and idempotent (a
second run with the same arguments finds every file in the manifest with its
checksum and renders nothing).

Notebook: chapters/01_audio_fundamentals.ipynb
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import re
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import soundfile

from pggan_lib import config, files

__all__ = [
    "CORPUS_CLASSES",
    "INSTRUMENT_PROGRAMS",
    "GENRE_INSTRUMENTS",
    "MANIFEST_NAME",
    "CorpusReport",
    "corpus_root",
    "class_sources",
    "parse_score",
    "score_to_midi",
    "render_midi",
    "trim_silence",
    "normalize_peak",
    "render_score_to_audio",
    "pick_renderer",
    "make_demo_corpus",
    "ensure_demo_corpus",
    "read_corpus_manifest",
]

#: Name of the manifest written at the top of a corpus folder.
MANIFEST_NAME = "manifest.json"

#: Class name -> what it holds and which music21 corpus paths it draws from.
CORPUS_CLASSES: dict[str, str] = {
    "bach_chorales": (
        "J. S. Bach, four-part chorale harmonisations: music21 corpus "
        "bach/bwv*.mxl (about 410 files; the keyboard prelude bwv846 excluded)."),
    "palestrina": (
        "G. P. da Palestrina, mass movements (Kyrie, Gloria, Credo, Sanctus, "
        "Agnus): music21 corpus palestrina/*.krn (1,318 files)."),
    "monteverdi_madrigals": (
        "C. Monteverdi, five-voice madrigals, books 3-5: music21 corpus "
        "monteverdi/madrigal.*.mxl (49 files)."),
    "classical_quartets": (
        "Haydn, Mozart and Beethoven string quartet movements: music21 corpus "
        "haydn/*/*.mxl, mozart/k80|k155|k156|k458/*.mxl, beethoven/*.mxl and "
        "beethoven/*/*.mxl (about 45 files)."),
    "folk_tunes": (
        "Folk melodies in abc notation: every tune of music21 corpus "
        "essenFolksong/*.abc (European, mostly German, folk songs; about 8,500 "
        "tunes) and ryansMammoth/*.abc (Irish/Scottish/American fiddle tunes; "
        "about 1,060)."),
}

# Which files of the music21 corpus make each class: (glob patterns, a regular
# expression that excludes paths). Globs are relative to the corpus root.
_CLASS_GLOBS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "bach_chorales": (("bach/bwv*.mxl",), r"^bach/bwv846\.mxl$"),
    "palestrina": (("palestrina/*.krn",), None),
    "monteverdi_madrigals": (("monteverdi/madrigal.*.mxl",), None),
    "classical_quartets": (
        ("haydn/*/*.mxl", "mozart/k80/*.mxl", "mozart/k155/*.mxl",
         "mozart/k156/*.mxl", "mozart/k458/*.mxl", "beethoven/*.mxl",
         "beethoven/*/*.mxl"), None),
    "folk_tunes": (("essenFolksong/*.abc", "ryansMammoth/*.abc"),
                   r"^essenFolksong/test"),
}

#: Instrument names accepted by ``make_demo_corpus(instrument=...)`` -> General
#: MIDI program (0-based). Any General MIDI program name that pretty_midi knows
#: (e.g. ``"Acoustic Grand Piano"``) and ``"score"`` (keep the parts' own
#: instruments as music21 assigns them) are accepted too.
INSTRUMENT_PROGRAMS: dict[str, int] = {
    "piano": 0,
    "harpsichord": 6,
    "organ": 19,
    "guitar": 24,
    "violin": 40,
    "cello": 42,
    "strings": 48,
    "choir": 52,
    "clarinet": 71,
    "flute": 73,
    "fiddle": 110,
}

#: Class -> the instrument (a key of ``INSTRUMENT_PROGRAMS``) that
#: ``instrument="genre"`` plays it with: what the music was written for or is
#: usually heard on. Chorales with the church organ, the two kinds of vocal
#: polyphony with a choir (both: they still differ by composition only, the
#: pair the piano corpus confuses most), quartets with a string ensemble, folk
#: tunes with the fiddle. The classes then differ by timbre too, so that a
#: classifier (and an Inception Score built on it) hears instruments as much
#: as composition. Measured in chapter 6 (``results/classifiers``).
GENRE_INSTRUMENTS: dict[str, str] = {
    "bach_chorales": "organ",
    "palestrina": "choir",
    "monteverdi_madrigals": "choir",
    "classical_quartets": "strings",
    "folk_tunes": "fiddle",
}

#: ``instrument=`` value that picks each class's own instrument from ``GENRE_INSTRUMENTS``.
GENRE = "genre"

_FLUIDSYNTH = "fluidsynth"
_FALLBACK = "pretty_midi.synthesize"
# The pretty_midi General MIDI SoundFont (TimGM6mb.sf2, ~6 MB, ships inside the
# pretty_midi package, so nothing is downloaded).
_SOUNDFONT_NAME = "TimGM6mb.sf2"
# music21 writes MIDI at 10080 ticks per quarter note; pretty_midi refuses
# files whose last tick exceeds its MAX_TICK (1e7) as "probably corrupt".
_MAX_TICK = 1e10
_PEAK = 10 ** (-1 / 20)  # -1 dBFS
_SILENCE_DB = -50.0
_MIN_EXCERPT_SECONDS = 2.0
_SHUFFLE_SEED = 0
_FORMAT = "pggan-demo-corpus/1"


# --------------------------------------------------------------------------
# Listing the sources of a class
# --------------------------------------------------------------------------

def corpus_root() -> Path:
    """Folder of the music21 score corpus (installed with music21).

    Returns:
        Absolute path of ``music21/corpus``.
    """
    import music21.corpus

    return Path(music21.corpus.__file__).resolve().parent


def _abc_tune_numbers(path: Path) -> list[int]:
    """The ``X:`` reference numbers of the tunes in one abc file, in order."""
    numbers = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.match(r"^X:\s*(\d+)", line)
        if match:
            numbers.append(int(match.group(1)))
    return numbers


def _check_classes(classes: Iterable[str] | str | None) -> list[str]:
    """Normalise ``classes`` (None, list or comma-separated string) and validate it."""
    if classes is None:
        return list(CORPUS_CLASSES)
    if isinstance(classes, str):
        classes = [classes]
    names: list[str] = []
    for item in classes:
        for name in str(item).split(","):
            name = name.strip()
            if name and name not in names:
                names.append(name)
    unknown = [name for name in names if name not in CORPUS_CLASSES]
    if unknown:
        raise ValueError(
            f"classes: unknown corpus class {', '.join(map(repr, unknown))}; "
            f"valid classes are {', '.join(CORPUS_CLASSES)}")
    if not names:
        raise ValueError(f"classes: no class given; valid classes are {', '.join(CORPUS_CLASSES)}")
    return names


def class_sources(class_name: str, shuffle: bool = True) -> list[str]:
    """The music21 sources of one class, in the order the corpus uses them.

    A source is a path relative to the music21 corpus root (``bach/bwv1.6.mxl``);
    for abc files that hold many tunes, ``#N`` selects the tune with ``X: N``
    (``essenFolksong/altdeu10.abc#3``). The sorted listing is shuffled with a
    fixed seed so that the first few minutes of a class span many works rather
    than the movements of one mass.

    Args:
        class_name: A key of ``CORPUS_CLASSES``.
        shuffle: False returns the sorted listing.

    Returns:
        List of source strings (deterministic).

    Raises:
        ValueError: ``class_name`` is not a corpus class.
    """
    (class_name,) = _check_classes([class_name])
    root = corpus_root()
    patterns, exclude = _CLASS_GLOBS[class_name]
    paths = sorted({p.relative_to(root).as_posix() for pattern in patterns for p in root.glob(pattern)})
    if exclude:
        paths = [p for p in paths if not re.search(exclude, p)]
    sources: list[str] = []
    for rel in paths:
        if rel.endswith(".abc"):
            numbers = _abc_tune_numbers(root / rel)
            if len(numbers) > 1:
                sources.extend(f"{rel}#{n}" for n in numbers)
                continue
        sources.append(rel)
    if shuffle:
        # A str seed is hashed with SHA-512: stable across processes and runs.
        random.Random(f"{class_name}:{_SHUFFLE_SEED}").shuffle(sources)
    return sources


# --------------------------------------------------------------------------
# One piece: parse -> MIDI -> audio
# --------------------------------------------------------------------------

def _split_source(source: str) -> tuple[str, int | None]:
    path, _, number = source.partition("#")
    return path, (int(number) if number else None)


def _excerpt_by_offset(score, max_quarters: float):
    """Remove, in place, the measures of every part that start at or after ``max_quarters``."""
    from music21 import stream

    for part in score.parts:
        late = [m for m in part.getElementsByClass(stream.Measure) if m.offset >= max_quarters]
        if late:
            part.remove(late)
    return score


def _max_quarter_bpm(score) -> float:
    """Fastest tempo mark of the score in quarter notes per minute (120 if none)."""
    from music21 import tempo

    bpms = [mark.getQuarterBPM() for mark in score.recurse().getElementsByClass(tempo.MetronomeMark)]
    bpms = [bpm for bpm in bpms if bpm]
    return float(max(bpms)) if bpms else 120.0


def parse_score(source: str, max_seconds: float | None = None):
    """Parse one music21 corpus work, expand its repeats, cut an excerpt.

    Args:
        source: Path relative to the music21 corpus root, with ``#N`` to pick
            tune ``X: N`` of an abc collection (see ``class_sources``).
        max_seconds: Keep only the measures that start within about this many
            seconds from the start (at the fastest tempo mark, 120 quarter notes
            per minute when there is none), so that MIDI translation and
            synthesis stay fast on long movements. None keeps everything.
            ``score_to_midi`` then cuts at the exact time.

    Returns:
        ``music21.stream.Score`` with repeats written out.

    Raises:
        music21 exceptions (e.g. ``ExpanderException`` for badly formed
        repeats) or ``ValueError`` when the file holds no score.
    """
    path, number = _split_source(source)
    full_path = corpus_root() / path
    if not full_path.is_file():
        raise ValueError(f"{source}: no such file in the music21 corpus ({full_path})")
    with warnings.catch_warnings():
        # music21 chatters (UserWarnings about ids, missing metadata) on many scores.
        warnings.filterwarnings("ignore", module=r"music21(\..*)?$")
        return _parse_expand_cut(source, full_path, number, max_seconds)


def _parse_expand_cut(source: str, full_path: Path, number: int | None, max_seconds: float | None):
    from music21 import converter, stream

    parsed = converter.parse(full_path, number=number, forceSource=True)
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if not scores:
            raise ValueError(f"{source}: the collection holds no score")
        parsed = scores[0]
    if not isinstance(parsed, stream.Score):
        score = stream.Score()
        score.insert(0, parsed)
        parsed = score
    # Repeats are part of the music as heard; music21 raises ExpanderException
    # for the few scores whose repeat marks are badly formed.
    has_measures = bool(parsed.parts) and bool(parsed.parts[0].getElementsByClass(stream.Measure))
    expanded = parsed.expandRepeats() if has_measures else parsed
    if max_seconds is not None:
        max_quarters = max_seconds * _max_quarter_bpm(expanded) / 60.0
        if expanded.highestTime > max_quarters:
            expanded = _excerpt_by_offset(expanded, max_quarters)
    return expanded


@contextlib.contextmanager
def _raised_max_tick() -> Iterator[None]:
    import pretty_midi

    module = pretty_midi.pretty_midi
    previous = module.MAX_TICK
    module.MAX_TICK = max(previous, _MAX_TICK)
    try:
        yield
    finally:
        module.MAX_TICK = previous


def _genre_instrument(class_name: str | None) -> str:
    """The instrument ``"genre"`` plays ``class_name`` with (a ValueError names the field)."""
    if class_name is None:
        raise ValueError(
            f"instrument: {GENRE!r} plays each class with its own instrument "
            f"(GENRE_INSTRUMENTS) and needs class_name; give one of "
            f"{', '.join(GENRE_INSTRUMENTS)}")
    if class_name not in GENRE_INSTRUMENTS:
        raise ValueError(
            f"class_name: {class_name!r} has no genre instrument; instrument={GENRE!r} "
            f"knows {', '.join(GENRE_INSTRUMENTS)}")
    return GENRE_INSTRUMENTS[class_name]


def _instrument_program(instrument: str, class_name: str | None = None) -> int | None:
    """GM program for ``instrument``; None means "score" (keep the parts' own).

    ``"genre"`` resolves through ``GENRE_INSTRUMENTS[class_name]``.
    """
    import pretty_midi

    name = str(instrument).strip()
    if name.lower() == "score":
        return None
    if name.lower() == GENRE:
        return INSTRUMENT_PROGRAMS[_genre_instrument(class_name)]
    if name.lower() in INSTRUMENT_PROGRAMS:
        return INSTRUMENT_PROGRAMS[name.lower()]
    for program in range(128):
        if pretty_midi.program_to_instrument_name(program).lower() == name.lower():
            return program
    raise ValueError(
        f"instrument: unknown instrument {instrument!r}; use 'score', {GENRE!r}, one of "
        f"{', '.join(INSTRUMENT_PROGRAMS)}, or a General MIDI program name such as "
        f"'Acoustic Grand Piano'")


def score_to_midi(score, instrument: str = "piano", max_seconds: float | None = None,
                  class_name: str | None = None):
    """Translate a music21 score to MIDI and load it with pretty_midi.

    Args:
        score: ``music21.stream.Score`` (e.g. from ``parse_score``).
        instrument: ``"piano"`` (default) plays every part with the same General
            MIDI program, so that classes differ in composition rather than
            timbre; ``"genre"`` plays every part with the instrument of
            ``class_name`` in ``GENRE_INSTRUMENTS`` (organ for chorales, ...);
            ``"score"`` keeps the programs music21 assigns to the parts;
            other names: keys of ``INSTRUMENT_PROGRAMS`` or GM program names.
        max_seconds: Drop notes that start at or after this time and end the
            others there. None keeps the whole score.
        class_name: The corpus class the score belongs to; needed by
            ``"genre"`` only.

    Returns:
        ``pretty_midi.PrettyMIDI`` with one non-drum instrument per part.

    Raises:
        ValueError: unknown ``instrument``, or ``"genre"`` without a known
            ``class_name``.
    """
    import pretty_midi
    from music21 import midi as m21_midi

    program = _instrument_program(instrument, class_name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"music21(\..*)?$")
        midi_bytes = m21_midi.translate.streamToMidiFile(score).writestr()
    with _raised_max_tick():
        midi = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes))
    kept = []
    for part in midi.instruments:
        if max_seconds is not None:
            part.notes = [
                pretty_midi.Note(
                    velocity=note.velocity, pitch=note.pitch, start=note.start,
                    end=min(note.end, max_seconds))
                for note in part.notes if note.start < max_seconds]
            part.control_changes = [c for c in part.control_changes if c.time < max_seconds]
            part.pitch_bends = [b for b in part.pitch_bends if b.time < max_seconds]
        if not part.notes:
            continue
        if program is not None:
            part.program = program
            part.is_drum = False
        kept.append(part)
    midi.instruments = kept
    return midi


def _fluidsynth_render(midi, sample_rate: int) -> np.ndarray:
    import pretty_midi

    soundfont = Path(pretty_midi.__file__).resolve().parent / _SOUNDFONT_NAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audio = midi.fluidsynth(fs=sample_rate, synthesizer=str(soundfont))
    return np.asarray(audio, dtype=np.float64)


def pick_renderer(sample_rate: int = config.DEFAULT_SAMPLE_RATE, warn: bool = True) -> str:
    """Choose the synthesiser: FluidSynth if it works here, else pretty_midi's.

    Renders one short note with FluidSynth. When that fails (pyfluidsynth or
    libfluidsynth missing), returns the fallback ``"pretty_midi.synthesize"``
    (sine waves: every class sounds like an organ of sines) and, with ``warn``,
    emits a visible ``UserWarning`` saying so.

    Args:
        sample_rate: Rate to test FluidSynth at (Hz).
        warn: Emit the warning when falling back.

    Returns:
        ``"fluidsynth"`` or ``"pretty_midi.synthesize"``.
    """
    import pretty_midi

    probe = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=0.1))
    probe.instruments.append(piano)
    try:
        audio = _fluidsynth_render(probe, sample_rate)
        if audio.size == 0 or not np.any(audio):
            raise RuntimeError("FluidSynth rendered silence")
        return _FLUIDSYNTH
    except Exception as error:  # ImportError, OSError from ctypes, RuntimeError
        if warn:
            warnings.warn(
                f"FluidSynth is unavailable ({type(error).__name__}: {error}); the corpus is "
                f"rendered with pretty_midi.synthesize() (sine waves), which sounds nothing "
                f"like the instruments. Install libfluidsynth3 and pyfluidsynth for "
                f"SoundFont rendering.", UserWarning, stacklevel=2)
        return _FALLBACK


def render_midi(midi, sample_rate: int = config.DEFAULT_SAMPLE_RATE,
                renderer: str | None = None) -> np.ndarray:
    """Synthesise a PrettyMIDI object to a mono waveform.

    Args:
        midi: ``pretty_midi.PrettyMIDI``.
        sample_rate: Output rate in Hz.
        renderer: ``"fluidsynth"`` (pretty_midi's General MIDI SoundFont
            TimGM6mb.sf2), ``"pretty_midi.synthesize"`` (sine waves), or None to
            ask ``pick_renderer`` (which warns when it must fall back).

    Returns:
        float32 array, shape (samples,), not normalised.
    """
    renderer = renderer or pick_renderer(sample_rate)
    if renderer == _FLUIDSYNTH:
        audio = _fluidsynth_render(midi, sample_rate)
    elif renderer == _FALLBACK:
        audio = np.asarray(midi.synthesize(fs=sample_rate), dtype=np.float64)
    else:
        raise ValueError(f"renderer: unknown renderer {renderer!r}; use {_FLUIDSYNTH!r} or {_FALLBACK!r}")
    return audio.astype(np.float32)


def trim_silence(audio: np.ndarray, threshold_db: float = _SILENCE_DB) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``threshold_db`` below the peak.

    Args:
        audio: Waveform, shape (samples,).
        threshold_db: Level relative to the peak (dB, negative) under which a
            sample counts as silence.

    Returns:
        The waveform from the first to the last sample above the threshold,
        shape (samples',); empty when ``audio`` is all zeros.
    """
    audio = np.asarray(audio)
    magnitude = np.abs(audio)
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if peak == 0.0:
        return audio[:0]
    loud = np.flatnonzero(magnitude > peak * 10 ** (threshold_db / 20))
    return audio[loud[0]: loud[-1] + 1]


def normalize_peak(audio: np.ndarray, peak: float = _PEAK) -> np.ndarray:
    """Scale a waveform so that its largest absolute sample equals ``peak``.

    Args:
        audio: Waveform, shape (samples,).
        peak: Target peak, in (0, 1]; the default is -1 dBFS.

    Returns:
        float32 array, same shape; all zeros stay zeros.
    """
    audio = np.asarray(audio, dtype=np.float64)
    current = float(np.abs(audio).max()) if audio.size else 0.0
    if current == 0.0:
        return audio.astype(np.float32)
    return (audio * (peak / current)).astype(np.float32)


def render_score_to_audio(source, sample_rate: int = config.DEFAULT_SAMPLE_RATE,
                          instrument: str = "piano", max_seconds: float | None = 30.0,
                          renderer: str | None = None,
                          class_name: str | None = None) -> np.ndarray:
    """The whole pipeline for one piece: parse, MIDI, synthesise, trim, normalise.

    Args:
        source: A music21 corpus source (``"bach/bwv1.6.mxl"``) or a
            ``music21.stream.Score`` already parsed.
        sample_rate: Output rate in Hz.
        instrument: See ``score_to_midi``.
        max_seconds: Length of the excerpt taken from the start (None: whole piece).
        renderer: See ``render_midi``.
        class_name: The piece's corpus class (for ``instrument="genre"``).

    Returns:
        float32 waveform in [-1, 1], shape (samples,), peak at -1 dBFS, no
        leading or trailing silence (empty when the piece has no notes).
    """
    score = parse_score(source, max_seconds=max_seconds) if isinstance(source, str) else source
    midi = score_to_midi(score, instrument=instrument, max_seconds=max_seconds,
                         class_name=class_name)
    if not midi.instruments:
        return np.zeros(0, dtype=np.float32)
    audio = render_midi(midi, sample_rate=sample_rate, renderer=renderer)
    return normalize_peak(trim_silence(audio))


# --------------------------------------------------------------------------
# The corpus folder
# --------------------------------------------------------------------------

@dataclasses.dataclass
class CorpusReport:
    """What ``make_demo_corpus`` did.

    Attributes:
        out_dir: The corpus folder.
        files_written: Relative paths of the WAV files rendered by this run.
        files_reused: Relative paths of files found up to date (checksum verified).
        files_removed: Files of an earlier manifest that the new one no longer lists.
        skipped: ``(source, reason)`` for every work that could not be used.
        seconds_rendered: Seconds of audio rendered by this run.
        seconds_total: Seconds of audio in the whole corpus.
        seconds_per_class: Class name -> seconds of audio in the corpus.
        wall_seconds: Wall-clock time of the run.
        renderer: ``"fluidsynth"`` or ``"pretty_midi.synthesize"``.
    """

    out_dir: Path
    files_written: list[str] = dataclasses.field(default_factory=list)
    files_reused: list[str] = dataclasses.field(default_factory=list)
    files_removed: list[str] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    seconds_rendered: float = 0.0
    seconds_total: float = 0.0
    seconds_per_class: dict[str, float] = dataclasses.field(default_factory=dict)
    wall_seconds: float = 0.0
    renderer: str = ""

    @property
    def nothing_to_do(self) -> bool:
        """True when the run found the corpus complete and wrote nothing."""
        return not self.files_written and not self.files_removed

    @property
    def render_speed(self) -> float:
        """Seconds of audio rendered per second of wall time (0 when nothing rendered)."""
        return self.seconds_rendered / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def summary(self) -> str:
        """A few human-readable lines describing the run."""
        lines = [f"Corpus in {self.out_dir} (renderer: {self.renderer})"]
        if self.nothing_to_do:
            lines.append(f"Nothing needed doing: all {len(self.files_reused)} files are up to date "
                         f"({self.wall_seconds:.1f} s to check).")
        else:
            lines.append(
                f"Wrote {len(self.files_written)} files, reused {len(self.files_reused)}, removed "
                f"{len(self.files_removed)}; rendered {self.seconds_rendered:.1f} s of audio in "
                f"{self.wall_seconds:.1f} s ({self.render_speed:.1f} s audio / s wall).")
        for name, seconds in self.seconds_per_class.items():
            lines.append(f"  {name:<22} {seconds / 60:6.2f} min")
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} works:")
            lines.extend(f"  {source}: {reason}" for source, reason in self.skipped)
        if self.renderer == _FALLBACK:
            lines.append("WARNING: FluidSynth unavailable; rendered with sine waves "
                         "(pretty_midi.synthesize).")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def read_corpus_manifest(out_dir: str | os.PathLike) -> dict:
    """Load ``out_dir/manifest.json``.

    Args:
        out_dir: A corpus folder written by ``make_demo_corpus``.

    Returns:
        The manifest as a dict (see ``make_demo_corpus`` for its fields).

    Raises:
        FileNotFoundError: no manifest in ``out_dir``.
        ValueError: the manifest is not valid JSON.
    """
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no corpus manifest (build it with make_demo_corpus)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a valid corpus manifest ({error})") from error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_name(source: str) -> str:
    """``mozart/k80/movement1.mxl`` -> ``mozart_k80_movement1``; ``a.abc#3`` -> ``a_x3``."""
    path, number = _split_source(source)
    stem = re.sub(r"\.(mxl|xml|krn|abc|mid|midi)$", "", path)
    name = re.sub(r"[^A-Za-z0-9.\-]+", "_", stem.replace("/", "_"))
    return f"{name}_x{number}" if number is not None else name


def _settings(instrument: str, sample_rate: int, renderer: str) -> dict:
    """Everything besides the per-file excerpt length that determines a file's bytes."""
    import music21
    import pretty_midi

    soundfont = Path(pretty_midi.__file__).resolve().parent / _SOUNDFONT_NAME
    settings = {
        "format": _FORMAT,
        "instrument": instrument,
        "sample_rate": int(sample_rate),
        "renderer": renderer,
        "music21_version": str(music21.__version__),
        "pretty_midi_version": str(pretty_midi.__version__),
    }
    if renderer == _FLUIDSYNTH:
        settings["soundfont"] = _SOUNDFONT_NAME
        settings["soundfont_sha256"] = _sha256(soundfont)
    return settings


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write PCM16 mono atomically (tmp file + rename); quantise ourselves for exact bytes."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    soundfile.write(tmp, pcm, sample_rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def _short_reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    # Drop memory addresses and object ids so that reasons stay identical between runs.
    text = re.sub(r"0x[0-9a-fA-F]+", "0x...", text)
    text = re.sub(r"id\(\)=\d+", "id()=...", text)
    return f"{type(error).__name__}: {text}"[:300]


def make_demo_corpus(out_dir: str | os.PathLike = config.DEMO_CORPUS_DIR,
                     minutes_per_class: float = config.DEMO_MINUTES_PER_CLASS,
                     classes: Sequence[str] | str | None = None,
                     instrument: str = "piano",
                     sample_rate: int = config.DEFAULT_SAMPLE_RATE,
                     max_excerpt_seconds: float = config.DEMO_MAX_EXCERPT_SECONDS,
                     progress: bool = True) -> CorpusReport:
    """Render the embedded default corpus: a few minutes per composer / genre.

    For each class, works are taken in the order of ``class_sources`` (sorted
    listing, shuffled with a fixed seed); each gives an excerpt of at most
    ``max_excerpt_seconds`` from its start (the last one is cut to what the
    class still needs) until the class holds ``minutes_per_class`` minutes.
    Works that fail to parse or render are skipped and recorded with the
    reason; the run never stops for one bad score.

    Writes ``out_dir/<class>/<work>.wav`` (mono PCM16) and
    ``out_dir/manifest.json`` with global fields ``classes``, ``instrument``,
    ``sample_rate``, ``minutes_per_class``, ``max_excerpt_seconds``,
    ``renderer``, ``seconds_per_class``, ``skipped`` ([{source, class,
    reason}]), library versions, and ``files``: one entry per WAV with ``path``,
    ``class``, ``source`` (music21 corpus path), ``duration_seconds``,
    ``num_samples``, ``sample_rate``, ``sha256``, ``instrument``,
    ``excerpt_limit_seconds`` (the excerpt's length limit; the file is
    shorter when the work is, or when it began with rests).

    Idempotent: a file listed in an existing manifest with the same settings,
    the same excerpt limit and a matching checksum is reused, not rendered;
    works skipped before are not parsed again; files the new manifest no
    longer lists are removed. When nothing changes, nothing is written.
    Asking for more minutes later renders only what is new (plus the last
    excerpt of each class, whose limit changes).

    Args:
        out_dir: Corpus folder (created if needed).
        minutes_per_class: Minutes of audio per class (> 0).
        classes: Class names (list, or comma-separated string); None = all of
            ``CORPUS_CLASSES``.
        instrument: ``"piano"`` (one GM program for every part of every class),
            ``"genre"`` (each class with its own instrument, ``GENRE_INSTRUMENTS``;
            each file's manifest entry names the instrument that played it),
            ``"score"`` (the parts' own instruments), a key of
            ``INSTRUMENT_PROGRAMS`` or a GM program name.
        sample_rate: Output rate in Hz.
        max_excerpt_seconds: Longest excerpt taken from one work (>= 2 s).
        progress: Show a tqdm bar (seconds of audio) and print a note when
            nothing needed doing.

    Returns:
        ``CorpusReport``.

    Raises:
        ValueError: unknown class or instrument, or a non-positive size.
    """
    start = time.perf_counter()
    class_names = _check_classes(classes)
    _check_corpus_size(minutes_per_class, sample_rate, max_excerpt_seconds)
    sample_rate = int(sample_rate)
    instrument = _instrument_name(instrument)

    out_dir = Path(out_dir)
    renderer = pick_renderer(sample_rate, warn=True)
    settings = _settings(instrument, sample_rate, renderer)
    old_manifest, old_files, old_skipped = _previous_build(out_dir, settings)
    report = CorpusReport(out_dir=out_dir, renderer=renderer)
    entries: list[dict] = []
    skipped: list[dict] = []
    target_seconds = 60.0 * float(minutes_per_class)

    from tqdm.auto import tqdm

    bar = tqdm(total=round(target_seconds * len(class_names), 1), unit="s audio",
               disable=not progress, desc="corpus", leave=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    with bar:
        for class_name in class_names:
            bar.set_postfix_str(class_name)
            render = dict(out_dir=out_dir, sample_rate=sample_rate, instrument=instrument,
                          renderer=renderer, max_excerpt_seconds=max_excerpt_seconds)
            report.seconds_per_class[class_name] = _render_class(
                class_name, target_seconds, render, old_files, old_skipped, report, entries,
                skipped, bar)

    entries.sort(key=lambda e: (class_names.index(e["class"]), e["path"]))
    report.skipped = [(item["source"], item["reason"]) for item in skipped]
    report.seconds_total = round(sum(e["duration_seconds"] for e in entries), 6)
    _remove_stale_files(old_manifest, entries, out_dir, report)
    manifest = _corpus_manifest(settings, class_names, minutes_per_class, max_excerpt_seconds,
                                report, entries, skipped)
    manifest_changed = _write_corpus_manifest(out_dir / MANIFEST_NAME, manifest)
    report.wall_seconds = time.perf_counter() - start
    if progress and report.nothing_to_do and not manifest_changed:
        print(f"Corpus {out_dir} is up to date: nothing needed doing "
              f"({len(report.files_reused)} files verified).")
    return report


def _corpus_manifest(settings, class_names, minutes_per_class, max_excerpt_seconds, report,
                     entries, skipped) -> dict:
    """The corpus's ``manifest.json`` content (fields listed in :func:`make_demo_corpus`)."""
    return {
        **{key: settings[key] for key in ("format", "instrument", "sample_rate", "renderer")},
        "classes": class_names,
        "class_descriptions": {name: CORPUS_CLASSES[name] for name in class_names},
        "minutes_per_class": float(minutes_per_class),
        "max_excerpt_seconds": float(max_excerpt_seconds),
        "seconds_per_class": report.seconds_per_class,
        "num_files": len(entries),
        "settings": settings,
        "files": entries,
        "skipped": skipped,
    }


def _instrument_name(instrument: str) -> str:
    """The instrument as stored in the manifest (validated: a ValueError names a bad one)."""
    instrument = str(instrument).strip()
    if instrument.lower() == GENRE:
        return GENRE
    program = _instrument_program(instrument)
    if program is None or instrument.lower() in INSTRUMENT_PROGRAMS:
        instrument = instrument.lower()
    return instrument


def _check_corpus_size(minutes_per_class, sample_rate, max_excerpt_seconds) -> None:
    if not (isinstance(minutes_per_class, (int, float)) and math.isfinite(minutes_per_class)
            and minutes_per_class > 0):
        raise ValueError(f"minutes_per_class: must be a positive number of minutes, "
                         f"got {minutes_per_class!r}")
    if int(sample_rate) != sample_rate or not 8000 <= sample_rate <= 96000:
        raise ValueError(f"sample_rate: must be an integer in [8000, 96000] Hz "
                         f"(FluidSynth's range), got {sample_rate!r}")
    if not max_excerpt_seconds >= _MIN_EXCERPT_SECONDS:
        raise ValueError(f"max_excerpt_seconds: must be at least {_MIN_EXCERPT_SECONDS} s, "
                         f"got {max_excerpt_seconds!r}")


def _previous_build(out_dir: Path, settings: dict):
    """``(old manifest, its files by source, its skipped sources)``; the last two are empty
    when the settings changed (everything is rendered again)."""
    old_manifest: dict = {}
    if (out_dir / MANIFEST_NAME).is_file():
        try:
            old_manifest = read_corpus_manifest(out_dir)
        except ValueError:
            old_manifest = {}
    if old_manifest.get("settings") != settings:
        return old_manifest, {}, {}
    return (old_manifest, {entry["source"]: entry for entry in old_manifest.get("files", [])},
            {item["source"]: item["reason"] for item in old_manifest.get("skipped", [])})


def _render_class(class_name, target_seconds, render, old_files, old_skipped, report, entries,
                  skipped, bar) -> float:
    """Excerpts of ``class_name``'s works until ``target_seconds``; returns the seconds kept.

    A file of the previous build with the same settings is reused when intact;
    a score that fails to render is recorded in ``skipped`` with its reason.
    """
    class_seconds = 0.0
    for source in class_sources(class_name):
        remaining = target_seconds - class_seconds
        if remaining < _MIN_EXCERPT_SECONDS:
            break
        limit = round(min(float(render["max_excerpt_seconds"]), remaining), 3)
        if source in old_skipped:
            skipped.append({"source": source, "class": class_name, "reason": old_skipped[source]})
            continue
        relative = f"{class_name}/{_file_name(source)}.wav"
        entry = _reusable_entry(old_files.get(source), relative, limit, render["out_dir"])
        if entry is not None:
            report.files_reused.append(relative)
        else:
            try:
                entry = _render_entry(source, class_name, relative, limit, render)
            except Exception as error:  # any bad score: record it, go on
                skipped.append({"source": source, "class": class_name,
                                "reason": _short_reason(error)})
                continue
            report.files_written.append(relative)
            report.seconds_rendered += entry["duration_seconds"]
        entries.append(entry)
        bar.update(min(entry["duration_seconds"], remaining))
        class_seconds += entry["duration_seconds"]
    return round(class_seconds, 6)


def _render_entry(source, class_name, relative, limit, render) -> dict:
    """Render one excerpt to ``out_dir/relative`` and return its manifest entry."""
    sample_rate = render["sample_rate"]
    instrument = render["instrument"]
    if instrument == GENRE:
        instrument = _genre_instrument(class_name)  # the entry names what played it
    audio = render_score_to_audio(source, sample_rate=sample_rate,
                                  instrument=instrument, max_seconds=limit,
                                  renderer=render["renderer"])
    if audio.size < sample_rate * 0.5:
        raise ValueError("rendered less than 0.5 s of sound")
    path = render["out_dir"] / relative
    _write_wav(path, audio, sample_rate)
    return {
        "path": relative,
        "class": class_name,
        "source": source,
        "duration_seconds": round(audio.size / sample_rate, 6),
        "num_samples": int(audio.size),
        "sample_rate": sample_rate,
        "sha256": _sha256(path),
        "instrument": instrument,
        "excerpt_limit_seconds": limit,
    }


def _remove_stale_files(old_manifest, entries, out_dir, report) -> None:
    """Files that an earlier manifest listed but this one does not: ours to remove."""
    listed = {e["path"] for e in entries}
    for entry in old_manifest.get("files", []):
        stale = entry.get("path")
        if stale and stale not in listed and (out_dir / stale).is_file():
            (out_dir / stale).unlink()
            report.files_removed.append(stale)


def _write_corpus_manifest(manifest_path: Path, manifest: dict) -> bool:
    """Write the manifest atomically when its text changed; True when it did."""
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    if manifest_path.is_file() and manifest_path.read_text(encoding="utf-8") == text:
        return False
    files.atomic_write(manifest_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return True


def _reusable_entry(entry: dict | None, relative: str, limit: float, out_dir: Path) -> dict | None:
    """The old manifest entry if its file still exists with its checksum and fits ``limit``."""
    if entry is None or entry.get("path") != relative:
        return None
    path = out_dir / relative
    if (entry.get("excerpt_limit_seconds") != limit or not path.is_file()
            or _sha256(path) != entry.get("sha256")):
        return None
    return entry


def ensure_demo_corpus(out_dir: str | os.PathLike = config.DEMO_CORPUS_DIR,
                       minutes_per_class: float = config.DEMO_MINUTES_PER_CLASS,
                       progress: bool = True, **kwargs) -> Path:
    """Build the demo corpus unless ``out_dir`` already holds it.

    "Already holds it" means: a manifest whose ``minutes_per_class`` (and any
    other argument given in ``kwargs``) matches, and every file it lists exists
    with its recorded size. Otherwise ``make_demo_corpus`` runs (and reuses
    whatever it can).

    Args:
        out_dir: Corpus folder; default ``config.DEMO_CORPUS_DIR``.
        minutes_per_class: Minutes of audio per class.
        progress: Show progress while building.
        **kwargs: Passed on to ``make_demo_corpus`` (``classes``, ``instrument``,
            ``sample_rate``, ``max_excerpt_seconds``).

    Returns:
        ``Path(out_dir)``.
    """
    out_dir = Path(out_dir)
    try:
        manifest = read_corpus_manifest(out_dir)
    except (FileNotFoundError, ValueError):
        manifest = None
    if manifest is not None and _manifest_matches(manifest, out_dir, minutes_per_class, kwargs):
        return out_dir
    make_demo_corpus(out_dir, minutes_per_class=minutes_per_class, progress=progress, **kwargs)
    return out_dir


def _manifest_matches(manifest: dict, out_dir: Path, minutes_per_class: float, kwargs: dict) -> bool:
    if manifest.get("format") != _FORMAT or manifest.get("minutes_per_class") != float(minutes_per_class):
        return False
    if "classes" in kwargs and manifest.get("classes") != _check_classes(kwargs["classes"]):
        return False
    if "classes" not in kwargs and manifest.get("classes") != list(CORPUS_CLASSES):
        return False
    for key in ("instrument", "sample_rate", "max_excerpt_seconds"):
        if key in kwargs and manifest.get(key) != kwargs[key]:
            return False
    for entry in manifest.get("files", []):
        path = out_dir / entry["path"]
        # A PCM16 mono WAV with a canonical 44-byte header.
        if not path.is_file() or path.stat().st_size != 44 + 2 * entry["num_samples"]:
            return False
    return True
