"""Quality per CPU-second: train one recipe for a fixed CPU budget, measure it as it goes.

A GAN recipe is judged here by the curve of its quality against the CPU time
it was given, not by its last number after an unequal budget. One study run
(:func:`run_study_arm`) trains an :class:`StudyArm` (a preset plus changes)
with :func:`training.train` on the coarsest scales, and at fixed points of
*training* CPU time (``time.process_time``, all threads; evaluation time is
left out) scores the EMA and the raw generator at the current scale against
the real test split: Fréchet distance, Inception Score, NDB/K and the
tonality measure (:func:`evaluation.spectral_flatness`). :func:`run_study`
runs arms x seeds, skips finished runs (a stopped study resumes) and writes
``OUT/runs/ARM_seedS.json`` and ``OUT/study.json`` (the summary table with
seed spread).

Notebook: chapters/05_training_on_gpu.ipynb
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pggan_lib import data, evaluation, files, representations, training
from pggan_lib.config import studied_preset
from pggan_lib.profiling import machine_description

__all__ = [
    "StudyArm",
    "Scorer",
    "power_law_reach",
    "DEFAULT_ARMS",
    "evaluation_points",
    "run_study_arm",
    "run_study",
    "summarize_study",
    "format_study_table",
    "budget_to_reach",
    "seed_spread",
    "format_mean_std",
    "ENDLESS_STEPS",
    "NO_GROWTH",
    "STUDY_FILE_NAME",
    "GROWTH_ARMS",
    "GROWTH_FILE_NAME",
    "run_growth_arm",
    "run_growth_study",
    "format_growth_table",
]

#: Summary file written by :func:`run_study`.
STUDY_FILE_NAME = "study.json"
#: Steps of the study's single stable phase: far more than any budget, so the
#: CPU budget, not the schedule, ends a run.
ENDLESS_STEPS = 10 ** 8


@dataclasses.dataclass(frozen=True)
class StudyArm:
    """One recipe of a study: a preset and the fields it changes.

    Attributes:
        name: Short unique name (file names, tables).
        lever: The question the arm answers (``"data"``, ``"ema"``, ...).
        description: One line for tables and figures.
        preset: Base preset name, as the committed studies measured it
            (``config.studied_preset``: skip outputs, He's heads).
        overrides: :class:`config.Preset` fields changed from the base.
    """

    name: str
    lever: str
    description: str
    preset: str = "reference"
    overrides: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As stored in a run's JSON (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


_AUGMENT = ("gain", "polarity", "shift", "cutout", "noise")
#: The reference preset as it was before this study (fixed clips, EMA 0.999,
#: learning rate 1e-3), pinned so that every arm keeps its meaning when the
#: preset takes the winners.
_OLD = {"data": "clips", "augment": (), "ema_decay": 0.999, "learning_rate": 1e-3}
_NEW = {"data": "windows", "augment": _AUGMENT, "ema_decay": 0.99, "learning_rate": 1e-3}

#: The levers studied at the coarsest scale, each against ``old_reference``.
DEFAULT_ARMS = (
    StudyArm("old_reference", "baseline", "reference preset before the study: fixed clips, "
             "EMA 0.999", overrides=dict(_OLD)),
    StudyArm("windows", "data", "random windows of whole files",
             overrides={**_OLD, "data": "windows"}),
    StudyArm("windows_aug", "data", "random windows + DiffAugment (5 transforms)",
             overrides={**_OLD, "data": "windows", "augment": _AUGMENT}),
    StudyArm("ema_0.99", "ema", "fixed clips, EMA 0.99 (half-life 69 steps)",
             overrides={**_OLD, "ema_decay": 0.99}),
    StudyArm("new", "combined", "windows + augment + EMA 0.99", overrides=dict(_NEW)),
    StudyArm("new_lr2e-3", "optimiser", "new, learning rate 2e-3",
             overrides={**_NEW, "learning_rate": 2e-3}),
    StudyArm("new_ncritic2", "optimiser", "new, 2 critic updates per generator update",
             overrides={**_NEW, "n_critic": 2}),
    StudyArm("new_gp1", "penalty", "new, gradient-penalty weight 1",
             overrides={**_NEW, "gp_weight": 1.0}),
    StudyArm("new_wide_b32", "throughput", "new, 128 channels, batch 32",
             overrides={**_NEW, "channels": (128,), "batch_sizes": (32,)}),
    StudyArm("new_narrow_b8", "throughput", "new, 32 channels, batch 8",
             overrides={**_NEW, "channels": (32,), "batch_sizes": (8,)}),
    StudyArm("new_betas", "optimiser", "new, Adam betas 0.5 / 0.9 (WGAN-GP, WaveGAN)",
             overrides={**_NEW, "beta_1": 0.5, "beta_2": 0.9}),
    StudyArm("new_r1", "penalty", "new, R1 on real clips (gamma 10) instead of WGAN-GP's",
             overrides={**_NEW, "penalty": "r1"}),
    StudyArm("new_kernel25", "receptive field", "new, kernels of 25 taps (WaveGAN's) not 9",
             overrides={**_NEW, "kernel_size": 25}),
    StudyArm("new_silent", "initialisation", "new, silent heads: the generator starts at zero",
             overrides={**_NEW, "silent_heads": True}),
)


#: The lever of a growth-study arm that trains the top scale alone (no schedule).
NO_GROWTH = "no growth"
#: Summary file written by :func:`run_growth_study`.
GROWTH_FILE_NAME = "growth.json"
#: The architecture lever, trained through several scales: a single-scale study
#: cannot show it, since the two generators differ only once the network grows.
GROWTH_ARMS = (
    StudyArm("old_recipe", "baseline", "the reference preset before the study (fixed "
             "clips, no augmentation, EMA 0.999, learning rate 1e-3), PGGAN's head",
             overrides={**_OLD, "output_skips": False}),
    StudyArm("pggan_head", "architecture", "PGGAN: the output is the newest scale's head",
             overrides={"output_skips": False}),
    StudyArm("skip", "architecture", "skip outputs: every scale's output upsampled and summed",
             overrides={"output_skips": True}),
    StudyArm("skip_quiet", "initialisation", "skip outputs, every head starting near the "
             "corpus's loudness (std 0.1, not He's 1)",
             overrides={"output_skips": True, "head_std": 0.1}),
    StudyArm("pggan_quiet", "initialisation", "PGGAN's head starting near the corpus's "
             "loudness (std 0.1, not He's 1)",
             overrides={"output_skips": False, "head_std": 0.1}),
    StudyArm("direct", NO_GROWTH, "no growing: the top scale trained alone for the grown "
             "arms' mean CPU time (WaveGAN's way)", overrides={"output_skips": True}),
)
#: The growth study's schedule, scales 0..3 (250 Hz to 2 kHz): the reference
#: preset's shape at about a fifth of its steps.
GROWTH_STABLE_STEPS = (600, 300, 200, 200)
GROWTH_FADE_STEPS = (0, 100, 100, 100)


def evaluation_points(budget_cpu_s: float, first_cpu_s: float) -> list[float]:
    """CPU-seconds at which a run is scored: doubling from ``first_cpu_s`` up to the budget.

    Example: ``evaluation_points(240, 30) == [30, 60, 120, 240]``.
    """
    if not 0 < first_cpu_s <= budget_cpu_s:
        raise ValueError(f"need 0 < first_cpu_s <= budget_cpu_s, got {first_cpu_s}, "
                         f"{budget_cpu_s}")
    points = []
    point = float(first_cpu_s)
    while point < budget_cpu_s:
        points.append(point)
        point *= 2.0
    return points + [float(budget_cpu_s)]


class Scorer:
    """Scores clips of one scale against the real test split (features cached).

    Args:
        data_dir: Dataset folder (its classifier of ``scale`` is loaded or trained).
        scale: Scale index.
        n: Real test clips used as the reference (and generated clips per score).
        seed: Seed of the latents and of NDB's k-means.

    Attributes:
        real: Metrics of the first ``n`` real test clips (the floors and ceilings).
    """

    def __init__(self, data_dir, scale, n, seed):
        self.scale, self.seed = scale, seed
        self.classifier = evaluation.load_or_train_classifiers(data_dir, [scale])[scale]
        self.train = data.load_clips(data_dir, "train", scale)[0]
        test = data.load_clips(data_dir, "test", scale)[0]
        self.n = min(int(n), len(test))
        self.cache: dict = {}
        self.real = self.metrics(test[:self.n])
        self.z = None

    def metrics(self, clips) -> dict[str, float]:
        """FD, IS, NDB/K and spectral flatness of ``clips`` ``(N, samples[, 1])``."""
        m = evaluation.evaluate_clips(self.classifier, clips, self.train, seed=self.seed,
                                      cache=self.cache)
        return {k: m[k] for k in ("frechet_distance", "inception_score", "ndb_over_k",
                                  "spectral_flatness")}

    def with_ratios(self, clips) -> dict[str, float]:
        """:meth:`metrics` plus ``fd_ratio`` (FD / real floor), ``is_ratio`` (IS / real IS)
        and ``flatness_ratio`` (flatness / real flatness)."""
        m = self.metrics(clips)
        real = self.real
        return {**m, "fd_ratio": m["frechet_distance"] / real["frechet_distance"],
                "is_ratio": m["inception_score"] / real["inception_score"],
                "flatness_ratio": m["spectral_flatness"] / real["spectral_flatness"]}

    def latents(self, latent_dim: int) -> np.ndarray:
        """The fixed latents every score of this scorer uses: ``(n, latent_dim)``."""
        if self.z is None:
            self.z = np.random.default_rng(self.seed + 11).standard_normal(
                (self.n, latent_dim)).astype(np.float32)
        return self.z

    def score(self, gan) -> dict[str, Any]:
        """:meth:`metrics` of the EMA and the raw generator of ``gan`` (None: non-finite)."""
        z = self.latents(gan.latent_dim)
        result = {}
        for name, generator in (("ema", gan.ema_generator), ("raw", gan.generator)):
            clips = representations.to_audio(generator.spec, generator(z, training=False),
                                             generator.current_scale)
            result[name] = self.metrics(clips) if np.all(np.isfinite(clips)) else None
        return result


def run_study_arm(data_dir, run_dir, arm: StudyArm, seed: int, budget_cpu_s: float,
                  first_cpu_s: float = 30.0, scale: int = 0, n: int = 135,
                  progress: bool = False) -> dict[str, Any]:
    """Train one arm at the coarsest scale for ``budget_cpu_s`` of CPU time, scoring it on the way.

    Args:
        data_dir: Dataset folder.
        run_dir: Scratch run folder (must not exist; checkpoints are not kept).
        arm: The recipe.
        seed: Seed of weights, latents and data.
        budget_cpu_s: Training CPU-seconds (``time.process_time``; evaluation excluded).
        first_cpu_s: First scoring point; then doubling (:func:`evaluation_points`).
        scale: Only 0 is supported: the study trains the coarsest scale, whose
            phase needs no growth schedule.
        n: Generated (and real test) clips per score.
        progress: Print a line per scoring point.

    Returns:
        Dict: ``arm``, ``seed``, ``budget_cpu_s``, ``dataset_fingerprint``, ``real`` (the real test
        clips' metrics: the floor and ceiling), ``points`` (list of ``cpu_s``,
        ``wall_s``, ``step``, ``ema``, ``raw``), ``steps_per_cpu_s``, ``diverged``.
    """
    if scale != 0:
        raise ValueError("run_study_arm trains the coarsest scale only (scale=0)")
    scorer = Scorer(data_dir, scale, n, seed)
    preset = studied_preset(arm.preset).replace(
        **arm.overrides, stable_steps=ENDLESS_STEPS, checkpoint_every=ENDLESS_STEPS,
        log_every=50)
    points = evaluation_points(budget_cpu_s, first_cpu_s)
    record = {"arm": arm.to_dict(), "seed": int(seed), "budget_cpu_s": float(budget_cpu_s),
              "dataset_fingerprint": data.dataset_fingerprint(data.read_manifest(data_dir)),
              "scale": scale, "n": scorer.n, "real": scorer.real, "points": [],
              "diverged": None}
    clock = {"cpu": time.process_time(), "wall": time.monotonic(), "excluded": 0.0}

    def on_step(gan, phase, step):
        spent = time.process_time() - clock["cpu"] - clock["excluded"]
        if spent < points[len(record["points"])]:
            return False
        before = time.process_time()
        record["points"].append({"cpu_s": round(spent, 2),
                                 "wall_s": round(time.monotonic() - clock["wall"], 2),
                                 "step": int(step), **scorer.score(gan)})
        clock["excluded"] += time.process_time() - before
        if progress:
            last = record["points"][-1]
            fd = last["ema"]["frechet_distance"] if last["ema"] else float("nan")
            print(f"  {arm.name} seed {seed}: {spent:6.0f} CPU-s, step {step}, EMA FD {fd:.3g}",
                  flush=True)
        return len(record["points"]) == len(points)

    try:
        training.train(data_dir, run_dir, preset=preset, seed=seed, progress=False,
                       keep_checkpoints=1, on_step=on_step)
    except training.TrainingDiverged as error:
        record["diverged"] = {"step": error.step, "scale": error.scale}
    steps = record["points"][-1]["step"] if record["points"] else 0
    train_cpu = record["points"][-1]["cpu_s"] if record["points"] else 0.0
    record["steps_per_cpu_s"] = steps / train_cpu if train_cpu else None
    return record


def _arm_file(out_dir, arm_name, seed) -> Path:
    return Path(out_dir) / "runs" / f"{arm_name}_seed{seed}.json"


def run_study(data_dir, out_dir, runs_dir, arms: Sequence[StudyArm] = DEFAULT_ARMS,
              seeds: Sequence[int] = (0, 1), budget_cpu_s: float = 240.0,
              first_cpu_s: float = 30.0, command: str | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run every arm for every seed (finished runs are skipped), then summarise.

    Args:
        data_dir: Dataset folder.
        out_dir: Results folder: ``runs/*.json`` and ``study.json``
            (``plots.plot_study_curves`` draws the runs; ``pggan study`` saves it).
        runs_dir: Scratch folder for the training runs (deleted run by run).
        arms: The recipes.
        seeds: Seeds per arm.
        budget_cpu_s: Training CPU-seconds per run.
        first_cpu_s: First scoring point.
        command: The command line, stored in ``study.json``.
        progress: Print progress lines.

    Returns:
        The summary (:func:`summarize_study`) with ``meta`` (machine, command,
        wall time) and ``runs`` (every run's record; not in ``study.json``).
    """
    import shutil

    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    fingerprint = data.dataset_fingerprint(data.read_manifest(data_dir))
    for arm in arms:
        for seed in seeds:
            path = _arm_file(out_dir, arm.name, seed)
            if path.is_file():
                saved = json.loads(path.read_text())
                if (saved.get("budget_cpu_s") == budget_cpu_s and saved["arm"] == arm.to_dict()
                        and saved.get("dataset_fingerprint") == fingerprint):
                    continue
            run_dir = runs_dir / f"{arm.name}_seed{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            if progress:
                print(f"{arm.name} seed {seed}: {arm.description}", flush=True)
            record = run_study_arm(data_dir, run_dir, arm, seed, budget_cpu_s, first_cpu_s,
                                   progress=progress)
            shutil.rmtree(run_dir, ignore_errors=True)
            files.write_json(path, record)
    runs = [json.loads(_arm_file(out_dir, a.name, s).read_text()) for a in arms for s in seeds]
    summary = summarize_study(runs)
    summary["meta"] = {"command": command, "machine": machine_description(),
                       "budget_cpu_s": budget_cpu_s, "seeds": list(seeds),
                       "this_invocation_wall_s": round(time.monotonic() - start, 1),
                       "date": time.strftime("%Y-%m-%d")}
    summary["runs"] = runs
    files.write_json(out_dir / STUDY_FILE_NAME, {k: v for k, v in summary.items()
                                                     if k != "runs"})
    return summary


def seed_spread(values) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)),
            "min": float(np.min(values)), "max": float(np.max(values)), "n": len(values)}


