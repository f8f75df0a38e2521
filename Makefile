# Two commands: `make book` renders the book, `make test` runs every test.
# Both create .venv, install the pinned set (constraints.txt), install Debian's
# libfluidsynth3 when it is missing and we may, and build the demo corpus and
# its dataset when they are absent.

PYTHON       ?= python3
VENV         := .venv
PY           := $(VENV)/bin/python
PGGAN        := $(VENV)/bin/pggan
INSTALLED    := $(VENV)/.installed
DEMO_MINUTES ?= 4
CORPUS       := data/demo_corpus
DATASET      := data/demo_dataset
# The corpus at 250 and 500 Hz only: the first octave a block adds (make octave).
OCTAVE_DATA  := data/octave_dataset

# Quiet TensorFlow (no C++ log lines in pages). oneDNN's CPU kernels (TensorFlow's
# default) make training steps about 2x faster; said explicitly, so that a shell
# that turned them off does not slow the book down.
export KERAS_BACKEND        := tensorflow
export TF_CPP_MIN_LOG_LEVEL := 2
export TF_ENABLE_ONEDNN_OPTS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test unit notebooks book-strict book-check install system-deps demo-data clean reference benchmarks study ablation representations octave

book: install demo-data
	PGGAN_QUICK=1 $(VENV)/bin/jupyter-book build . --keep-going
	@echo "Open _build/html/index.html"

test: install demo-data unit notebooks book-strict book-check

unit: install
	$(PY) -m pytest tests/

notebooks: install demo-data
	PGGAN_QUICK=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider chapters/

# Warnings are errors: a broken reference or a failing cell fails the build.
book-strict: install demo-data
	PGGAN_QUICK=1 $(VENV)/bin/jupyter-book build . -W -n --keep-going

# The built pages as a student opens them: nothing from outside the book, every
# formula typeset offline, no cell wider than the page (Chromium, 1280 px);
# screenshots of each chapter in _build/screenshots/.
book-check: install
	PGGAN_BOOK_HTML=_build/html $(PY) -m pytest tests/test_rendered_book.py

# Long runs whose artefacts are committed under results/ (not part of `make test`).
# Rerun `make reference` after an interruption: training resumes from the newest checkpoint.
reference: install demo-data
	$(PY) data_scripts/make_reference_run.py

# Quality per training CPU-second of the recipes in pggan_lib.study, then the
# growth study (old and new recipe, the output heads, no growing; scales 0-3; chapter 5),
# then the later levers with their own baseline (results/study_levers: CPU-seconds compare
# only within one machine);
# finished runs are skipped, so rerunning after a stop continues.
study: install demo-data
	$(PGGAN) study --data $(DATASET) --out results/study --seeds 2 --budget-cpu-s 240 \
	  --first-cpu-s 30
	$(PGGAN) study --growth --data $(DATASET) --out results/study --seeds 2
	$(PGGAN) study --data $(DATASET) --out results/study_levers --seeds 2 --budget-cpu-s 240 \
	  --first-cpu-s 30 --arms new new_wide_b32 new_narrow_b8 new_betas new_r1 new_kernel25 \
	  new_silent

# The activation x loss grid of chapter 4 (7 arms x 3 seeds, scales 0-1, about 80
# minutes on 2 cores); finished runs are skipped, so rerunning after a stop continues.
ablation: install demo-data
	$(PGGAN) ablate --data $(DATASET) --out results/ablation --seeds 3 --scales 2 \
	  --budget learn

# Chapter 8: the waveform pyramid against the IF and magnitude spectrograms, and
# chapter 5's finest-scale peers (no growing, WaveGAN, half the growth, finest-level
# gains, silent heads grown and not, quiet heads with skip outputs and with PGGAN's head,
# the last without the noise augmentation, and that arm with a pre-emphasised critic, at
# twice the learning rate, without pixel norm, at a quarter of the learning rate at
# the finest scale, with two critic updates per step, twice as wide at the finest scale,
# with a log-spectrogram branch in the critic, with the mean log spectrum matched in the
# generator's loss, with sub-pixel upsampling and with both), at 400 training CPU-seconds
# per run (22 arms x 3 seeds, about 7.5 hours on 2 cores), then the two leaders at 16 kHz, two
# grown pyramids (skip outputs; the FIR players), the finest-scale learning rate,
# the spectrogram critic and the presets' sub-pixel players four times longer
# (results/representations_long, about 4 hours);
# finished runs are skipped, so rerunning after a stop continues.
representations: install demo-data
	$(PGGAN) study --representations --data $(DATASET) --out results/representations \
	  --seeds 3 --budget-cpu-s 400 --first-cpu-s 50
	$(PGGAN) study --representations --data $(DATASET) --out results/representations_long \
	  --seeds 2 --budget-cpu-s 1600 --first-cpu-s 200 \
	  --arms direct_silent wavegan waveform pggan_no_noise pggan_fine_lr pggan_spectrum \
	  pggan_subpixel_match

# Chapter 5's first new octave: the presets' players and three remedies grown from 250
# to 500 Hz and trained there, 150 training CPU-seconds per run (4 arms x 3 seeds, about
# 35 minutes on 2 cores); finished runs are skipped.
octave: install $(OCTAVE_DATA)/manifest.json
	$(PGGAN) study --representations --data $(OCTAVE_DATA) --out results/octave \
	  --seeds 3 --budget-cpu-s 150 --first-cpu-s 30 \
	  --arms pggan_no_noise pggan_spectrum pggan_spectrum_match pggan_subpixel

benchmarks: install
	$(PY) benchmarks/bench_training.py --preset reference --steps 5 \
	  --json results/benchmarks/reference_cpu.json

install: $(INSTALLED) system-deps

$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[cpu,book,dev,web]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# FluidSynth renders the corpus; without it pretty_midi's plain synthesis is
# used (with a warning), so a missing library is reported, not fatal.
# Debian's Chromium runs the browser test of `pggan serve`; without it that
# test is skipped with this reason.
system-deps:
	@if ldconfig -p 2>/dev/null | grep -q libfluidsynth; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's libfluidsynth3 (renders the demo corpus)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfluidsynth3 >/dev/null; \
	else \
	  echo "NOTE: libfluidsynth3 is missing. Install it with 'sudo apt-get install libfluidsynth3'"; \
	  echo "      for FluidSynth rendering; until then the corpus uses pretty_midi's synthesis."; \
	fi
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's chromium (the browser test of pggan serve)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "NOTE: chromium is missing. Install it with 'sudo apt-get install chromium'"; \
	  echo "      to run the browser test of pggan serve; until then that test is skipped."; \
	fi

demo-data: $(DATASET)/manifest.json

$(CORPUS)/manifest.json: | install
	$(PGGAN) corpus --out $(CORPUS) --minutes-per-class $(DEMO_MINUTES)

$(DATASET)/manifest.json: $(CORPUS)/manifest.json
	$(PGGAN) dataset $(CORPUS) $(DATASET) --overwrite

$(OCTAVE_DATA)/manifest.json: $(CORPUS)/manifest.json
	$(PGGAN) dataset $(CORPUS) $(OCTAVE_DATA) --sample-rate 500 --clip-samples 512 \
	  --scales 2 --overwrite

clean:
	rm -rf _build .pytest_cache
