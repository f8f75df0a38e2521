"""Presets, data-shape defaults and the quick-mode switch.

Everything that sizes a run lives here, so that a chapter, a test and the
command line agree on what "quick" or "reference" means.

Notebook: chapters/01_audio_fundamentals.ipynb
"""

from __future__ import annotations

import os
from pathlib import Path

#: True when the ``PGGAN_QUICK`` environment variable is ``"1"``: chapters and
#: tests shrink every size and step count so that they run on a 2-core CPU.
QUICK = os.environ.get("PGGAN_QUICK", "0") == "1"

#: Sample rate of the finest progressive scale (Hz).
DEFAULT_SAMPLE_RATE = 16_000
#: Number of progressive scales K (scale 0 is the coarsest).
DEFAULT_NUM_SCALES = 7
#: Samples of one clip at the finest scale (1.024 s at 16 kHz; 256 samples at
#: the coarsest of 7 scales).
DEFAULT_CLIP_SAMPLES = 16_384

#: Root of the repository checkout (where ``data/`` and ``results/`` live).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: Where the embedded default corpus and its dataset are built. Override with
#: ``PGGAN_DATA_DIR``.
DATA_DIR = Path(os.environ.get("PGGAN_DATA_DIR", REPO_ROOT / "data"))
DEMO_CORPUS_DIR = DATA_DIR / "demo_corpus"
DEMO_DATASET_DIR = DATA_DIR / "demo_dataset"


def scale_sample_rate(scale: int, num_scales: int = DEFAULT_NUM_SCALES,
                      sample_rate: int = DEFAULT_SAMPLE_RATE) -> int:
    """Sample rate of progressive scale ``scale``: ``sr / 2**(K-1-scale)``.

    Args:
        scale: Scale index, 0 (coarsest) to ``num_scales - 1`` (finest).
        num_scales: Number of scales K.
        sample_rate: Rate of the finest scale in Hz.

    Returns:
        The scale's sample rate in Hz (an integer when ``sample_rate`` is
        divisible by ``2**(K-1)``).

    Notebook: chapters/01_audio_fundamentals.ipynb
    """
    if not 0 <= scale < num_scales:
        raise ValueError(f"scale must be in [0, {num_scales - 1}], got {scale}")
    return sample_rate // 2 ** (num_scales - 1 - scale)
