"""Playing with a trained generator: latents from seeds, interpolation, tracks.

* :class:`Playground`: a run's generator loaded once (``generator.keras`` in
  Keras' safe mode), one compiled call per batch size, clips from seeds or
  from latent vectors, conditional when the run is.
* :func:`slerp`: spherical interpolation between latent vectors (Gaussian
  latents live near a sphere of radius sqrt(latent_dim); a straight line
  between two of them passes inside it, through rarely seen, quieter latents).
* Tracks longer than one clip: :meth:`Playground.walk_latents` walks smoothly
  through latent space (a slerp between anchor latents), and
  :func:`overlap_add` joins the successive clips with equal-power crossfades
  so that the joins carry no click and no dip in loudness.

A seed names a latent vector: ``latent_vectors([s])[0]`` is the vector that
``training.generate_audio(run, 1, seed=s)`` uses, so a clip heard on the web
page and one written by ``pggan generate --seed s --n 1`` are the same.

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from __future__ import annotations

import io
import math
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import tensorflow as tf
from keras import ops

from pggan_lib import files, representations, training

__all__ = [
    "AUDIO_FORMATS",
    "Playground",
    "slerp",
    "crossfade_ramps",
    "overlap_add",
    "track_clip_count",
    "encode_audio",
    "band_energy_db",
]

AUDIO_FORMATS = ("wav", "flac")
# A track's clips overlap by this share of a clip: long enough for a smooth
# crossfade (256 ms at 16 kHz), short enough to keep most of every clip.
DEFAULT_OVERLAP = 0.25
# Anchor latents of a walk are this many clips apart (about 3 s at 16 kHz).
DEFAULT_CLIPS_PER_ANCHOR = 4
# Track ends fade in and out over this long, so a cut never clicks.
END_FADE_SECONDS = 0.01


def slerp(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Spherical linear interpolation from ``a`` (t = 0) to ``b`` (t = 1).

    Moves along the great circle between the two directions while the norm
    goes linearly from ``|a|`` to ``|b|``; parallel vectors fall back to a
    straight line.

    Args:
        a, b: Latent vectors, ``(latent_dim,)``.
        t: Scalar or ``(n,)`` positions in [0, 1].

    Returns:
        float32 ``(latent_dim,)`` for a scalar ``t``, else ``(n, latent_dim)``.

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t_arr = np.atleast_1d(np.asarray(t, np.float64))[:, None]
    norm_a, norm_b = np.linalg.norm(a), np.linalg.norm(b)
    cos = np.clip(a @ b / max(norm_a * norm_b, 1e-12), -1.0, 1.0)
    omega = math.acos(cos)
    if omega < 1e-6:
        out = (1 - t_arr) * a + t_arr * b
    else:
        unit_a, unit_b = a / norm_a, b / norm_b
        direction = (np.sin((1 - t_arr) * omega) * unit_a
                     + np.sin(t_arr * omega) * unit_b) / math.sin(omega)
        out = direction * ((1 - t_arr) * norm_a + t_arr * norm_b)
    out = out.astype(np.float32)
    return out[0] if np.ndim(t) == 0 else out


def crossfade_ramps(overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power fade-in and fade-out ramps of ``overlap`` samples.

    ``fade_in**2 + fade_out**2 == 1`` at every sample, so two unrelated
    signals crossfaded with them keep their summed power (loudness) through
    the join; a linear crossfade would dip by 3 dB in the middle.

    Returns:
        ``(fade_in, fade_out)``: float32 ``(overlap,)`` each.
    """
    phase = (np.arange(overlap) + 0.5) / max(overlap, 1) * (np.pi / 2)
    return np.sin(phase).astype(np.float32), np.cos(phase).astype(np.float32)


