"""Tests of pggan_lib.profiling and training.choose_strategy.

Counting and estimating are checked against arithmetic done here by hand;
the benchmark runs the ``tiny`` preset on 3 scales of 64-sample clips
(16, 32, 64 samples) for 2 timed steps, seconds in all. Its timings are only
checked for consistency, never against a speed (DESIGN: speed is measured by
benchmarks, not by timed tests).
"""

import dataclasses
import math
import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import config, models, profiling, training  # noqa: E402

TINY = config.get_preset("tiny")


def tiny_spec(num_scales=3, clip_samples=64):
    manifest = {"num_scales": num_scales, "clip_samples": clip_samples, "class_names": ["a"]}
    return training.model_spec_for(TINY, manifest)


# ------------------------------------------------------------------ counting
def test_step_flops_composes_forward_counts():
    spec = tiny_spec()
    forward = models.count_flops(spec, 2)
    g, d = forward["generator"], forward["critic"]
    assert (g, d) == (110_912, 111_696)
    # Critic update G + 6D + 6D (penalty), generator update 3G + 2D, per example.
    assert profiling.step_flops(spec, 2, batch=4, n_critic=1) == 4 * (g + 12 * d + 3 * g + 2 * d)
    assert profiling.step_flops(spec, 2, batch=4, n_critic=1) == 8_029_568.0
    # Without the penalty, two critic updates per step.
    assert profiling.step_flops(spec, 2, batch=4, n_critic=2, penalty=False) == \
        4 * (2 * (g + 6 * d) + 3 * g + 2 * d)


def test_run_flops_sums_the_schedule():
    spec = tiny_spec()
    expected_total, expected_per_scale, steps, clips = 0, [0, 0, 0], 0, 0
    # tiny: 4 stable steps at scale 0, then 4 fade + 4 stable at scales 1 and 2; batch 4.
    for phase in training.make_schedule(TINY, 3):
        forward = models.count_flops(spec, phase.scale)
        g, d = forward["generator"], forward["critic"]
        flops = phase.steps * phase.batch_size * (g + 12 * d + 3 * g + 2 * d)
        expected_total += flops
        expected_per_scale[phase.scale] += flops
        steps += phase.steps
        clips += phase.steps * phase.batch_size
    result = profiling.run_flops("tiny", num_scales=3, clip_samples=64)
    assert result["total"] == expected_total
    assert result["per_scale"] == expected_per_scale
    assert sum(result["per_scale"]) == result["total"]
    assert (result["steps"], result["clips"]) == (steps, clips) == (20, 80)
    # The report's loss has no gradient penalty: fewer FLOPs.
    assert profiling.run_flops("tiny", 3, 64, loss="report")["total"] < result["total"]


def test_schedule_flops_takes_phases_or_config_dicts_and_a_partial_schedule():
    spec = tiny_spec()
    phases = training.make_schedule(TINY, 3)
    whole = profiling.schedule_flops(spec, phases)
    assert whole == profiling.run_flops("tiny", num_scales=3, clip_samples=64)
    as_dicts = [dataclasses.asdict(phase) for phase in phases]  # config.json's form
    assert profiling.schedule_flops(spec, as_dicts) == whole
    # The part of a run that was trained: only the first phase, scale 0.
    first = profiling.schedule_flops(spec, as_dicts[:1])
    assert first["per_scale"] == [whole["per_scale"][0], 0.0, 0.0]
    assert first["steps"] == phases[0].steps


def test_run_flops_costs_a_preset_at_its_own_clip_length():
    colab = config.get_preset("colab")
    assert profiling.run_flops(colab)["total"] == \
        profiling.run_flops(colab, clip_samples=colab.min_clip_samples)["total"]
    assert profiling.run_flops("quick")["total"] == \
        profiling.run_flops("quick", clip_samples=config.DEFAULT_CLIP_SAMPLES)["total"]


# ------------------------------------------------------------------ estimating
def test_estimate_run_hours_is_flops_over_rate():
    total = profiling.run_flops("tiny", 3, 64)["total"]
    hours = profiling.estimate_run_hours("tiny", 1e6, num_scales=3, clip_samples=64)
    assert hours == pytest.approx(total / 1e6 / 3600)
    assert profiling.estimate_run_hours("tiny", 2e6, 3, 64) == pytest.approx(hours / 2)