def summarize_study(runs: Sequence[dict]) -> dict[str, Any]:
    """Per arm, at the final scoring point: FD ratio to the real floor, IS, tonality, with seed spread.

    The real floor is the real test clips' FD against the real training clips
    (sampling noise alone); ``fd_ratio`` = generated FD / that floor, and
    ``flatness_ratio`` = generated / real spectral flatness (1 = as tonal as the music).

    Returns:
        Dict ``arms``: name -> {``lever``, ``description``, ``seeds``, ``steps``,
        ``ema_fd``, ``ema_fd_ratio``, ``raw_fd``, ``ema_is``, ``ema_flatness_ratio``}
        (each a mean/std/min/max dict over seeds) and ``real`` (floor and ceiling).
    """
    arms: dict[str, Any] = {}
    for run in runs:
        arm = arms.setdefault(run["arm"]["name"], {
            "lever": run["arm"]["lever"], "description": run["arm"]["description"],
            "overrides": run["arm"]["overrides"], "_last": []})
        arm["_last"].append((run["points"][-1] if run["points"] else None, run["real"]))
    for arm in arms.values():
        last = arm.pop("_last")

        def values(source, key, relative_to=None):
            out = []
            for point, real in last:
                metrics = point and point[source]
                if metrics is None:
                    out.append(None)
                    continue
                value = metrics[key]
                out.append(value / real[relative_to] if relative_to else value)
            return seed_spread(out)

        arm.update(seeds=len(last), steps=seed_spread([p and p["step"] for p, _ in last]),
                   ema_fd=values("ema", "frechet_distance"),
                   ema_fd_ratio=values("ema", "frechet_distance", "frechet_distance"),
                   raw_fd=values("raw", "frechet_distance"),
                   ema_is=values("ema", "inception_score"),
                   ema_flatness_ratio=values("ema", "spectral_flatness", "spectral_flatness"))
    real = runs[0]["real"] if runs else None
    return {"arms": arms, "real": real}


