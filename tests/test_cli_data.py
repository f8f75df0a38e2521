"""The `corpus` and `dataset` subcommands of the `pggan` command line."""

import subprocess
import sys

import numpy as np
import soundfile as sf

from pggan_lib import cli


def test_help_is_instant_because_it_imports_no_tensorflow():
    code = ("import sys\nfrom pggan_lib import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('tensorflow' in sys.modules, 'librosa' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "corpus" in result.stdout and "dataset" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "False False"


def test_list_classes_names_the_five_default_classes(capsys):
    assert cli.main(["corpus", "--list-classes"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["bach_chorales", "palestrina", "monteverdi_madrigals",
                      "classical_quartets", "folk_tunes"]


def test_unknown_corpus_class_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["corpus", "--out", str(tmp_path), "--classes", "mozart_operas"]) == 2
    error = capsys.readouterr().err
    assert "mozart_operas" in error and "bach_chorales" in error


def test_dataset_from_missing_folder_names_it(tmp_path, capsys):
    missing = tmp_path / "no_such_music"
    assert cli.main(["dataset", str(missing), str(tmp_path / "out")]) == 2
    assert "no_such_music" in capsys.readouterr().err


def test_dataset_with_bad_clip_length_is_refused(tmp_path, capsys):
    assert cli.main(["dataset", str(tmp_path), str(tmp_path / "out"), "--clip-samples", "1000"]) == 2
    assert "1000" in capsys.readouterr().err


def test_dataset_command_builds_a_dataset_and_reports_the_bad_file(tmp_path, capsys):
    source = tmp_path / "music"
    for class_name, frequency in [("low", 220.0), ("high", 880.0)]:
        (source / class_name).mkdir(parents=True)
        for piece in range(2):
            t = np.arange(8000 * 2) / 8000
            sf.write(source / class_name / f"piece{piece}.wav",
                     0.3 * np.sin(2 * np.pi * frequency * (1 + piece / 10) * t), 8000)
    (source / "high" / "broken.wav").write_text("not audio")
    out = tmp_path / "dataset"
    assert cli.main(["dataset", str(source), str(out), "--sample-rate", "4000",
                     "--clip-samples", "1024", "--scales", "3", "--test-fraction", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "broken.wav" in printed
    assert (out / "manifest.json").exists()
