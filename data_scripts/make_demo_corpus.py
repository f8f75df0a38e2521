"""Build the embedded default corpus (music21 scores rendered to 16 kHz WAV).

Same as ``pggan corpus ...``; run ``python data_scripts/make_demo_corpus.py --help``.
"""
import sys

from pggan_lib.cli import main

sys.exit(main(["corpus", *sys.argv[1:]]))