def track_clip_count(track_samples: int, clip_samples: int, overlap: int) -> int:
    """Clips that :func:`overlap_add` needs for a track of ``track_samples``.

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    if track_samples <= clip_samples:
        return 1
    hop = clip_samples - overlap
    return 1 + math.ceil((track_samples - clip_samples) / hop)


def overlap_add(clips: np.ndarray, overlap: int, length: int | None = None,
                end_fade: int = 0) -> np.ndarray:
    """Join successive clips into one signal with equal-power crossfades.

    Clip ``i`` starts at ``i * (clip_samples - overlap)``; where two clips
    overlap, the first fades out while the next fades in
    (:func:`crossfade_ramps`).

    Args:
        clips: ``(n, clip_samples)``.
        overlap: Samples shared by successive clips, ``0 <= overlap < clip_samples``.
        length: Cut the result to this many samples (default: all of it).
        end_fade: Samples of linear fade at the very start and end (0: none).

    Returns:
        float32 ``(length,)``, or ``((n - 1) * hop + clip_samples,)``.

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    clips = np.asarray(clips, np.float32)
    n, clip_samples = clips.shape
    if not 0 <= overlap < clip_samples:
        raise ValueError(f"overlap must be in [0, {clip_samples}), got {overlap}")
    hop = clip_samples - overlap
    track = np.zeros((n - 1) * hop + clip_samples, np.float32)
    fade_in, fade_out = crossfade_ramps(overlap)
    for i, clip in enumerate(clips):
        clip = clip.copy()
        if overlap and i > 0:
            clip[:overlap] *= fade_in
        if overlap and i < n - 1:
            clip[clip_samples - overlap:] *= fade_out
        track[i * hop:i * hop + clip_samples] += clip
    track = track[:length] if length is not None else track
    if end_fade:
        ramp = np.linspace(0.0, 1.0, min(end_fade, len(track) // 2), dtype=np.float32)
        track[:len(ramp)] *= ramp
        track[len(track) - len(ramp):] *= ramp[::-1]
    return track


def band_energy_db(signal: np.ndarray, sample_rate: int, centre: int, above_hz: float = 2000.0,
                   width: int = 1024) -> float:
    """Share of a signal's energy above ``above_hz`` around one sample, in dB.

    A click (a jump in the waveform) is broadband: it raises this share far
    above what tones below ``above_hz`` leave through a Hann window (about
    -120 dB). Measures how audible a join between two clips is.

    Args:
        signal: ``(samples,)``.
        sample_rate: Hz.
        centre: Sample at the middle of the window (the join).
        above_hz: Lower edge of the band.
        width: Window length in samples (1024: 64 ms at 16 kHz).

    Returns:
        ``10 log10(E_band / E_total)`` in the window.

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    around = np.asarray(signal, np.float64)[centre - width // 2: centre + width // 2]
    spectrum = np.abs(np.fft.rfft(around * np.hanning(len(around)))) ** 2
    frequencies = np.fft.rfftfreq(len(around), 1.0 / sample_rate)
    return float(10 * np.log10(spectrum[frequencies > above_hz].sum() / spectrum.sum()
                               + 1e-30))


def encode_audio(signal: np.ndarray, sample_rate: int, audio_format: str = "wav") -> bytes:
    """A signal as the bytes of a 16-bit WAV or FLAC file.

    Args:
        signal: ``(samples,)`` float in [-1, 1] (values outside are clipped).
        sample_rate: Hz.
        audio_format: ``"wav"`` or ``"flac"``.
    """
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"format must be one of {', '.join(AUDIO_FORMATS)}, got {audio_format!r}")
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(np.asarray(signal, np.float32), -1.0, 1.0), int(sample_rate),
             format=audio_format.upper(), subtype="PCM_16")
    return buffer.getvalue()


class Playground:
    """A run's generator, loaded once, for clips, interpolations and tracks.

    Calls are thread-safe (one generator call at a time: on a CPU TensorFlow
    already spreads one call over every core).

    Args:
        run_dir: Run folder made by ``pggan train``.
        use_ema: The EMA generator (what PGGAN samples from) or the raw one.
        scale: Scale to generate at (default: the finest trained one).
        batch_size: Clips per generator call; 32 is fastest on 2 CPU cores.

    Attributes:
        info: ``training.load_generator``'s dict (``scale``, ``sample_rate``,
            ``samples``, ``class_names``, ``conditional``, ``latent_dim``, ...).

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """

    def __init__(self, run_dir: str | os.PathLike, use_ema: bool = True,
                 scale: int | None = None, batch_size: int = 32):
        self.run_dir = Path(run_dir)
        self.generator, self.info = training.load_generator(self.run_dir, use_ema=use_ema,
                                                            scale=scale)
        self.batch_size = int(batch_size)
        self._lock = threading.Lock()
        # One graph; traced once per batch shape (a full batch and the last one).
        self._call = tf.function(lambda inputs: self.generator(inputs, training=False),
                                 autograph=False, reduce_retracing=True)

    @property
    def sample_rate(self) -> int:
        return int(self.info["sample_rate"])

    @property
    def clip_samples(self) -> int:
        return int(self.info["samples"])

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    @property
    def conditional(self) -> bool:
        return bool(self.info["conditional"])

    def class_index(self, class_name: str | None) -> int | None:
        """Index of ``class_name``; ``None`` for an unconditional run given ``None``.

        Raises:
            ValueError: A class for an unconditional run, or an unknown class.
        """
        if class_name is None:
            return None
        if not self.conditional:
            raise ValueError(f"class {class_name!r} given, but the run in {self.run_dir} is "
                             f"unconditional (train with --conditional to choose classes)")
        if class_name not in self.class_names:
            raise ValueError(f"unknown class {class_name!r}; classes: "
                             f"{', '.join(self.class_names)}")
        return self.class_names.index(class_name)

    def latent_vectors(self, seeds: Sequence[int]) -> np.ndarray:
        """One latent vector per seed, ``(len(seeds), latent_dim)`` float32."""
        dim = self.info["latent_dim"]
        return np.stack([np.random.default_rng(_seed(s)).standard_normal(dim)
                         for s in seeds]).astype(np.float32)

    def generate(self, latents: np.ndarray, class_name: str | None = None,
                 labels: np.ndarray | None = None) -> np.ndarray:
        """Clips from latent vectors, batch by batch.

        Args:
            latents: ``(n, latent_dim)``.
            class_name: Class of every clip (conditional runs).
            labels: ``(n,)`` class indices instead (conditional runs; default:
                classes in turn, as ``pggan generate`` does).

        Returns:
            float32 ``(n, clip_samples)``.
        """
        z = np.asarray(latents, np.float32).reshape(-1, self.info["latent_dim"])
        index = self.class_index(class_name)
        if self.conditional and labels is None:
            labels = (np.full(len(z), index) if index is not None
                      else np.arange(len(z)) % len(self.class_names))
        out = []
        with self._lock:
            for start in range(0, len(z), self.batch_size):
                batch = z[start:start + self.batch_size]
                inputs = ([batch, np.asarray(labels[start:start + len(batch)], np.int32)]
                          if self.conditional else batch)
                out.append(representations.to_audio(self.generator.spec, ops.convert_to_numpy(
                    self._call(inputs)), self.info["scale"]))
        return np.concatenate(out).astype(np.float32)

    def clips(self, seeds: Sequence[int], class_name: str | None = None) -> np.ndarray:
        """One clip per seed, ``(len(seeds), clip_samples)``."""
        return self.generate(self.latent_vectors(seeds), class_name)

    def interpolate(self, seed_a: int, seed_b: int, positions: Sequence[float],
                    class_name: str | None = None) -> np.ndarray:
        """Clips along the slerp from seed ``a``'s latent to seed ``b``'s.

        Returns:
            ``(len(positions), clip_samples)``.
        """
        a, b = self.latent_vectors([seed_a, seed_b])
        return self.generate(slerp(a, b, np.asarray(positions, np.float64)), class_name)

    def walk_latents(self, seed: int, num_clips: int,
                     clips_per_anchor: int = DEFAULT_CLIPS_PER_ANCHOR) -> np.ndarray:
        """A smooth walk through latent space, one latent per clip of a track.

        Anchor 0 is seed's own latent (so a one-clip track is the seed's clip);
        anchor ``j`` is drawn from ``(seed, j)``. Between anchors the walk
        slerps, ``clips_per_anchor`` clips per leg.

        Returns:
            float32 ``(num_clips, latent_dim)``.
        """
        seed = _seed(seed)
        legs = max(1, math.ceil((num_clips - 1) / clips_per_anchor))
        dim = self.info["latent_dim"]
        anchors = [self.latent_vectors([seed])[0]] + [
            np.random.default_rng([seed, j]).standard_normal(dim).astype(np.float32)
            for j in range(1, legs + 1)]
        steps = np.arange(num_clips) / clips_per_anchor
        return np.stack([slerp(anchors[int(s)], anchors[min(int(s) + 1, legs)], s - int(s))
                         for s in steps])

    def track(self, seconds: float, seed: int = 0, class_name: str | None = None,
              overlap: float = DEFAULT_OVERLAP,
              clips_per_anchor: int = DEFAULT_CLIPS_PER_ANCHOR) -> np.ndarray:
        """A track of any length: clips along a latent walk, overlap-added.

        Args:
            seconds: Length of the track.
            seed: Seed of the walk.
            class_name: Class of every clip (conditional runs; default: the
                class ``seed % num_classes``, one class for the whole track).
            overlap: Share of a clip that successive clips overlap (crossfade).
            clips_per_anchor: Clips between anchor latents of the walk.

        Returns:
            float32 ``(round(seconds * sample_rate),)``.
        """
        length = int(round(float(seconds) * self.sample_rate))
        if length < 1:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        overlap_samples = int(round(overlap * self.clip_samples))
        count = track_clip_count(length, self.clip_samples, overlap_samples)
        if self.conditional and class_name is None:
            class_name = self.class_names[_seed(seed) % len(self.class_names)]
        clips = self.generate(self.walk_latents(seed, count, clips_per_anchor), class_name)
        end_fade = int(END_FADE_SECONDS * self.sample_rate) if count > 1 else 0
        return overlap_add(clips, overlap_samples, length, end_fade=end_fade)

    def write(self, path: str | os.PathLike, signal: np.ndarray) -> Path:
        """Write a clip or track as 16-bit WAV or FLAC (chosen by the suffix), atomically."""
        path = Path(path)
        audio_format = path.suffix.lower().lstrip(".")
        data = encode_audio(signal, self.sample_rate, audio_format)
        # The library's one atomic writer (temporary file, fsync, os.replace).
        files.atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        return path


def _seed(seed) -> int:
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return seed
