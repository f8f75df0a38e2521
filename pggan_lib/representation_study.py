"""Which representation? The waveform pyramid against spectrograms, at equal CPU-seconds.

Each arm is the ``quick`` preset with one :data:`config.REPRESENTATIONS`
value. A run (:func:`run_representation_arm`) grows through the scales on one
short schedule (:data:`GROWTH_STABLE_STEPS`, the same steps for every arm;
what they cost is the representation's own), then trains the finest scale
until the run has spent ``budget_cpu_s`` of training CPU time
(``time.process_time``, both cores; scoring excluded). At marks every
``mark_cpu_s`` during that last phase it scores the EMA generator's clips,
inverted to waveforms, with chapter 6's evaluation at the finest scale
(:class:`study.Scorer`: FD, IS, NDB/K, spectral flatness and their ratios to
the real test split). :func:`run_representation_study` runs arms x seeds,
skips finished runs and writes ``OUT/runs/ARM_seedS.json``,
``OUT/representations.json`` (summary, differences against the waveform arm)
and a few clips of each arm to listen to.

Notebook: chapters/08_which_representation.ipynb
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pggan_lib import ablation, audio, data, files, representations, training
from pggan_lib.config import REPRESENTATIONS, scale_sample_rate, studied_preset
from pggan_lib.profiling import machine_description
from pggan_lib.study import (ENDLESS_STEPS, NO_GROWTH, Scorer, StudyArm, format_mean_std,
                             seed_spread)

__all__ = [
    "ARMS",
    "REPRESENTATION_ARMS",
    "PEER_ARMS",
    "GROWTH_STABLE_STEPS",
    "GROWTH_FADE_STEPS",
    "SUMMARY_FILE_NAME",
    "run_representation_arm",
    "run_representation_study",
    "summarize_representations",
    "format_representation_table",
]

#: Summary file written by :func:`run_representation_study`.
SUMMARY_FILE_NAME = "representations.json"

_DESCRIPTIONS = {
    "waveform": "the report's sample-rate pyramid (1-D convolutions, DiffAugment)",
    "spectral": "log magnitude + instantaneous frequency (GANSynth), 2-D convolutions",
    "magnitude": "log magnitude only, phase by Griffin-Lim (SpecGAN), 2-D convolutions",
}
#: One arm per representation, the waveform pyramid first (the baseline).
REPRESENTATION_ARMS = tuple(
    StudyArm(name, "representation", _DESCRIPTIONS[name], preset="quick",
             overrides={"representation": name}) for name in REPRESENTATIONS)
#: PGGAN's head with quiet heads (``study.GROWTH_ARMS``' pggan_quiet), pinned here
#: so that the arms keep their meaning when the presets change.
_PGGAN_QUIET = {"output_skips": False, "head_std": 0.1}
#: The augmentations without the noise, pinned (``config.DEFAULT_AUGMENT`` may change).
_NO_NOISE = ("gain", "polarity", "shift", "cutout")
#: The pggan_no_noise arm's changes: the twin of every later peer arm.
_PGGAN_NO_NOISE = {**_PGGAN_QUIET, "augment": _NO_NOISE}
#: The waveform arm's peers (chapter 5): the same players trained at the finest
#: scale from the first step, WaveGAN's players, a shorter growth, finest-level
#: gains, silent heads (grown and not), quiet heads (grown; with skip outputs and
#: with PGGAN's head), PGGAN's head without the noise augmentation, and that arm
#: with a pre-emphasis filter in front of its critic, at twice the learning rate,
#: without pixel norm on the generator's features, or at a quarter of the learning
#: rate at the finest scale (where the long runs lose ground), with two critic
#: updates per generator update, twice as wide at the finest scale, with a
#: critic that also hears a log spectrogram, with a generator loss that also
#: matches the real mean log spectrum, with sub-pixel upsampling, or with both.
PEER_ARMS = (
    StudyArm("direct", NO_GROWTH, "the waveform arm's players, no growing: the finest "
             "scale from the first step", preset="quick"),
    StudyArm("wavegan", NO_GROWTH, "WaveGAN's players (transposed convolutions, no "
             "growing), the quick preset's widths", preset="quick",
             overrides={"architecture": "wavegan"}),
    StudyArm("half_growth", "schedule", "the waveform arm growing on half the steps per "
             "scale: more of the budget at the finest scale", preset="quick",
             overrides={"stable_steps": (60, 45, 45, 30, 22, 22),
                        "fade_steps": (0, 22, 22, 22, 22, 22, 22)}),
    StudyArm("finest_gains", "loudness", "the waveform arm with every scale at the finest "
             "clip's level (its gain per file), not normalised per scale", preset="quick",
             overrides={"scale_gains": "finest"}),
    StudyArm("direct_silent", NO_GROWTH, "the direct arm with silent heads: the generator "
             "starts at zero, not as a hum", preset="quick", overrides={"silent_heads": True}),
    StudyArm("silent_heads", "initialisation", "the waveform arm with silent heads: every "
             "scale's to-waveform head starts at zero", preset="quick",
             overrides={"silent_heads": True}),
    StudyArm("quiet_heads", "initialisation", "the waveform arm with every head starting "
             "near the corpus's loudness (std 0.1, not He's 1)", preset="quick",
             overrides={"head_std": 0.1}),
    StudyArm("pggan_quiet", "initialisation", "the quiet_heads arm with PGGAN's head (no "
             "skip outputs): the growth study's winner", preset="quick",
             overrides=dict(_PGGAN_QUIET)),
    StudyArm("pggan_no_noise", "augmentation", "the pggan_quiet arm without the noise "
             "augmentation (it lies above the corpus's top octave)", preset="quick",
             overrides=dict(_PGGAN_NO_NOISE)),
    StudyArm("pggan_emphasis", "critic", "the pggan_no_noise arm whose critic hears "
             "x[t] - 0.95 x[t-1]: each scale's top octave lifted against its bass",
             preset="quick", overrides={**_PGGAN_NO_NOISE,
                                        "critic_emphasis": 0.95}),
    StudyArm("pggan_lr_2e-3", "optimiser", "the pggan_no_noise arm at the reference "
             "preset's learning rate, 2e-3 (the quick preset's is 1e-3)", preset="quick",
             overrides={**_PGGAN_NO_NOISE, "learning_rate": 2e-3}),
    StudyArm("pggan_no_pixel_norm", "normalisation", "the pggan_no_noise arm without "
             "pixel norm after the generator's convolutions (it rescales every sample; "
             "the latent's stays)", preset="quick",
             overrides={**_PGGAN_NO_NOISE, "feature_pixel_norm": False}),
    StudyArm("pggan_fine_lr", "optimiser", "the pggan_no_noise arm at a quarter of the "
             "learning rate, 2.5e-4, from the fade into the finest scale on",
             preset="quick", overrides={**_PGGAN_NO_NOISE,
                                        "learning_rate": (1e-3,) * 6 + (2.5e-4,)}),
    StudyArm("pggan_n_critic_2", "critic", "the pggan_no_noise arm with two critic "
             "updates per generator update", preset="quick",
             overrides={**_PGGAN_NO_NOISE, "n_critic": 2}),
    StudyArm("pggan_wide_fine", "width", "the pggan_no_noise arm with twice the "
             "channels (32, not 16) at the finest scale, both players", preset="quick",
             overrides={**_PGGAN_NO_NOISE,
                        "channels": (32, 32, 24, 16, 16, 16, 32)}),
    StudyArm("pggan_spectrum", "critic", "the pggan_no_noise arm whose critic also hears "
             "a log spectrogram (512-sample frames at 16 kHz: 31 Hz bins)", preset="quick",
             overrides={**_PGGAN_NO_NOISE, "critic_spectrum": 512}),
    StudyArm("pggan_spectrum_match", "loss", "the pggan_no_noise arm whose generator loss "
             "adds the gap between its batch's mean log spectrum and the real batch's "
             "(weight 1)", preset="quick",
             overrides={**_PGGAN_NO_NOISE, "spectrum_match": 1.0}),
    StudyArm("pggan_subpixel", "upsampling", "the pggan_no_noise arm whose generator "
             "doubles the rate with a sub-pixel convolution, not an FIR filter",
             preset="quick", overrides={**_PGGAN_NO_NOISE,
                                        "upsample": "subpixel"}),
    StudyArm("pggan_subpixel_match", "upsampling", "the pggan_subpixel arm with the "
             "pggan_spectrum_match arm's log-spectrum term (weight 1)", preset="quick",
             overrides={**_PGGAN_NO_NOISE, "upsample": "subpixel",
                        "spectrum_match": 1.0}),
)
#: Every arm of ``make representations``; the first is the baseline.
ARMS = REPRESENTATION_ARMS + PEER_ARMS
#: Steps per scale of the growth up to the finest scale (scales 0..K-2 stable,
#: fades into 1..K-1), about 3x the quick preset's; the finest scale then
#: trains until the CPU budget is spent.
GROWTH_STABLE_STEPS = (120, 90, 90, 60, 45, 45)
GROWTH_FADE_STEPS = (0, 45, 45, 45, 45, 45, 45)
#: Clips of each arm's first seed kept to listen to.
_CLIPS_KEPT = 4


def _preset(arm: StudyArm, num_scales: int):
    """The arm's preset: its growth (an arm may give its own ``stable_steps`` and
    ``fade_steps`` for scales 0..K-2), then the finest scale with no end."""
    overrides = dict(arm.overrides)
    base = studied_preset(arm.preset).replace(checkpoint_every=ENDLESS_STEPS, log_every=50)
    if arm.lever == NO_GROWTH:  # the finest scale from the first step
        return base.replace(**overrides).single_scale(num_scales - 1, num_scales,
                                                      ENDLESS_STEPS)
    stable = tuple(overrides.pop("stable_steps", GROWTH_STABLE_STEPS))[:num_scales - 1]
    stable += (stable[-1],) * (num_scales - 1 - len(stable)) + (ENDLESS_STEPS,)
    fade = tuple(overrides.pop("fade_steps", GROWTH_FADE_STEPS))
    fade = (fade + fade[-1:] * num_scales)[:num_scales]
    return base.replace(**overrides, stable_steps=stable, fade_steps=fade)


def _score(gan, scorer: Scorer, top: int) -> tuple[dict | None, np.ndarray, float]:
    """Ratios of the EMA generator's finest clips, the clips, and ms per generated clip."""
    start = time.perf_counter()
    z = scorer.latents(gan.latent_dim)
    outputs = np.asarray(gan.ema_generator(z, training=False), np.float32)
    clips = representations.to_audio(gan.ema_generator.spec, outputs, top)
    ms_per_clip = 1000.0 * (time.perf_counter() - start) / len(clips)
    if not np.all(np.isfinite(clips)):
        return None, clips, ms_per_clip
    return scorer.with_ratios(clips), clips, ms_per_clip


