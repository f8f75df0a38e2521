"""Tests of pggan_lib.ablation: grid, metrics, probes, NaN arms, verdicts."""

import json

import keras
import numpy as np
import pytest

from pggan_lib import ablation, models, training
from pggan_lib.ablation import Arm


# ------------------------------------------------------------------ the grid
def test_expand_grid_names_and_values():
    arms = ablation.expand_grid(("leaky", "report"), ("wgan-gp", "report"),
                                extra=(Arm("report", "report", "linear"),
                                       Arm("leaky", "wgan-gp")))  # duplicate: dropped
    assert [a.name for a in arms] == [
        "act-leaky_loss-wgan-gp", "act-leaky_loss-report", "act-report_loss-wgan-gp",
        "act-report_loss-report", "act-report_loss-report_out-linear"]
    assert [(a.activation, a.loss) for a in arms[:4]] == [
        ("leaky", "wgan-gp"), ("leaky", "report"), ("report", "wgan-gp"), ("report", "report")]
    assert arms[2].effective_critic_output == "report"
    assert arms[0].effective_critic_output == "linear"
    assert arms[4].effective_critic_output == "linear"


def test_default_arms_cover_the_full_grid():
    arms = ablation.default_arms()
    cells = {(a.activation, a.loss) for a in arms if a.critic_output is None}
    assert cells == {(a, l) for a in ("leaky", "linear", "report") for l in ("wgan-gp", "report")}
    assert len({a.name for a in arms}) == len(arms) == 7


def test_budget_trains_only_the_first_scales():
    budget = ablation.AblationBudget("t", stable_steps=(5, 6, 7), fade_steps=(2, 3))
    preset = budget.preset(scales=3, num_scales=7)
    assert preset.stable_steps == (5, 6, 7, 0, 0, 0, 0)
    assert preset.fade_steps == (0, 2, 3, 0, 0, 0, 0)
    schedule = training.make_schedule(preset, 7)
    assert [(p.scale, p.kind, p.steps) for p in schedule] == [
        (0, "stable", 5), (1, "fade", 2), (1, "stable", 6), (2, "fade", 3), (2, "stable", 7)]
    with pytest.raises(ValueError, match="scales must be in"):
        budget.preset(scales=8, num_scales=7)


# ------------------------------------------------------------------ metrics
def test_sign_bias_and_saturation_of_known_arrays():
    clips = np.array([[1.0, 1.0, -1.0, 1.0], [-0.5, -0.5, -0.5, 0.5]])
    bias = ablation.sign_bias(clips)
    assert bias["mean"] == pytest.approx(1.0 / 8)
    assert bias["fraction_positive"] == pytest.approx(4 / 8)
    # clip means 0.5 and -0.25 -> mean of |.| = 0.375
    assert bias["mean_abs_clip_mean"] == pytest.approx(0.375)
    assert ablation.saturation_fraction(clips) == pytest.approx(0.5)  # the four +-1.0
    assert ablation.saturation_fraction(np.array([0.995, -1.0, 0.5, 0.0])) == pytest.approx(0.5)
    metrics = ablation.audio_bias_metrics(np.array([[np.nan, 1.0, 1.0, 1.0]]))
    assert metrics["finite"] == pytest.approx(0.75)
    assert metrics["saturated"] == pytest.approx(0.75)  # the NaN counts as 0


def test_audio_bias_metrics_counts_full_scale_as_saturated():
    metrics = ablation.audio_bias_metrics(np.array([[np.nan, 1.0, 1.0, 0.0]]))
    assert metrics["saturated"] == pytest.approx(0.5)


def test_spectral_distance_zero_for_identical_and_6db_for_double_amplitude():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((8, 256)).astype(np.float32) * 0.1
    assert ablation.spectral_distance(real, real) == pytest.approx(0.0, abs=1e-12)
    assert ablation.spectral_distance(2 * real, real) == pytest.approx(20 * np.log10(2), rel=1e-6)
    tone = np.sin(2 * np.pi * 0.1 * np.arange(256))[None].repeat(8, 0)
    assert ablation.spectral_distance(tone, real) > 5.0
    with pytest.raises(ValueError, match="clip lengths differ"):
        ablation.spectral_distance(real, real[:, :128])


