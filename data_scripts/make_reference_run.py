"""Make (or finish) the committed reference run, ``results/reference/``.

Usage: python data_scripts/make_reference_run.py [--data data/demo_dataset]
       [--out results/reference] [--max-minutes M]

Runs, and records in ``OUT/provenance.json`` with the machine and wall times
(then writes ``OUT/SUMMARY.md``, the results against the targets):

    pggan train --data DATA --out OUT --preset reference --evaluate   (--resume when OUT has a checkpoint)
    pggan evaluate --run OUT --data DATA

Interrupted (Ctrl-C, ``--max-minutes``, a lost machine)? Run the same line again:
training continues from the newest checkpoint, and evaluation runs once training
is complete. On a CPU leave TensorFlow's oneDNN kernels on (the default): they
make a training step about twice as fast. The checkpoints (about 35 MB each)
are not committed; ``generator.keras`` (the EMA generator) is.

Notebook: chapters/05_training_on_gpu.ipynb
"""

import argparse
import shlex
import sys
import time
from pathlib import Path

from pggan_lib import config
from pggan_lib.cli import main


def _run(argv, sessions):
    command = shlex.join(["pggan", *argv])
    print(f"$ {command}", flush=True)
    start = time.monotonic()
    code = main(argv)
    sessions.append({"command": command, "wall_s": round(time.monotonic() - start, 1),
                     "exit_code": code})
    return code


def _relative(path: Path) -> str:
    # Unresolved first: a symlinked data folder inside the checkout stays data/...
    for resolve in (Path.absolute, Path.resolve):
        try:
            return str(resolve(path).relative_to(resolve(Path.cwd())))
        except ValueError:
            pass
    return str(path)


def make_reference_run(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=config.DEMO_DATASET_DIR)
    parser.add_argument("--out", type=Path, default=config.REFERENCE_RUN_DIR)
    parser.add_argument("--previous", type=Path, default=config.PREVIOUS_REFERENCE_RUN_DIR,
                        help="an earlier reference run for SUMMARY.md's before/after table "
                             "(skipped when the folder does not exist)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training cleanly after this many minutes (rerun to continue)")
    args = parser.parse_args(argv)
    data, out = _relative(args.data), _relative(args.out)
    train = ["train", "--data", data, "--out", out, "--preset", "reference", "--evaluate"]
    evaluate = ["evaluate", "--run", out, "--data", data]
    sessions = []
    resume = any((args.out / "checkpoints").glob("ckpt-*.npz"))
    extra = (["--resume"] if resume else []) + (
        ["--max-minutes", str(args.max_minutes)] if args.max_minutes else [])
    code = _run(train + extra, sessions)
    if code != 0:  # `pggan train` has said why (missing dataset, divergence, ...)
        return code

    from pggan_lib import reference

    run = reference.load_reference_run(args.out)
    last_phase = run.config["schedule"][-1]
    if run.history["step"][-1] == last_phase["start_step"] + last_phase["steps"]:
        code = _run(evaluate, sessions)
    else:
        print(f"training stopped at step {run.history['step'][-1]}; run this script again to "
              f"continue", file=sys.stderr)
    reference.write_provenance(args.out, [shlex.join(["pggan", *train]),
                                          shlex.join(["pggan", *evaluate])], sessions)
    if code == 0 and (args.out / "metrics.json").is_file():
        previous = (reference.load_reference_run(args.previous)
                    if (args.previous / "metrics.json").is_file() else None)
        summary = reference.summary_markdown(reference.load_reference_run(args.out), previous)
        (args.out / reference.SUMMARY_FILE).write_text(summary)
        print(summary)
    return code


if __name__ == "__main__":
    sys.exit(make_reference_run())