def run_representation_arm(data_dir, run_dir, arm: StudyArm, seed: int, budget_cpu_s: float,
                           mark_cpu_s: float = 50.0, n: int = 135, clips_dir=None,
                           progress: bool = False) -> dict[str, Any]:
    """Grow one arm to the finest scale, train it there until ``budget_cpu_s``, scoring it.

    Args:
        data_dir: Dataset folder.
        run_dir: Scratch run folder (must not exist; checkpoints are not kept).
        arm: The representation arm (:data:`ARMS`).
        seed: Seed of weights, latents and data.
        budget_cpu_s: Training CPU-seconds of the whole run, growth included.
        mark_cpu_s: Score at every multiple of this reached at the finest scale.
        n: Generated (and real test) clips per score.
        clips_dir: Where to write a few finest clips at the end (None: nowhere).
        progress: Print a line per score.

    Returns:
        Dict: ``arm``, ``seed``, ``budget_cpu_s``, ``dataset_fingerprint``, ``real``
        (the real test clips' metrics), ``top_reached_cpu_s`` (training CPU-seconds
        when the finest scale's stable phase began), ``points`` (``mark``,
        ``cpu_s``, ``wall_s``, ``step``, ``ema``: metrics with ratios), ``steps``,
        ``generate_ms_per_clip`` and ``diverged``.
    """
    manifest = data.read_manifest(data_dir)
    top = int(manifest["num_scales"]) - 1
    scorer = Scorer(data_dir, top, n, seed)
    marks = list(np.arange(mark_cpu_s, budget_cpu_s, mark_cpu_s)) + [float(budget_cpu_s)]
    record = {"arm": arm.to_dict(), "seed": int(seed), "budget_cpu_s": float(budget_cpu_s),
              "dataset_fingerprint": data.dataset_fingerprint(manifest), "scale": top,
              "n": scorer.n, "real": scorer.real, "points": [], "top_reached_cpu_s": None,
              "diverged": None}
    clock = {"cpu": time.process_time(), "wall": time.monotonic(), "excluded": 0.0}
    last = {}

    def on_step(gan, phase, step):
        spent = time.process_time() - clock["cpu"] - clock["excluded"]
        if phase.scale != top or phase.kind != "stable":
            return False
        if record["top_reached_cpu_s"] is None:
            record["top_reached_cpu_s"] = round(spent, 2)
            while marks and marks[0] <= spent and len(marks) > 1:
                marks.pop(0)  # passed while growing: nothing at the finest scale to score
        if spent < marks[0]:
            return False
        before = time.process_time()
        metrics, last["clips"], last["ms"] = _score(gan, scorer, top)
        record["points"].append({"mark": float(marks.pop(0)), "cpu_s": round(spent, 2),
                                 "wall_s": round(time.monotonic() - clock["wall"], 2),
                                 "step": int(step), "ema": metrics})
        clock["excluded"] += time.process_time() - before
        if progress:
            fd = metrics["fd_ratio"] if metrics else float("nan")
            print(f"  {arm.name} seed {seed}: {spent:5.0f} CPU-s, step {step}, "
                  f"FD / floor {fd:.3g}", flush=True)
        return not marks

    try:
        history = training.train(data_dir, run_dir, preset=_preset(arm, top + 1), seed=seed,
                                 progress=False, keep_checkpoints=1, on_step=on_step)
        record["steps"] = int(history["step"][-1])
    except training.TrainingDiverged as error:
        record["diverged"] = {"step": error.step, "scale": error.scale}
        record["steps"] = int(error.step)
    record["generate_ms_per_clip"] = round(last.get("ms", float("nan")), 2)
    if clips_dir is not None and "clips" in last:
        rate = scale_sample_rate(top, top + 1, int(manifest["sample_rate"]))
        for i, clip in enumerate(last["clips"][:_CLIPS_KEPT]):
            audio.save_audio(Path(clips_dir) / f"{arm.name}_{i}.wav", clip, rate)
    return record