# ------------------------------------------------------------------ probes
def _tiny_spec(activation="report"):
    return models.ModelSpec(num_scales=2, clip_samples=64, latent_dim=4, channels=(4, 4),
                            kernel_size=3, activation=activation, minibatch_group_size=2,
                            phase_shuffle=0, fir_taps=9)


@pytest.mark.parametrize("activation", ["report", "leaky"])
def test_probes_follow_the_models_forward_pass(activation):
    keras.utils.set_random_seed(1)
    spec = _tiny_spec(activation)
    generator, critic = models.build_generator(spec), models.build_critic(spec)
    for model in (generator, critic):
        model.set_scale(1)
        model.set_alpha(1.0)
    z = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    records, wave = ablation.probe_generator(generator, z)
    np.testing.assert_allclose(wave, keras.ops.convert_to_numpy(generator(z)), atol=1e-5)
    assert set(records) == {"g0", "g1", "output"}
    assert records["output"]["max_abs"] == pytest.approx(np.abs(wave).max(), rel=1e-5)
    assert 0 < records["g1"]["mean_abs"] <= records["g1"]["max_abs"]
    c_records, scores = ablation.probe_critic(critic, wave)
    np.testing.assert_allclose(scores, keras.ops.convert_to_numpy(critic(wave)), atol=1e-5)
    assert set(c_records) == {"from_wave", "d1", "final", "score"}


def test_loss_output_gradients_match_the_derivation():
    grads = ablation.loss_output_gradients([0.0, 1.0], [1.0, 0.0])  # s = +1, then s = -1
    report, wgan = grads["report"], grads["wgan-gp"]
    np.testing.assert_allclose(report["critic_d_real"], [1.0001, -0.9999], rtol=1e-6)
    np.testing.assert_allclose(report["critic_d_fake"], [1.000999, -0.999001], rtol=1e-6)
    np.testing.assert_allclose(report["generator_d_fake"], [2.0001, -1.9999], rtol=1e-6)
    np.testing.assert_allclose(wgan["critic_d_real"], [-1, -1], rtol=1e-6)
    np.testing.assert_allclose(wgan["critic_d_fake"], [1, 1], rtol=1e-6)
    np.testing.assert_allclose(wgan["generator_d_fake"], [-1, -1], rtol=1e-6)


def test_critic_step_effect_restores_weights_and_wgan_step_lowers_the_gap():
    keras.utils.set_random_seed(2)
    spec = _tiny_spec("leaky")
    spec = models.ModelSpec(**{**spec.to_dict(), "critic_output_activation": "linear"})
    critic = models.build_critic(spec)
    critic.set_scale(1)
    before = [v.numpy().copy() for v in critic.variables]
    rng = np.random.default_rng(3)
    real = rng.standard_normal((4, 64, 1)).astype(np.float32) * 0.3
    fake = rng.standard_normal((4, 64, 1)).astype(np.float32)
    effect = ablation.critic_step_effect(critic, real, fake, "wgan-gp", learning_rate=1e-3)
    for v, b in zip(critic.variables, before):
        np.testing.assert_array_equal(v.numpy(), b)
    # WGAN's critic step lowers D(G(z)) - D(x) (on average over the batch).
    assert np.mean(effect["gap_after"] - effect["gap_before"]) < 0


