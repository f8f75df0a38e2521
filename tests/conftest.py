"""Shared fixtures: a tiny dataset of tones that trains and evaluates in seconds."""

import shutil
from pathlib import Path

import numpy as np
import pytest

#: Debian's Chromium (``make install`` installs it when run as root).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium in a closed network, as root, without a screen (see the env notes).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium driven by Playwright, or a skip that says what to install."""
    if CHROMIUM is None:
        pytest.skip("no Chromium: `make install` installs Debian's chromium when run as root; "
                    "else `sudo apt-get install chromium`")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def make_tone_dataset(root: Path, clip_samples: int = 256, num_scales: int = 3) -> Path:
    """Two classes of tones (220 Hz and 880 Hz families), three 0.6 s files each.

    Args:
        root: Empty folder; gets ``source/`` and the built ``dataset/``.
        clip_samples: Finest-scale clip length.
        num_scales: Scales of the pyramid.

    Returns:
        The dataset folder (built by ``data.build_dataset``).
    """
    from pggan_lib import audio, data

    sample_rate = 16_000
    t = np.arange(int(0.6 * sample_rate)) / sample_rate
    for name, f0 in (("low", 220.0), ("high", 880.0)):
        for j in range(3):
            audio.save_audio(root / "source" / name / f"tone{j}.wav",
                             0.5 * np.sin(2 * np.pi * f0 * (1 + 0.1 * j) * t), sample_rate)
    data.build_dataset(root / "source", root / "dataset", sample_rate=sample_rate,
                       clip_samples=clip_samples, num_scales=num_scales, test_fraction=0.34,
                       progress=False)
    return root / "dataset"


@pytest.fixture(scope="session")
def tone_dataset(tmp_path_factory) -> Path:
    """The tiny tone dataset (3 scales, 256-sample clips), built once per session."""
    return make_tone_dataset(tmp_path_factory.mktemp("tones"))


@pytest.fixture(scope="session")
def tone_dataset_factory():
    """:func:`make_tone_dataset`, for tests that need another shape."""
    return make_tone_dataset


@pytest.fixture(scope="session")
def conditional_run(tone_dataset, tmp_path_factory) -> Path:
    """A class-conditional ``tiny`` run of 4 steps on the tone dataset."""
    from pggan_lib import training

    run = tmp_path_factory.mktemp("conditional") / "run"
    training.train(tone_dataset, run, preset="tiny", conditional=True, max_steps=4,
                   progress=False)
    return run


#: Attempts of a run-against-run comparison (:func:`compare_runs_retrying`).
RUN_COMPARISON_ATTEMPTS = 3


@pytest.fixture(scope="session")
def compare_runs_retrying():
    """``check(attempt)`` for attempt 0, 1, ... until it passes; the third failure is raised.

    For tests that compare two training runs number for number (a resumed run
    against an uninterrupted one); ``check`` trains both in folders of its
    attempt. With op determinism on, TensorFlow's CPU kernels still round
    differently now and then when the cores are busy. Measured on 2 busy cores:
    one tiny run repeated 39 times in one process left the first run's numbers
    in 2 repeats with oneDNN's kernels, and a WaveGAN comparison failed once
    without them; a GAN amplifies the last bit within a few steps. A resume that
    is wrong fails every attempt; rounding that strikes one run in 20 fails a
    comparison of two runs three times in a row about once in a thousand.
    """
    def run(check):
        for attempt in range(RUN_COMPARISON_ATTEMPTS):
            try:
                return check(attempt)
            except AssertionError:
                if attempt == RUN_COMPARISON_ATTEMPTS - 1:
                    raise
                print(f"runs differed (attempt {attempt + 1}); training both again")
    return run


@pytest.fixture(scope="session", autouse=True)
def deterministic_ops():
    """Bit-for-bit TensorFlow kernels for the whole session.

    Resume tests compare a stopped-and-resumed run with an uninterrupted one;
    without determinism, multi-threaded reductions may sum in another order
    when the machine is busy, and the two runs drift apart by rounding.
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