def run_representation_study(data_dir, out_dir, runs_dir, arms: Sequence[StudyArm] = ARMS,
                             seeds: Sequence[int] = (0, 1, 2), budget_cpu_s: float = 400.0,
                             mark_cpu_s: float = 50.0, command: str | None = None,
                             progress: bool = True) -> dict[str, Any]:
    """Every arm for every seed (finished runs skipped), then :func:`summarize_representations`.

    Writes ``OUT/runs/ARM_seedS.json``, ``OUT/clips/ARM_i.wav`` (first seed)
    and ``OUT/representations.json``.

    Returns:
        The summary with ``meta`` and ``runs`` (the records; not in the JSON file).
    """
    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    fingerprint = data.dataset_fingerprint(data.read_manifest(data_dir))
    start, runs = time.monotonic(), []
    for arm in arms:
        for seed in seeds:
            path = out_dir / "runs" / f"{arm.name}_seed{seed}.json"
            saved = json.loads(path.read_text()) if path.is_file() else None
            if (saved is None or saved["arm"] != arm.to_dict()
                    or saved["budget_cpu_s"] != budget_cpu_s
                    or saved["dataset_fingerprint"] != fingerprint):
                if progress:
                    print(f"{arm.name} seed {seed}: {arm.description}", flush=True)
                run_dir = runs_dir / f"{arm.name}_seed{seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                saved = run_representation_arm(
                    data_dir, run_dir, arm, seed, budget_cpu_s, mark_cpu_s,
                    clips_dir=out_dir / "clips" if seed == seeds[0] else None,
                    progress=progress)
                shutil.rmtree(run_dir, ignore_errors=True)
                files.write_json(path, saved)
            runs.append(saved)
    summary = summarize_representations(runs)
    summary["meta"] = {"command": command, "machine": machine_description(),
                       "budget_cpu_s": budget_cpu_s, "mark_cpu_s": mark_cpu_s,
                       "seeds": list(seeds), "growth_stable_steps": list(GROWTH_STABLE_STEPS),
                       "growth_fade_steps": list(GROWTH_FADE_STEPS),
                       "date": time.strftime("%Y-%m-%d"),
                       "this_invocation_wall_s": round(time.monotonic() - start, 1)}
    files.write_json(out_dir / SUMMARY_FILE_NAME, summary)
    summary["runs"] = runs
    return summary


