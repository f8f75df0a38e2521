"""pggan_lib: Progressive GANs for music audio, in TensorFlow/Keras 3.

The library behind the book. Modules, each importing only those above it:

    config      presets, data-shape defaults, the quick-mode switch
    files       the library's JSON files read with one-line errors
    runs        the run folder's layout, read without TensorFlow (config, history, state, metrics)
    audio       load, resample, normalise, segment, save; spectrograms
    corpus      music21 scores -> MIDI -> audio: the embedded default corpus
    data        folder of class subfolders -> per-file pyramids -> clips / random windows -> tf.data
    layers      equalised layers, pixel norm, minibatch stddev, fade-in, the report's activation,
                differentiable augmentation
    models      progressive generator and critic; WaveGAN-style baseline
    losses      WGAN-GP (+ drift), gradient penalty, the report's loss
    training    the GAN as a keras.Model, phases, EMA, checkpoints, resume
    profiling   the cost of training: FLOPs, speed, memory, what a preset will cost
    evaluation  per-scale classifiers, Inception Score, Fréchet distance, NDB, nearest neighbours,
                tonality (spectral flatness)
    study       quality per training CPU-second of recipes (``pggan study``)
    ablation    the activation x loss grid of chapter 4 and the report's measures
    reference   the committed reference run: provenance, history, clips, metrics
    playground  a run's generator loaded once: seeds, slerp, latent walks, tracks by overlap-add
    plots       figures the chapters share
    widgets     ipywidgets explorers, each with a static twin
    web         the Django site and JSON API behind ``pggan serve``
    cli         the ``pggan`` command

Submodules are imported on demand (``from pggan_lib import data``) so that
importing the package does not start TensorFlow.
"""

import os as _os

# Keras 3 reads its backend once, at first import; TensorFlow's C++ log lines
# would otherwise clutter every notebook cell and rendered page.
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["__version__"]