def format_mean_std(stat: dict[str, float] | None, digits: int = 2) -> str:
    """``"mean±std"`` of a :func:`seed_spread` dict, ``"-"`` for None (a number longer
    than 8 characters in 2 significant digits, so that a runaway value keeps its
    column's width)."""
    def number(x):
        text = f"{x:.{digits}f}"
        return text if len(text) <= 8 else f"{x:.2g}"

    return "-" if stat is None else f"{number(stat['mean'])}±{number(stat['std'])}"


def format_study_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (mean ± std over seeds, at the budget).

    At most 76 characters wide: the arms' levers and descriptions are in
    ``summary["arms"][name]`` (the chapter lists them beside the table).

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    cell = format_mean_std
    header = (f"{'arm':<13} {'steps':>8} {'EMA FD':>9} {'FD/floor':>9} {'raw FD':>9} "
              f"{'EMA IS':>10} {'flat/real':>10}")
    lines = [header, "-" * len(header)]
    for name, arm in summary["arms"].items():
        lines.append(f"{name:<13} {cell(arm['steps'], 0):>8} {cell(arm['ema_fd'], 1):>9} "
                     f"{cell(arm['ema_fd_ratio'], 1):>9} {cell(arm['raw_fd'], 1):>9} "
                     f"{cell(arm['ema_is']):>10} {cell(arm['ema_flatness_ratio']):>10}")
    return "\n".join(lines)