# ------------------------------------------------------------------ NaN arms
def test_a_diverging_arm_is_recorded_and_the_grid_goes_on(tmp_path, tiny_dataset):
    budget = ablation.AblationBudget("nan", base_preset="tiny", stable_steps=(3, 3),
                                     fade_steps=(2,), probe_every=2, num_probe_clips=4,
                                     learning_rate=1e30)
    arms = [Arm("linear", "wgan-gp"), Arm("report", "report")]
    results = ablation.run_grid(tiny_dataset, tmp_path / "out", tmp_path / "runs", arms=arms,
                                seeds=[0], budget=budget, scales=2, progress=False,
                                figures=False)
    assert [r["arm"] for r in results["runs"]] == [a.name for a in arms]
    first = results["runs"][0]
    assert first["diverged"] is True and first["diverged_step"] >= 1
    assert first["steps"] == first["diverged_step"]
    assert results["summary"][arms[0].name]["diverged"] == 1
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["meta"]["arms"] == [a.name for a in arms]
    assert [(r["arm"], r["seed"], r["diverged"]) for r in stored["runs"]] == [
        (arms[0].name, 0, True), (arms[1].name, 0, results["runs"][1]["diverged"])]
    assert stored["runs"][0]["activation"] == "linear" and stored["runs"][0]["metrics"] == {}
    # A second call finds both runs and trains nothing.
    again = ablation.run_grid(tiny_dataset, tmp_path / "out", tmp_path / "runs", arms=arms,
                              seeds=[0], budget=budget, scales=2, progress=False, figures=False)
    assert len(again["runs"]) == 2


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """A 2-scale dataset of noisy tones in two classes (seconds to build)."""
    from pggan_lib import audio, data

    root = tmp_path_factory.mktemp("ablation_data")
    rng = np.random.default_rng(0)
    for cls, freq in (("low", 110.0), ("high", 440.0)):
        for i in range(3):
            t = np.arange(16000 * 2) / 16000
            x = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.1 * i) * t) + 0.01 * rng.standard_normal(t.size)
            audio.save_audio(root / "src" / cls / f"{cls}{i}.wav", x.astype(np.float32), 16000)
    data.build_dataset(root / "src", root / "ds", clip_samples=512, num_scales=2,
                       test_fraction=0.34, progress=False)
    return root / "ds"


# ------------------------------------------------------------------ verdicts
def _fake_run(arm, seed, clip_mean, saturated, diverged=False, deltas=(3, 2, 1),
              distances=(30, 20, 10), widened=(1.0, 1.0)):
    steps = [10, 20, 30]
    curve = np.interp(np.arange(1, 31), steps, deltas)
    probes = [{"step": s, "scale": 2, "spectral_distance": d,
               "generator": {"g2": {"mean_abs": 1.0, "max_abs": 5.0 + seed}},
               "audio": {"mean": clip_mean, "fraction_positive": 0.5,
                         "mean_abs_clip_mean": clip_mean, "saturated": saturated}}
              for s, d in zip(steps, distances)]
    return {"arm": arm.name, "activation": arm.activation, "loss": arm.loss,
            "critic_output": arm.effective_critic_output, "label": arm.label, "seed": seed,
            "diverged": diverged, "diverged_step": 15 if diverged else None, "steps": 30,
            "zero_gap_steps": 0,
            "history": {"step": list(range(1, 31)), "delta": list(curve),
                        "d_real": [0.0] * 30, "d_fake": list(curve)},
            "probes": probes, "final": probes[-1],
            "step_effect": {"report": {"ties": 0,
                                       "fake_above": {"count": 4, "fraction_widened": widened[0],
                                                      "mean_abs_gap_change": 0.01,
                                                      "mean_abs_level_change": 1.0},
                                       "fake_below": {"count": 4, "fraction_widened": widened[1],
                                                      "mean_abs_gap_change": 0.01,
                                                      "mean_abs_level_change": 1.0}}}}


def test_verdicts_on_constructed_results():
    runs = []
    for seed in range(3):
        for loss in ("wgan-gp", "report"):
            trend = dict(deltas=(3 + seed, 2 + seed, 1 + seed),
                         distances=(30 + seed, 20 + seed, 10 + seed))
            runs.append(_fake_run(Arm("leaky", loss), seed, 0.5 + 0.01 * seed, 0.3, **trend))
            runs.append(_fake_run(Arm("report", loss), seed, 0.05 + 0.01 * seed, 0.0, **trend))
            runs.append(_fake_run(Arm("linear", loss), seed, 0.1, 0.0, diverged=seed == 0,
                                  **trend))
    verdicts = {v["claim"]: v for v in ablation.compute_verdicts(runs)}
    assert verdicts["a"]["verdict"] == "reproduced"
    assert verdicts["a"]["numbers"]["report_level_over_gap"]["mean"] == pytest.approx(100.0)
    assert verdicts["b"]["verdict"] == "partly"
    assert verdicts["c"]["verdict"] == "reproduced"
    assert verdicts["d"]["verdict"] == "reproduced"
    assert verdicts["d"]["numbers"]["linear"]["diverged"] == 2
    assert verdicts["e"]["verdict"] == "reproduced"  # Delta and distance fall together

    # Bias not separated, no NaN anywhere, Delta rising while distance falls, critic
    # step narrowing: every claim fails.
    runs = []
    for seed in range(3):
        for loss in ("wgan-gp", "report"):
            for act in ("leaky", "report", "linear"):
                runs.append(_fake_run(Arm(act, loss), seed, 0.1 + 0.05 * seed, 0.0,
                                      deltas=(1, 2, 3 + seed), distances=(30, 20, 10 - seed),
                                      widened=(0.0, 1.0)))
    verdicts = {v["claim"]: v for v in ablation.compute_verdicts(runs)}
    assert list(verdicts) == list(ablation.CLAIM_RULES)   # every claim has its printed rule
    assert verdicts["a"]["verdict"] == "partly"
    assert verdicts["c"]["verdict"] == "not reproduced"
    assert verdicts["d"]["verdict"] == "not reproduced"
    assert verdicts["e"]["verdict"] == "not reproduced"