_METRICS = ("fd_ratio", "is_ratio", "ndb_over_k", "flatness_ratio")


def _final(run: dict, metric: str):
    points = [p for p in run["points"] if p["ema"] is not None]
    if not points or points[-1]["mark"] != run["budget_cpu_s"]:
        return None  # diverged or stopped before the budget: no final score
    return points[-1]["ema"][metric]


def summarize_representations(runs: Sequence[dict]) -> dict[str, Any]:
    """Per arm: final finest-scale metrics over seeds, steps, CPU-seconds to reach the
    finest scale, and each metric's difference against the first arm (bootstrap CI,
    permutation p; :func:`ablation.compare_groups`)."""
    arms: dict[str, list] = {}
    for run in runs:
        arms.setdefault(run["arm"]["name"], []).append(run)
    baseline = next(iter(arms))
    out = {}
    for name, seeds in arms.items():
        entry = {"description": seeds[0]["arm"]["description"], "seeds": len(seeds),
                 "steps": seed_spread([r["steps"] for r in seeds]),
                 "top_reached_cpu_s": seed_spread([r["top_reached_cpu_s"] for r in seeds]),
                 "generate_ms_per_clip": seed_spread([r["generate_ms_per_clip"] for r in seeds]),
                 "diverged": sum(r["diverged"] is not None for r in seeds)}
        for metric in _METRICS:
            values = [_final(r, metric) for r in seeds]
            entry[metric] = seed_spread(values)
            if name != baseline:
                entry[f"{metric}_vs_{baseline}"] = ablation.compare_groups(
                    [_final(r, metric) for r in arms[baseline]], values)
        out[name] = entry
    return {"baseline": baseline, "arms": out}