def budget_to_reach(run: dict[str, Any], target_ratio: float, source: str = "ema",
                    key: str = "frechet_distance") -> dict[str, Any] | None:
    """Extrapolate a study run's curve to the CPU budget where ``key`` reaches ``target_ratio`` x real.

    Fits a power law to the excess over the real value, ``log(m - real) = a + b
    log(cpu_s)`` (least squares over the scoring points with ``m > real``), and
    solves ``m = target_ratio * real``. An extrapolation, not a promise: curves
    of GANs bend, so read it as the order of magnitude the measured trend implies.

    Args:
        run: One record of :func:`run_study_arm`.
        target_ratio: Wanted ``m / real`` (> 1), e.g. 3 for "FD at most 3x the floor".
        source: ``"ema"`` or ``"raw"``.
        key: Metric (lower is better).

    Returns:
        ``{"slope": b, "cpu_s": budget, "points": n, "reached": bool}`` (``cpu_s``
        None when the curve does not fall), or None with fewer than 2 usable points.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    real = run["real"][key]
    pairs = [(p["cpu_s"], p[source][key]) for p in run["points"]
             if p.get(source) and p["cpu_s"] > 0]
    return power_law_reach([c for c, _ in pairs], [m for _, m in pairs], real, target_ratio,
                           "cpu_s")


def power_law_reach(spent: Sequence[float], values: Sequence[float], real: float,
                    target_ratio: float, unit: str = "cpu_s") -> dict[str, Any] | None:
    """Extrapolate a falling curve ``values(spent)`` to where it reaches ``target_ratio * real``.

    Fits ``log(value - real) = a + b log(spent)`` over the points with
    ``value > real`` and solves for ``value = target_ratio * real``.

    Args:
        spent: The budget at each point (CPU-seconds, steps; > 0).
        values: The metric there (lower is better).
        real: The real floor of the metric.
        target_ratio: Wanted ``value / real`` (> 1).
        unit: Key under which the budget is returned.

    Returns:
        ``{"slope": b, unit: budget, "points": n, "reached": bool}`` (the budget
        None when the curve does not fall), or None with fewer than 2 usable points.
    """
    pairs = [(x, m) for x, m in zip(spent, values) if x > 0 and m > real]
    if len(pairs) < 2:
        return None
    x, y = np.log([c for c, _ in pairs]), np.log([m - real for _, m in pairs])
    slope, intercept = np.polyfit(x, y, 1)
    reached = values[-1] <= target_ratio * real
    budget = (float(np.exp((np.log((target_ratio - 1.0) * real) - intercept) / slope))
              if slope < 0 else None)
    return {"slope": float(slope), unit: budget, "points": len(pairs), "reached": bool(reached)}


def run_growth_arm(data_dir, run_dir, arm: StudyArm, seed: int,
                   stable_steps: Sequence[int] = GROWTH_STABLE_STEPS,
                   fade_steps: Sequence[int] = GROWTH_FADE_STEPS,
                   n: int | None = None, budget_cpu_s: float | None = None) -> dict[str, Any]:
    """Train one arm through several scales on a fixed schedule, then score every scale.

    The growing arms take the same steps, so their training CPU-seconds
    (``time.process_time``, evaluation excluded) are equal up to the
    architectures' own costs, which the record states. With ``budget_cpu_s``
    the arm does not grow: it trains the top scale alone until it has spent
    that much CPU time (the peer of a non-progressive GAN such as WaveGAN).

    Args:
        data_dir: Dataset folder.
        run_dir: Scratch run folder (must not exist).
        arm: The recipe.
        seed: Seed of weights, latents and data.
        stable_steps, fade_steps: Per-scale steps; the run grows up to scale
            ``len(stable_steps) - 1``.
        n: Clips per score (default: the test split's size).
        budget_cpu_s: Train only the top scale, for this many CPU-seconds.

    Returns:
        Dict: ``arm``, ``seed``, ``cpu_s``, ``wall_s``, ``steps``, ``top_scale``,
        ``dataset_fingerprint`` and ``scales``: {"k": {"real", "ema", "finest"}}
        with FD, IS, NDB/K and spectral flatness each (``ema``: the scale's own
        output; ``finest``: the top scale's clips downsampled to scale k).
    """
    manifest = data.read_manifest(data_dir)
    top = len(stable_steps) - 1
    pad = (0,) * (int(manifest["num_scales"]) - len(stable_steps))
    preset = studied_preset(arm.preset).replace(
        **arm.overrides, stable_steps=tuple(stable_steps) + pad,
        fade_steps=tuple(fade_steps) + pad, checkpoint_every=ENDLESS_STEPS, log_every=50)
    if budget_cpu_s is not None:  # the top scale alone, until the budget is spent
        preset = preset.single_scale(top, int(manifest["num_scales"]), ENDLESS_STEPS)
    cpu, wall = time.process_time(), time.monotonic()
    history = training.train(
        data_dir, run_dir, preset=preset, seed=seed, progress=False, keep_checkpoints=1,
        on_step=None if budget_cpu_s is None else
        lambda gan, phase, step: time.process_time() - cpu >= budget_cpu_s)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    metrics = evaluation.evaluate_run(run_dir, data_dir, n=n, use_ema=(True,), seed=seed,
                                      write=False)
    keys = ("frechet_distance", "inception_score", "ndb_over_k", "spectral_flatness")
    scales = {k: {source: {m: entry[source][m] for m in keys}
                  for source in ("real", "ema", "finest")}
              for k, entry in metrics["scales"].items()}
    return {"arm": arm.to_dict(), "seed": int(seed), "cpu_s": round(cpu, 1),
            "wall_s": round(wall, 1), "steps": int(history["step"][-1]),
            "top_scale": top, "n": metrics["n"],
            "stable_steps": list(stable_steps), "fade_steps": list(fade_steps),
            "dataset_fingerprint": data.dataset_fingerprint(manifest), "scales": scales}


def run_growth_study(data_dir, out_dir, runs_dir, arms: Sequence[StudyArm] = GROWTH_ARMS,
                     seeds: Sequence[int] = (0, 1), command: str | None = None,
                     progress: bool = True, **schedule) -> dict[str, Any]:
    """Every growth arm for every seed (finished runs skipped), then the summary.

    Writes ``OUT/growth/ARM_seedS.json`` and ``OUT/growth.json``: per arm and
    scale, the FD ratio to the real floor of the scale's own output (``ema``) and
    of the finest output taken down to it (``finest``), mean and spread over seeds.
    ``schedule`` (``stable_steps``, ``fade_steps``, ``n``) goes to :func:`run_growth_arm`.

    Returns:
        The summary, with ``runs`` (not written to ``growth.json``).
    """
    import shutil

    out_dir, runs_dir = Path(out_dir), Path(runs_dir)
    fingerprint = data.dataset_fingerprint(data.read_manifest(data_dir))
    start, runs = time.monotonic(), []
    for arm in sorted(arms, key=lambda a: a.lever == NO_GROWTH):  # grown arms first
        for seed in seeds:
            path = out_dir / "growth" / f"{arm.name}_seed{seed}.json"
            saved = json.loads(path.read_text()) if path.is_file() else None
            if (saved is None or saved["arm"] != arm.to_dict()
                    or saved["dataset_fingerprint"] != fingerprint):
                if progress:
                    print(f"growth {arm.name} seed {seed}: {arm.description}", flush=True)
                run_dir = runs_dir / f"growth_{arm.name}_seed{seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                grown = [r["cpu_s"] for r in runs
                         if r["seed"] == seed and r["arm"]["lever"] != NO_GROWTH]
                budget = float(np.mean(grown)) if arm.lever == NO_GROWTH else None
                if arm.lever == NO_GROWTH and not grown:
                    raise ValueError(f"arm {arm.name!r} needs a growing arm to match its "
                                     f"CPU time")
                saved = run_growth_arm(data_dir, run_dir, arm, seed, budget_cpu_s=budget,
                                       **schedule)
                shutil.rmtree(run_dir, ignore_errors=True)
                files.write_json(path, saved)
            runs.append(saved)
    summary = summarize_growth(runs)
    summary["meta"] = {"command": command, "machine": machine_description(),
                       "seeds": list(seeds), "date": time.strftime("%Y-%m-%d"),
                       "this_invocation_wall_s": round(time.monotonic() - start, 1)}
    files.write_json(out_dir / GROWTH_FILE_NAME, summary)
    summary["runs"] = runs
    return summary


def summarize_growth(runs: Sequence[dict]) -> dict[str, Any]:
    """Per arm: CPU-seconds, and per scale FD / floor and flatness / real of ``ema`` and ``finest``."""
    arms: dict[str, Any] = {}
    for run in runs:
        arms.setdefault(run["arm"]["name"], []).append(run)
    out = {}
    for name, seeds in arms.items():
        scales = {}
        for k in seeds[0]["scales"]:
            entry = {}
            for source in ("ema", "finest"):
                for key, metric in (("fd_ratio", "frechet_distance"),
                                    ("flatness_ratio", "spectral_flatness")):
                    entry[f"{source}_{key}"] = seed_spread(
                        [r["scales"][k][source][metric] / r["scales"][k]["real"][metric]
                         for r in seeds])
            scales[k] = entry
        out[name] = {"description": seeds[0]["arm"]["description"], "seeds": len(seeds),
                     "cpu_s": seed_spread([r["cpu_s"] for r in seeds]),
                     "steps": seeds[0]["steps"], "scales": scales}
    return {"arms": out}


def format_growth_table(summary: dict[str, Any]) -> str:
    """:func:`run_growth_study`'s summary as text: FD / floor per scale, mean ± std over seeds.

    ``own``: the scale's own output; ``finest``: the top scale's clips
    downsampled to it; ``flat/real``: spectral flatness of the finest clips
    taken down to the scale, over the real clips'. At most 76 characters wide.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    def cell(stat, digits=1):
        return format_mean_std(stat, digits)

    header = (f"{'arm':<11} {'scale':>5} {'CPU-s':>6} {'FD/floor own':>13} "
              f"{'FD/floor finest':>16} {'flat/real':>10}")
    lines = [header, "-" * len(header)]
    for name, arm in summary["arms"].items():
        for k, entry in arm["scales"].items():
            lines.append(f"{name:<11} {k:>5} {arm['cpu_s']['mean']:>6.0f} "
                         f"{cell(entry['ema_fd_ratio']):>13} "
                         f"{cell(entry['finest_fd_ratio']):>16} "
                         f"{cell(entry['finest_flatness_ratio'], 2):>10}")
    return "\n".join(lines)
