"""The run behind the site: its generator (loaded once), limits and summary.

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from __future__ import annotations

import functools
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from pggan_lib import evaluation, playground, plots, runs
from pggan_lib.config import scale_sample_rate
from pggan_lib.web import forms


class Site:
    """One run served: a :class:`~pggan_lib.playground.Playground` and what the pages show.

    Generated audio is cached by request (seed, length, class), so the audio
    player, the spectrogram and the download link of one result share one
    generation.

    Args:
        run_dir: Run folder made by ``pggan train``.

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.playground = playground.Playground(self.run_dir)
        folder = runs.RunFolder.load(self.run_dir)
        self.config, self.metrics = folder.config, folder.metrics
        self.provenance, self.state = folder.provenance, folder.state
        self.track(1.0, 0, None)  # trace the generator now, not at the first request

    @property
    def class_names(self) -> list[str]:
        return self.playground.class_names

    @property
    def conditional(self) -> bool:
        return self.playground.conditional

    @property
    def sample_rate(self) -> int:
        return self.playground.sample_rate

    @functools.lru_cache(maxsize=32)
    def track(self, seconds: float, seed: int, class_name: str | None) -> np.ndarray:
        """A read-only track (see ``Playground.track``), cached per request."""
        signal = self.playground.track(seconds, seed=seed, class_name=class_name)
        signal.flags.writeable = False
        return signal

    @functools.lru_cache(maxsize=64)
    def interpolated(self, seed_a: int, seed_b: int, t: float, class_name: str | None):
        """A read-only clip at position ``t`` of the slerp from seed a to seed b."""
        clip = self.playground.interpolate(seed_a, seed_b, [t], class_name)[0]
        clip.flags.writeable = False
        return clip

    def spectrogram_png(self, signal: np.ndarray, title: str) -> bytes:
        """A log-magnitude spectrogram of ``signal`` as PNG bytes."""
        figure = Figure(figsize=(7, 2.4), dpi=100)
        plots.plot_spectrogram(signal, self.sample_rate, ax=figure.subplots(), title=title)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()

    def info(self) -> dict[str, Any]:
        """What ``GET /api/info`` answers: classes, rates, limits, summary."""
        spec = self.config["model_spec"]
        rate = int(self.config["dataset"]["sample_rate"])
        return {
            "run": self.run_dir.name, "conditional": self.conditional,
            "classes": self.class_names, "sample_rate": self.sample_rate,
            "scale": self.playground.info["scale"],
            "scales": [{"scale": k, "sample_rate": scale_sample_rate(k, spec["num_scales"], rate)}
                       for k in range(spec["num_scales"])],
            "trained_scale": self.playground.info["trained_scale"],
            "clip_seconds": self.playground.clip_samples / self.sample_rate,
            "max_seconds": forms.MAX_SECONDS, "max_count": forms.MAX_COUNT,
            "max_steps": forms.MAX_STEPS, "formats": list(playground.AUDIO_FORMATS),
            "provenance": self.provenance_summary(), "metrics": self.metrics_summary()}

    def provenance_summary(self) -> dict[str, Any]:
        """Commands, training time and machine, from ``provenance.json`` when there is one."""
        summary = {"preset": self.config.get("preset", {}).get("name"),
                   "global_step": (self.state or {}).get("global_step")}
        if self.provenance:
            summary.update(
                commands=[c["command"] for c in self.provenance.get("commands", [])],
                train_hours=(self.provenance.get("train_elapsed_s") or 0) / 3600,
                machine=self.provenance.get("machine"),
                git_commit=self.provenance.get("git_commit"))
        return summary

    def metrics_summary(self) -> list[dict[str, Any]] | None:
        """Per scale, IS and FD against the real floor and the book's targets (chapter 6)."""
        if not self.metrics:
            return None
        return evaluation.check_targets(self.metrics)

    def metrics_table(self) -> str | None:
        """The summary as chapter 6's plain-text table."""
        rows = self.metrics_summary()
        return None if rows is None else evaluation.format_targets_table(rows)
