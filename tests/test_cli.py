"""Tests of the ``pggan train`` and ``pggan generate`` subcommands.

End to end on a tiny generated dataset (2 classes of tones, 3 scales, 256-sample
clips) with the ``tiny`` preset; error messages; lazy imports; a real SIGKILL.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pggan_lib import cli  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def trained_run(tone_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli_run") / "run"
    code = cli.main(["train", "--data", str(tone_dataset), "--out", str(run), "--preset", "tiny",
                     "--no-progress"])
    assert code == 0
    return run


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_help_is_understandable_and_does_not_import_tensorflow():
    script = ("import sys\nfrom pggan_lib import cli\n"
              "for cmd in ('train', 'generate'):\n"
              "    try:\n        cli.main([cmd, '--help'])\n"
              "    except SystemExit:\n        pass\n"
              "print('TF_LOADED', 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert "TF_LOADED False" in done.stdout
    for words in ("--preset", "quick", "--resume", "--clip-samples 65536", "tensorboard",
                  "--class", "--no-ema", "finest scale"):
        assert words in done.stdout, words


def test_path_errors_are_reported_before_tensorflow_loads(tmp_path):
    calls = [["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")],
             ["generate", "--run", str(tmp_path / "absent"), "--out", str(tmp_path / "g")],
             ["evaluate", "--run", str(tmp_path), "--data", str(tmp_path)],
             ["study", "--data", str(tmp_path), "--out", str(tmp_path / "s")]]
    script = ("import sys\nfrom pggan_lib import cli\n"
              f"codes = [cli.main(argv) for argv in {calls!r}]\n"
              "print('CODES', codes, 'TF_LOADED', 'tensorflow' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert "CODES [2, 2, 2, 2] TF_LOADED False" in done.stdout, done.stderr
    assert done.stderr.count("error:") == 4


def test_train_then_generate_writes_finest_scale_wavs(trained_run, tmp_path, capsys):
    history = (trained_run / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 20  # header + one row per step
    code, err = run_cli(capsys, "generate", "--run", trained_run, "--n", 3, "--out",
                        tmp_path / "gen", "--seed", 5)
    assert code == 0, err
    files = sorted((tmp_path / "gen").glob("*.wav"))
    assert [f.name for f in files] == ["sample_0000.wav", "sample_0001.wav", "sample_0002.wav"]
    for f in files:
        info = sf.info(str(f))
        assert (info.frames, info.samplerate, info.channels) == (256, 16_000, 1)
    # --scale 1 --no-ema: 128 samples at 8 kHz.
    code, err = run_cli(capsys, "generate", "--run", trained_run, "--n", 1, "--out",
                        tmp_path / "coarse", "--scale", 1, "--no-ema")
    assert code == 0, err
    info = sf.info(str(tmp_path / "coarse" / "sample_0000.wav"))
    assert (info.frames, info.samplerate) == (128, 8_000)


def test_train_wavegan_with_r1_spends_the_schedule_at_the_finest_scale(tone_dataset, tmp_path,
                                                                      capsys):
    from pggan_lib import config

    run = tmp_path / "wavegan"
    code = cli.main(["train", "--data", str(tone_dataset), "--out", str(run), "--preset", "tiny",
                     "--architecture", "wavegan", "--penalty", "r1", "--no-progress"])
    assert code == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["preset"]["penalty"] == "r1"
    assert stored["model_spec"]["architecture"] == "wavegan"
    tiny = config.get_preset("tiny")  # 3 scales: 3 stable phases and 2 fades of 4 steps
    assert [p["scale"] for p in stored["schedule"]] == [2]
    assert stored["schedule"][0]["steps"] == 3 * tiny.stable_steps + 2 * tiny.fade_steps
    code = cli.main(["generate", "--run", str(run), "--n", "2", "--out", str(tmp_path / "g")])
    assert code == 0
    wavs = sorted((tmp_path / "g").glob("*.wav"))
    assert len(wavs) == 2 and sf.info(wavs[0]).frames == 256


def test_train_no_growing_with_silent_heads_and_refused_on_resume(tone_dataset, tmp_path,
                                                                   capsys):
    from pggan_lib import config

    run = tmp_path / "direct"
    code = cli.main(["train", "--data", str(tone_dataset), "--out", str(run), "--preset", "tiny",
                     "--no-growing", "--silent-heads", "--no-progress"])
    assert code == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["preset"]["silent_heads"] and stored["model_spec"]["silent_heads"]
    assert stored["model_spec"]["architecture"] == "progressive"
    tiny = config.get_preset("tiny")
    assert [(p["scale"], p["kind"]) for p in stored["schedule"]] == [(2, "stable")]
    assert stored["schedule"][0]["steps"] == 3 * tiny.stable_steps + 2 * tiny.fade_steps
    for flag in ("--no-growing", "--silent-heads", "--head-std=0.1"):
        code, err = run_cli(capsys, "train", "--data", tone_dataset, "--out", run, "--resume",
                            flag)
        name = flag.split("=")[0]
        assert code == 2 and f"{name} applies to new runs" in err


@pytest.mark.parametrize("flag, value, bad, message", [
    ("head-std", 0.1, ("-1", "nan"), "must be a finite number >= 0, got {}"),
    ("critic-emphasis", 0.95, ("1",), "must be in [0, 1), got {}"),
    ("critic-spectrum", 16, ("12", "2"), "must be 0 or a power of 2 >= 4, got {}"),
    ("spectrum-match", 2.0, ("-1", "inf"), "must be a finite number >= 0, got {}"),
    ("upsample", "subpixel", ("nearest",), "invalid choice: '{}'")])
def test_train_model_flags_are_stored_and_checked(tone_dataset, tmp_path, capsys, flag, value,
                                                  bad, message):
    run, field = tmp_path / "run", flag.replace("-", "_")
    code = cli.main(["train", "--data", str(tone_dataset), "--out", str(run), "--preset", "tiny",
                     f"--{flag}", str(value), "--no-progress"])
    assert code == 0
    stored = json.loads((run / "config.json").read_text())
    assert stored["preset"][field] == value
    # A loss weight is the training's, not the networks': no model_spec field.
    assert stored["model_spec"].get(field, value) == value
    for text in bad:
        with pytest.raises(SystemExit) as stop:
            cli.main(["train", "--data", str(tone_dataset), "--out", str(tmp_path / "bad"),
                      f"--{flag}", text])
        assert stop.value.code == 2
        assert f"argument --{flag}: {message.format(text)}" in capsys.readouterr().err
    code, err = run_cli(capsys, "train", "--data", tone_dataset, "--out", run, "--resume",
                        f"--{flag}", value)
    assert code == 2 and f"--{flag} applies to new runs" in err
    assert not (tmp_path / "bad").exists()


def test_generate_refuses_to_overwrite_and_says_the_size(trained_run, tmp_path, capsys):
    out = tmp_path / "clips"
    code, err = run_cli(capsys, "generate", "--run", trained_run, "--n", 2, "--out", out)
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = run_cli(capsys, "generate", "--run", trained_run, "--n", 2, "--out", out,
                        "--seed", 9)
    assert code == 2 and f"--out {out} already holds 2 entries; pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing lost
    a_file = tmp_path / "a.wav"
    a_file.write_bytes(b"x")
    code, err = run_cli(capsys, "generate", "--run", trained_run, "--out", a_file)
    assert code == 2 and f"{a_file} is a file; give a folder" in err
    code = cli.main(["generate", "--run", str(trained_run), "--n", "2", "--out", str(out),
                     "--seed", "9", "--overwrite"])
    captured = capsys.readouterr()
    assert code == 0 and {p.name: p.read_bytes() for p in out.iterdir()} != before
    # 2 clips of 256 samples as 16-bit PCM with a 44-byte header: 1112 bytes.
    assert "2 clips, up to 0.00111 MB" in captured.out
    assert sum(p.stat().st_size for p in out.iterdir()) <= 1112


def test_run_files_follow_the_umask(trained_run):
    mask = os.umask(0)
    os.umask(mask)
    for name in ("config.json", "history.csv", "run_state.json", "generator.keras"):
        assert (trained_run / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


def test_generate_class_of_conditional_run(conditional_run, tmp_path, capsys):
    code, err = run_cli(capsys, "generate", "--run", conditional_run, "--n", 2, "--out",
                        tmp_path, "--class", "high")
    assert code == 0, err
    names = sorted(f.name for f in tmp_path.glob("*.wav"))
    assert names == ["high_0000.wav", "high_0001.wav"]
    # 4 steps = scale 0 only: 64 samples at 4 kHz.
    assert sf.info(str(tmp_path / names[0])).frames == 64
    code, err = run_cli(capsys, "generate", "--run", conditional_run, "--n", 1, "--out",
                        tmp_path, "--class", "jazz")
    assert code == 2 and "unknown class 'jazz'" in err and "high, low" in err


def test_error_messages(tone_dataset, trained_run, tmp_path, capsys):
    cases = [
        (("generate", "--run", tmp_path / "nope", "--out", tmp_path / "g"),
         "no such run folder"),
        (("generate", "--run", trained_run, "--out", tmp_path / "g", "--class", "low"),
         "is unconditional"),
        (("train", "--data", tmp_path, "--out", tmp_path / "r"),
         "is not a built dataset: " + str(tmp_path / "manifest.json")),
        (("train", "--data", tone_dataset, "--out", tmp_path / "r", "--preset", "huge"),
         "unknown preset 'huge'; valid presets: colab, quick, reference, tiny"),
        (("train", "--data", tone_dataset, "--out", trained_run),
         "already exists; use --resume"),
        (("train", "--data", tone_dataset, "--out", tmp_path / "absent", "--resume"),
         "no such run folder to resume"),
    ]
    empty_run = tmp_path / "empty_run"
    (empty_run / "checkpoints").mkdir(parents=True)
    (empty_run / "config.json").write_text("{}")
    cases += [
        (("train", "--data", tone_dataset, "--out", empty_run, "--resume"),
         "no checkpoint to resume from"),
        (("generate", "--run", empty_run, "--out", tmp_path / "g"), "no checkpoint yet"),
        (("study", "--data", tmp_path, "--out", tmp_path / "s"), "is not a built dataset"),
        (("study", "--data", tone_dataset, "--out", tmp_path / "s", "--arms", "fastest"),
         "unknown arm(s) fastest; arms: old_reference, windows"),
        (("study", "--data", tone_dataset, "--out", tmp_path / "s", "--budget-cpu-s", "10",
          "--first-cpu-s", "20"), "--first-cpu-s 20 is larger than --budget-cpu-s 10"),
        (("study", "--representations", "--data", tone_dataset, "--out", tmp_path / "s",
          "--arms", "pixels"), "unknown arm(s) pixels; arms: waveform, spectral, magnitude"),
        (("train", "--data", tone_dataset, "--out", tmp_path / "r", "--representation",
          "spectral", "--conditional"), "spectrogram models are unconditional"),
        (("train", "--data", tone_dataset, "--out", trained_run, "--resume", "--penalty",
          "r1"), "--penalty applies to new runs; a resumed run keeps its own"),
        (("ablate", "--data", tone_dataset, "--out", tmp_path / "a", "--budget", "huge"),
         "unknown --budget 'huge'; choose one of learn, full, quick, tiny"),
    ]
    # Manifests that are not what they should be: one line naming the file and the field.
    manifest_cases = {"not_json": ("{oops", "not valid JSON (Expecting property name"),
                      "a_list": ("[1, 2]", "expected a JSON object, found list"),
                      "no_scales": (json.dumps({"sample_rate": 16000}),
                                    "missing field 'clip_samples'")}
    for name, (text, message) in manifest_cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(text)
        cases.append((("train", "--data", tmp_path / name, "--out", tmp_path / "r"),
                      f"{tmp_path / name / 'manifest.json'}: {message}"))
    for argv, message in cases:
        code, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert message in err, (argv, err)
        assert err.startswith(f"pggan {argv[0]}: error: ") and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
    # NaN and infinity are not "positive numbers" (NaN used to mean "no limit").
    for value in ("nan", "inf", "-1"):
        with pytest.raises(SystemExit) as stop:
            cli.main(["train", "--data", str(tone_dataset), "--out", str(tmp_path / "r"),
                      "--max-minutes", value])
        err = capsys.readouterr().err
        assert stop.value.code == 2
        assert f"argument --max-minutes: must be a finite number > 0, got {value}" in err


def test_sigkill_then_resume_continues_history(tone_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    process = subprocess.Popen(
        [sys.executable, "-m", "pggan_lib.cli", "train", "--data", str(tone_dataset), "--out",
         str(run), "--preset", "tiny", "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(run.glob("checkpoints/ckpt-0000000[1-9].npz")):
            assert process.poll() is None, "training ended before the first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert process.poll() is None  # still training when killed
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    code, err = run_cli(capsys, "train", "--data", tone_dataset, "--out", run, "--resume",
                        "--no-progress")
    assert code == 0, err
    steps = [int(line.split(",")[0]) for line in
             (run / "history.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 21))  # same count as an uninterrupted run, no repeats
    assert json.loads((run / "run_state.json").read_text())["global_step"] == 20


def test_missing_tensorflow_names_the_extras(tmp_path):
    # A stand-in "tensorflow" package that fails as a missing one would.
    fake = tmp_path / "site"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tensorflow'\", name='tensorflow')\n")
    result = subprocess.run(
        [sys.executable, "-m", "pggan_lib.cli", "dataset", str(tmp_path), str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), os.getcwd()])})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "TensorFlow is not installed" in result.stderr and "pggan-lib[cpu]" in result.stderr