def format_representation_table(summary: dict[str, Any],
                                arms: Sequence[str] | None = None) -> str:
    """The summary as text (mean ± std over seeds), each column as wide as its widest cell
    (within the book's 76 columns for the committed studies).

    Args:
        summary: :func:`summarize_representations` output (or the JSON file).
        arms: Names of the rows, in order (default: every arm).

    Notebook: chapters/08_which_representation.ipynb
    """
    cell = format_mean_std
    header = ["arm", "steps", "top at", "FD/floor", "IS/real", "NDB/K", "flat/real"]
    rows = []
    for name in summary["arms"] if arms is None else arms:
        arm = summary["arms"][name]
        rows.append([name, f"{arm['steps']['mean']:.0f}",
                     f"{arm['top_reached_cpu_s']['mean']:.0f}s", cell(arm["fd_ratio"], 1),
                     cell(arm["is_ratio"], 2), cell(arm["ndb_over_k"], 2),
                     cell(arm["flatness_ratio"], 2)])
    widths = [max(len(row[j]) for row in [header] + rows) for j in range(len(header))]

    def line(row):
        return " ".join([row[0].ljust(widths[0])]
                        + [text.rjust(w) for text, w in zip(row[1:], widths[1:])])

    lines = [line(header), "-" * len(line(header))]
    lines += [line(row) for row in rows]
    return "\n".join(lines)
