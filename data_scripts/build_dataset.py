"""Build a multi-scale clip dataset from a folder of class subfolders.

Usage: python data_scripts/build_dataset.py SOURCE_DIR OUT_DIR [--sample-rate 16000]
       [--clip-samples 16384] [--scales 7] [--test-fraction 0.2] [--seed 0] [--overwrite]

A thin wrapper around ``pggan dataset`` (see ``pggan_lib.data.build_dataset``).

Notebook: chapters/01_audio_fundamentals.ipynb
"""

import sys

from pggan_lib.cli import main

if __name__ == "__main__":
    sys.exit(main(["dataset", *sys.argv[1:]]))