# ------------------------------------------------------------------ scored grids
def test_compare_groups_exact_permutation_and_bootstrap():
    separated = ablation.compare_groups([1.0, 2.0, 3.0], [11.0, 12.0, 13.0])
    assert separated["difference"] == pytest.approx(10.0)
    # 3 vs 3: 20 splits, the observed one and its mirror are the most extreme.
    assert separated["p"] == pytest.approx(2 / 20)
    low, high = separated["ci95"]
    assert 8.0 <= low < 10.0 < high <= 12.0   # resampled means stay within the groups' ranges
    same = ablation.compare_groups([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert same["difference"] == pytest.approx(0.0) and same["p"] == pytest.approx(1.0)
    empty = ablation.compare_groups([None, float("nan")], [1.0])
    assert empty["difference"] is None and empty["n"] == [0, 1]


def _scored(run, fd_values, is_ratio, floor=2.0):
    """Give a fake run scored probes at its last scale (FD falling as fd_values)."""
    for probe, fd in zip(run["probes"], fd_values):
        probe["quality"] = {"frechet_distance": fd, "fd_ratio": fd / floor,
                            "inception_score": is_ratio, "is_ratio": is_ratio,
                            "flatness_ratio": 1.0}
    run["final"] = run["probes"][-1]
    run["metrics"] = {"2": run["probes"][-1]["quality"]}
    return run


def test_scored_verdicts_quality_table_and_extrapolation():
    runs = []
    for seed in range(3):
        runs.append(_scored(_fake_run(Arm("leaky", "wgan-gp"), seed, 0.5, 0.0,
                                      deltas=(3, 2, 1)),
                            (2.0 + 64, 2.0 + 32, 2.0 + 16), 0.5 + 0.01 * seed))
        runs.append(_scored(_fake_run(Arm("report", "report"), seed, 0.1, 0.0,
                                      deltas=(3, 2, 1)),
                            (2.0 + 80, 2.0 + 40, 2.0 + 20), 0.8 + 0.01 * seed))
    verdicts = {v["claim"]: v for v in ablation.compute_verdicts(runs)}
    assert verdicts["e"]["numbers"]["measure"] == "FD"
    assert verdicts["f"]["verdict"] == "reproduced"   # IS ratio 0.8 against 0.5
    assert verdicts["f"]["numbers"]["report_minus_baseline"]["difference"] == pytest.approx(0.3)
    rows = {r["arm"]: r for r in ablation.quality_table(runs)}
    base = rows[ablation.BASELINE_ARM]
    assert base["fd_ratio"]["mean"] == pytest.approx(9.0)   # (2 + 16) / 2
    assert rows[ablation.REPORT_ARM]["fd_ratio_vs_baseline"]["difference"] == pytest.approx(2.0)
    assert "0.10" in ablation.format_quality_table(list(rows.values()))
    # The fit is the least-squares line through log(FD - floor) against log(step).
    fits = ablation.steps_to_reach(runs, target_ratio=3.0)
    assert len(fits) == 3 and fits[0]["fd_ratio"] == pytest.approx(9.0)
    slope = np.polyfit(np.log([10, 20, 30]), np.log([64, 32, 16]), 1)[0]
    assert fits[0]["fit"]["slope"] == pytest.approx(slope)
    assert fits[0]["fit"]["steps"] > 30 and not fits[0]["fit"]["reached"]

    # IS no higher under the report's changes: not reproduced.
    for run in runs:
        run["metrics"]["2"]["is_ratio"] = 0.5
    verdicts = {v["claim"]: v for v in ablation.compute_verdicts(runs)}
    assert verdicts["f"]["verdict"] == "not reproduced"


def test_budget_changes_reach_the_preset():
    budget = ablation.BUDGETS["learn"]
    preset = budget.preset(2, 7)
    assert preset.output_skips is False and budget.score_quality
    assert preset.stable_steps[:3] == (800, 600, 0) and preset.fade_steps[:3] == (0, 200, 0)


def test_a_scored_run_records_metrics_by_scale(tmp_path, tiny_dataset):
    budget = ablation.AblationBudget("scored", base_preset="tiny", stable_steps=(3, 3),
                                     fade_steps=(2,), probe_every=4, num_probe_clips=4,
                                     score_quality=True)
    run = ablation.run_arm(tiny_dataset, tmp_path / "run", Arm("leaky", "wgan-gp"), 0, budget,
                           scales=2)
    assert set(run["metrics"]) == {"0", "1"}
    from pggan_lib import study

    for scale, quality in run["metrics"].items():
        real = study.Scorer(tiny_dataset, int(scale), n=10 ** 9, seed=0).real  # the floor
        assert quality["fd_ratio"] == pytest.approx(quality["frechet_distance"]
                                                    / real["frechet_distance"])
        assert quality["is_ratio"] == pytest.approx(quality["inception_score"]
                                                    / real["inception_score"])
    # The last probe of each scale is the one kept.
    last = [p for p in run["probes"] if p["scale"] == 1][-1]
    assert run["metrics"]["1"] == last["quality"]
    assert all("quality" in p for p in run["probes"])


def test_verdict_changes_and_quality_figure():
    before = [{"claim": "c", "statement": "s", "verdict": "reproduced"},
              {"claim": "d", "statement": "t", "verdict": "partly"}]
    after = [{"claim": "c", "statement": "s", "verdict": "not reproduced"},
             {"claim": "d", "statement": "t", "verdict": "partly"},
             {"claim": "f", "statement": "u", "verdict": "reproduced"}]
    assert ablation.verdict_changes(before, after) == [
        {"claim": "c", "statement": "s", "before": "reproduced", "after": "not reproduced"}]
    runs = [_fake_run(Arm("leaky", "wgan-gp"), seed, 0.5, 0.0) for seed in range(2)]
    results = {"runs": runs, "summary": ablation.summarize(runs)}
    assert ablation.figure_quality(results) is None   # nothing scored
    for seed, run in enumerate(runs):
        _scored(run, (10.0 + seed, 8.0, 6.0), 0.5)
    fig = ablation.figure_quality(results)
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [10, 20, 30]
    assert list(line.get_ydata()) == pytest.approx([5.25, 4.0, 3.0])   # seed mean of FD / 2


def test_step_effects_that_overflow_are_left_out_and_counted():
    effect = {"gap_before": np.array([1.0, 1.0, -1.0, 0.0]),
              "gap_after": np.array([2.0, np.nan, -0.5, 0.0]),
              "level_before": np.zeros(4), "level_after": np.array([1.0, np.inf, 1.0, 0.0])}
    summary = ablation._summarize_step_effect(effect)
    assert summary["non_finite"] == 1 and summary["ties"] == 1
    assert summary["fake_above"]["count"] == 1 and summary["fake_above"]["fraction_widened"] == 1.0
    assert summary["fake_below"]["fraction_widened"] == 0.0   # |gap| 1 -> 0.5: narrowed
    # A grid summarised before: a side with a count and no mean change was all inf/NaN.
    runs = [_fake_run(Arm("report", "report"), seed, 0.1, 0.0) for seed in range(2)]
    runs[1]["step_effect"]["report"]["fake_below"].update(mean_abs_gap_change=None,
                                                          fraction_widened=0.0)
    verdict = ablation._verdict_loss_widens_gap(runs)
    assert verdict["numbers"]["non_finite_examples"] == 4
    assert verdict["numbers"]["report"]["fake_below"]["values"] == [1.0]   # the NaN side is out
    assert "4 examples whose critic outputs overflowed" in verdict["evidence"]