def test_expected_cost_table_divides_by_peak_times_utilisation():
    total = profiling.run_flops("tiny", 3, 64)["total"]
    rows = profiling.expected_cost_table("tiny", utilisations=(0.1, 0.5), num_scales=3,
                                         clip_samples=64)
    gpus = profiling.GPU_PEAK_TFLOPS
    assert len(rows) == sum(len(p) for p in gpus.values()) * 2
    for row in rows:
        peak = gpus[row["gpu"]][row["precision"]]
        assert row["peak_tflops"] == peak
        assert row["hours"] == pytest.approx(total / (peak * 1e12 * row["utilisation"]) / 3600)
    t4 = {(r["precision"], r["utilisation"]): r["hours"] for r in rows if r["gpu"] == "T4"}
    assert t4[("fp32", 0.1)] == pytest.approx(5 * t4[("fp32", 0.5)])
    assert t4[("fp32", 0.1)] == pytest.approx(65.0 / 8.1 * t4[("fp16_tensor", 0.1)])
    only_l4 = profiling.expected_cost_table("tiny", (0.3,), 3, 64, gpus=["L4"])
    assert [r["precision"] for r in only_l4] == ["fp32", "fp16_tensor"]


# ------------------------------------------------------------------ measuring
@pytest.fixture(scope="module")
def tiny_benchmark():
    assert TINY.min_clip_samples <= 64
    return profiling.benchmark_scales("tiny", num_scales=3, clip_samples=64, steps=2,
                                       matmul_size=256)


def test_format_benchmark_has_one_row_per_scale_with_its_values(tiny_benchmark):
    lines = profiling.format_benchmark(tiny_benchmark).splitlines()
    rows = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [0, 1, 2] * 2  # two tables, one row per scale each
    assert max(len(line) for line in lines) <= 76
    rows = rows[:3]
    for cells, row in zip(rows, tiny_benchmark["scales"]):
        assert int(cells[1]) == row["sample_rate"] and int(cells[2]) == row["batch"]
        assert float(cells[6]) == pytest.approx(row["step_s"] * 1e3, abs=0.05)
        assert float(cells[8]) == pytest.approx(row["clips_per_s"], abs=0.05)
    assert "x real time" in lines[-1]


def test_benchmark_scales_rows_are_consistent(tiny_benchmark):
    result = tiny_benchmark
    assert result["preset"] == "tiny" and result["precision"] == "float32"
    assert result["jit_compile"] is False and result["overrides"] == {}
    assert result["onednn"] == (os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0")
    assert result["device"].startswith("CPU: ") or "GPU" in result["device"] \
        or "NVIDIA" in result["device"]
    assert result["matmul_gflops"] > 0
    rows = result["scales"]
    assert [r["scale"] for r in rows] == [0, 1, 2]
    assert [r["samples"] for r in rows] == [16, 32, 64]
    assert [r["sample_rate"] for r in rows] == [4000, 8000, 16000]
    spec = tiny_spec()
    for row in rows:
        assert row["batch"] == 4
        assert row["step_s"] > 0 and row["trace_s"] > 0
        assert row["clips_per_s"] == pytest.approx(row["batch"] / row["step_s"])
        assert row["steps_per_s"] == pytest.approx(1 / row["step_s"])
        # Same clip length in seconds at every scale: 64 / 16000 s.
        assert row["realtime_factor"] == pytest.approx(row["clips_per_s"] * 64 / 16000)
        assert row["step_flops"] == profiling.step_flops(spec, row["scale"], 4, 1)
        assert row["model_gflops_per_s"] == pytest.approx(
            row["step_flops"] / row["step_s"] / 1e9)
        assert row["fraction_of_matmul"] == pytest.approx(
            row["model_gflops_per_s"] / result["matmul_gflops"])
        assert row["memory_mb"] > 0 and row["memory_kind"]
        assert row["g_params"] > 0 and row["d_params"] > 0
    assert rows[2]["g_params"] > rows[0]["g_params"]
    assert result["generation"]["realtime_factor"] > 0
    assert math.isfinite(result["peak_rss_mb"])


def test_benchmark_scales_restores_the_dtype_policy():
    import keras

    before = keras.config.dtype_policy().name
    assert before == "float32"
    result = profiling.benchmark_scales("tiny", num_scales=2, clip_samples=32, steps=1,
                                        scales=[1], matmul_size=256,
                                        overrides={"mixed_precision": "mixed_bfloat16"})
    assert result["precision"] == "mixed_bfloat16"
    assert result["overrides"] == {"mixed_precision": "mixed_bfloat16"}
    assert [r["scale"] for r in result["scales"]] == [1]
    assert result["scales"][0]["step_s"] > 0
    assert keras.config.dtype_policy().name == "float32"


def test_choose_strategy_is_one_device_here():
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        pytest.skip("an accelerator is attached")
    strategy = training.choose_strategy()
    assert strategy.num_replicas_in_sync == 1
    assert isinstance(strategy, tf.distribute.Strategy)
