"""Evaluating generated audio: per-scale classifiers, Inception Score,
Fréchet distance, NDB and nearest neighbours.

The source report judged its generator with an Inception Score computed from
seven classifiers of its own, one per progressive scale, that tell clips apart
by author. This module rebuilds that evaluation and adds the measures that
make its numbers readable:

* :class:`ClassifierRecipe` / :func:`train_classifier` /
  :func:`load_or_train_classifiers`: one small classifier per scale, trained on
  the dataset's train split, tested on its test split, saved next to the
  dataset (``DATASET/classifiers/scale_<k>.keras`` + ``.json``) and reused
  while the recipe and the dataset are unchanged.
* :func:`inception_score`: ``exp(E_x KL(p(y|x) || p(y)))``, between 1 and the
  number of classes C.
* :func:`frechet_distance`: the FID formula on the classifier's penultimate
  features.
* :func:`ndb`: the number of statistically different bins of Richardson and
  Weiss (2018).
* :func:`nearest_neighbours`: how close generated clips come to training clips
  (a memorisation check).
* :func:`evaluate_run`: all of it for every trained scale of a run, with the
  real-data references beside each number; ``pggan evaluate`` writes it to
  ``RUN/metrics.json``.

Every metric is computed for real data too: the real test clips' IS is the
ceiling a generator can reach under the same classifier, the train-vs-test
Fréchet distance and NDB are the floors that sampling noise alone produces.

Notebook: chapters/06_evaluation.ipynb
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pggan_lib import audio, data, files, runs

__all__ = [
    "EvaluationError",
    "ClassifierRecipe",
    "ScaleClassifier",
    "CLASSIFIER_DIR_NAME",
    "METRICS_FILE_NAME",
    "band_edges",
    "log_band_frames",
    "classifier_features",
    "normalized_log_spectra",
    "mean_log_spectrum",
    "spectral_flatness",
    "octave_power_db",
    "band_share_db",
    "TONALITY_BAND_HZ",
    "confusion_matrix",
    "train_classifier",
    "load_or_train_classifiers",
    "classifier_summary",
    "inception_score",
    "frechet_distance",
    "frechet_distance_from_moments",
    "ndb",
    "nearest_neighbours",
    "low_passed",
    "phase_scrambled",
    "real_reference",
    "evaluate_clips",
    "evaluate_run",
    "record_phase_metrics",
    "PHASE_METRICS_FILE_NAME",
    "format_metrics_table",
    "TARGETS",
    "check_targets",
    "format_targets_table",
]

#: Folder inside a dataset that holds its per-scale classifiers.
CLASSIFIER_DIR_NAME = "classifiers"
#: File written into a run folder by :func:`evaluate_run`.
METRICS_FILE_NAME = runs.METRICS_FILE
#: File in a run folder with the metrics of each scale as training left it.
PHASE_METRICS_FILE_NAME = runs.PHASE_METRICS_FILE

_FLOOR_POWER = 1e-10  # -100 dB: the log of silence stays finite


class EvaluationError(ValueError):
    """Bad input to an evaluation: message names the file/argument and the reason."""


# ---------------------------------------------------------------------------
# Features: log power in log-spaced bands, with frames scaled to the rate
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that decides a per-scale classifier (features and training).

    The features are *the same recipe at every scale*: frames of
    ``frame_seconds`` (so the FFT size scales with the sample rate and every
    scale has the same frequency resolution, 15.6 Hz for 64 ms), log power in
    bands ``1/bands_per_octave`` octave wide (one band per FFT bin where bins
    are wider than that), then per band the mean and the standard deviation
    over frames and the mean absolute frame-to-frame change (how much the
    music moves). Scale k therefore sees exactly the lower part of scale k+1's
    spectrum: accuracy differences between scales come from the audio, not from
    different feature designs.

    The classifier is a small Keras MLP: standardisation (statistics of the
    train split, stored in the model), one hidden ReLU layer of
    ``hidden_units`` with L2 and dropout, softmax. Why an MLP rather than the
    logistic regression that reached the same accuracy in the design notes:
    its hidden layer gives the *penultimate features* that the Fréchet
    distance needs (the role Inception-v3's pool layer plays for FID), and it
    saves as one ``.keras`` file. The recipe is fixed and seeded because the
    Inception Score moves with the classifier's confidence as much as with
    its accuracy: compare scores only under one recipe.

    Attributes:
        frame_seconds: Frame length in seconds; FFT size = the power of two
            nearest ``frame_seconds * sample_rate`` (at least 16).
        bands_per_octave: Width of the log-spaced bands.
        normalize_rms: Scale every clip to unit RMS first, so that loudness
            (which generated clips do not control) is not a class cue.
        hidden_units: Width of the hidden (penultimate) layer.
        dropout: Dropout rate on the input and on the hidden layer.
        l2: L2 weight on both dense kernels.
        learning_rate: Adam learning rate.
        steps: Full-batch Adam steps (every step sees the whole train split).
        seed: Seed of weights, dropout and shuffling.

    Notebook: chapters/06_evaluation.ipynb
    """

    frame_seconds: float = 0.064
    bands_per_octave: int = 6
    normalize_rms: bool = True
    hidden_units: int = 64
    dropout: float = 0.3
    l2: float = 1e-3
    learning_rate: float = 1e-3
    steps: int = 300
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fft_size(sample_rate: float, frame_seconds: float, samples: int) -> int:
    n_fft = 2 ** int(round(math.log2(max(frame_seconds * sample_rate, 1.0))))
    n_fft = max(16, n_fft)
    while n_fft > samples and n_fft > 4:  # clips shorter than one frame
        n_fft //= 2
    return n_fft


def band_edges(n_fft: int, bands_per_octave: int) -> np.ndarray:
    """Edges (FFT bin indices) of log-spaced bands covering bins ``0 .. n_fft/2``.

    Bin 0 (DC) is a band of its own; above it band ``j`` starts near bin
    ``2**(j / bands_per_octave)``, so low bands hold one bin each and high
    bands hold many.

    Args:
        n_fft: FFT size.
        bands_per_octave: Bands per octave.

    Returns:
        int array ``(num_bands + 1,)``, increasing, first 0, last ``n_fft // 2 + 1``.
    """
    num_bins = n_fft // 2 + 1
    octaves = math.log2(num_bins)
    starts = np.round(2.0 ** (np.arange(0, octaves * bands_per_octave + 1) / bands_per_octave))
    edges = np.unique(np.concatenate([[0], starts.astype(int), [num_bins]]))
    return edges[edges <= num_bins]


def log_band_frames(clips: np.ndarray, sample_rate: float,
                    recipe: ClassifierRecipe | None = None) -> np.ndarray:
    """Log power (dB) per frame and band: the spectrogram every measure here starts from.

    Args:
        clips: ``(N, samples)`` or ``(N, samples, 1)`` float audio.
        sample_rate: Their rate in Hz.
        recipe: Frame length, band width and RMS normalisation (default recipe).

    Returns:
        float32 ``(N, frames, bands)`` in dB (floored at -100 dB).
    """
    recipe = recipe or ClassifierRecipe()
    x = _as_clips(clips, "clips")
    if recipe.normalize_rms:
        rms = np.sqrt(np.mean(x ** 2, axis=1, keepdims=True))
        x = x / np.maximum(rms, 1e-6)
    n_fft = _fft_size(sample_rate, recipe.frame_seconds, x.shape[1])
    hop = n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=1)[:, ::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 2)[1:-1], axis=-1)) ** 2
    power /= (n_fft / 4) ** 2
    edges = band_edges(n_fft, recipe.bands_per_octave)
    band_power = np.add.reduceat(power, edges[:-1], axis=-1) / np.diff(edges)
    return (10.0 * np.log10(band_power + _FLOOR_POWER)).astype(np.float32)


def classifier_features(clips: np.ndarray, sample_rate: float,
                        recipe: ClassifierRecipe | None = None) -> np.ndarray:
    """The classifier's input: per band mean, std and mean |change| of log power.

    Args:
        clips: ``(N, samples)`` or ``(N, samples, 1)``.
        sample_rate: Their rate in Hz.
        recipe: Feature settings (default recipe).

    Returns:
        float32 ``(N, 3 * bands)``.
    """
    frames = log_band_frames(clips, sample_rate, recipe)
    change = (np.abs(np.diff(frames, axis=1)).mean(axis=1) if frames.shape[1] > 1
              else np.zeros_like(frames[:, 0]))
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1), change],
                          axis=1).astype(np.float32)


def mean_log_spectrum(clips: np.ndarray, sample_rate: float,
                      recipe: ClassifierRecipe | None = None) -> np.ndarray:
    """Time-averaged log band power of each clip (the space NDB bins in).

    Returns:
        float32 ``(N, bands)`` in dB.
    """
    return log_band_frames(clips, sample_rate, recipe).mean(axis=1)


def normalized_log_spectra(clips: np.ndarray, sample_rate: float,
                           recipe: ClassifierRecipe | None = None) -> np.ndarray:
    """Each clip's log spectrogram, flattened, centred and scaled to unit length.

    Euclidean distances between these rows lie in [0, 2] (0: the same
    spectrogram up to a change of level in dB) and keep the time order, so a
    clip copied from the training set is at distance ~0 from its original.

    Returns:
        float32 ``(N, frames * bands)``, each row with mean 0 and L2 norm 1
        (a constant spectrogram stays all zeros).
    """
    frames = log_band_frames(clips, sample_rate, recipe)
    flat = frames.reshape(len(frames), -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return (flat / np.where(norms > 1e-9, norms, 1.0)).astype(np.float32)


#: The band (Hz) in which :func:`spectral_flatness` measures tonality: above
#: the rumble of a DC offset, below the top of the 8 kHz scale's usable range.
TONALITY_BAND_HZ = (60.0, 4000.0)


def spectral_flatness(clips: np.ndarray, sample_rate: float,
                      band_hz: tuple[float, float] = TONALITY_BAND_HZ,
                      frame_seconds: float = 0.064, silence_db: float = -60.0) -> np.ndarray:
    """Tonality of each clip: spectral flatness in a band, averaged over frames.

    Flatness of one frame is the geometric over the arithmetic mean of its
    power spectrum in the band: 1 for white noise, near 0 for a few sharp
    partials (notes). IS and FD on band statistics can be fooled by noise
    with the right spectral envelope; flatness cannot, because it looks at
    the fine structure inside bands. The band is cut to what the scale's rate
    holds (at most 0.9 x Nyquist), so coarse scales are measured on fewer
    octaves of the same range.

    Args:
        clips: ``(N, samples)`` or ``(N, samples, 1)`` float audio.
        sample_rate: Their rate in Hz.
        band_hz: ``(low, high)`` band in Hz.
        frame_seconds: Frame length (64 ms: 15.6 Hz bins at every rate).
        silence_db: Frames quieter than this (RMS, dBFS) are left out; a clip
            with no loud frame gets flatness 1 (it holds no notes).

    Returns:
        float64 ``(N,)`` in (0, 1]: mean frame flatness per clip.

    Raises:
        EvaluationError: Bad clips, or a band with fewer than 2 FFT bins at this rate.

    Notebook: chapters/06_evaluation.ipynb
    """
    x = _as_clips(clips, "clips").astype(np.float64)
    n_fft = _fft_size(sample_rate, frame_seconds, x.shape[1])
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=1)[:, ::n_fft // 2]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 2)[1:-1], axis=-1)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    high = min(band_hz[1], 0.45 * sample_rate)
    in_band = (freqs >= band_hz[0]) & (freqs <= high)
    if in_band.sum() < 2:
        raise EvaluationError(f"spectral_flatness: band {band_hz[0]:g}-{high:g} Hz holds "
                              f"{int(in_band.sum())} FFT bin(s) at {sample_rate:g} Hz; "
                              f"widen band_hz or use longer frames")
    band = power[..., in_band] + _FLOOR_POWER
    flatness = np.exp(np.log(band).mean(axis=-1)) / band.mean(axis=-1)
    loud = 10.0 * np.log10(np.mean(frames ** 2, axis=-1) + _FLOOR_POWER) >= silence_db
    counts = loud.sum(axis=1)
    total = np.where(loud, flatness, 0.0).sum(axis=1)
    return np.where(counts > 0, total / np.maximum(counts, 1), 1.0)


def octave_power_db(clips: np.ndarray, sample_rate: float,
                    octaves: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Mean power of the clips in each of the top ``octaves`` octaves below Nyquist.

    Octave ``j`` spans ``[nyquist / 2**(j+1), nyquist / 2**j)`` (the lowest
    one reaches down to 0 Hz), so the octaves together hold all the power:
    their powers sum to the clips' mean square (Parseval). Where a band holds
    little of the corpus, it says how loud any added noise is by comparison.

    Args:
        clips: ``(N, samples)`` or ``(N, samples, 1)`` float audio.
        sample_rate: Their rate in Hz.
        octaves: How many bands, from the top.

    Returns:
        ``(edges_hz, power_db)``: ``(octaves + 1,)`` increasing band edges in Hz
        (0 first, Nyquist last) and ``(octaves,)`` mean power in dB re full
        scale squared, lowest band first.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    x = _as_clips(clips, "clips").astype(np.float64)
    power = _one_sided_power(x) / x.shape[1] ** 2
    freqs = np.fft.rfftfreq(x.shape[1], 1.0 / sample_rate)
    nyquist = sample_rate / 2.0
    edges = np.concatenate([[0.0], nyquist / 2.0 ** np.arange(octaves - 1, -1, -1)])
    index = np.clip(np.searchsorted(edges, freqs, side="right") - 1, 0, octaves - 1)
    band_power = np.stack([power[:, index == j].sum(axis=1) for j in range(octaves)])
    return edges, 10.0 * np.log10(band_power.mean(axis=1) + _FLOOR_POWER)


def _one_sided_power(x: np.ndarray) -> np.ndarray:
    """``|rfft(x)|**2`` along axis 1, each bin between DC and Nyquist counted twice."""
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    power[:, 1:(x.shape[1] + 1) // 2] *= 2.0  # one-sided: count the negative frequencies
    return power


def band_share_db(signals: np.ndarray, sample_rate: float, low_hz: float) -> float:
    """Share of the signals' power at or above ``low_hz``, in dB (0 dB = all of it).

    For clips or for a network's features: every channel's power counts.

    Args:
        signals: ``(N, samples)`` or ``(N, samples, channels)`` floats.
        sample_rate: Their rate in Hz.
        low_hz: The band's lower edge (the band runs to Nyquist).

    Returns:
        ``10 log10(power above low_hz / all power)``.

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    x = np.asarray(signals, np.float64)
    if x.ndim not in (2, 3) or x.shape[1] < 2:
        raise ValueError(f"signals: expected (N, samples) or (N, samples, channels), "
                         f"got shape {x.shape}")
    power = _one_sided_power(x)
    above = np.fft.rfftfreq(x.shape[1], 1.0 / sample_rate) >= low_hz
    return float(10.0 * np.log10(power[:, above].sum() / power.sum() + _FLOOR_POWER))


def _as_clips(clips: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(clips, dtype=np.float32)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2 or x.shape[0] == 0:
        raise EvaluationError(f"{name}: expected clips of shape (N, samples) or "
                              f"(N, samples, 1) with N >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise EvaluationError(f"{name}: clips contain NaN or infinite samples")
    return x


# ---------------------------------------------------------------------------
# Per-scale classifiers
# ---------------------------------------------------------------------------

class ScaleClassifier:
    """A trained classifier of one scale, with its feature recipe and test report.

    Attributes:
        scale: Scale index (0 = coarsest).
        sample_rate: The scale's rate in Hz.
        class_names: Class names, indexed by label.
        recipe: The :class:`ClassifierRecipe` it was trained with.
        model: ``keras.Model`` features ``(N, D)`` -> probabilities ``(N, C)``.
        report: Dict with ``test_accuracy``, ``train_accuracy``, ``confusion``
            (rows: true class, columns: predicted; test split), ``recipe``,
            ``dataset_fingerprint``, ``num_train``, ``num_test``, ``train_seconds``.

    Notebook: chapters/06_evaluation.ipynb
    """

    def __init__(self, scale, sample_rate, class_names, recipe, model, report):
        self.scale, self.sample_rate = int(scale), float(sample_rate)
        self.class_names, self.recipe = list(class_names), recipe
        self.model, self.report = model, report
        self._embedder = None

    def features(self, clips: np.ndarray) -> np.ndarray:
        """Classifier input features ``(N, D)`` of clips at this scale's rate."""
        return classifier_features(clips, self.sample_rate, self.recipe)

    def predict_proba(self, clips: np.ndarray) -> np.ndarray:
        """Class probabilities p(y|x), float64 ``(N, C)``."""
        return self._run(self.model, clips)

    def embed(self, clips: np.ndarray) -> np.ndarray:
        """Penultimate (hidden-layer) activations, float64 ``(N, hidden_units)``."""
        if self._embedder is None:
            import keras

            self._embedder = keras.Model(self.model.input,
                                         self.model.get_layer("penultimate").output)
        return self._run(self._embedder, clips)

    def _run(self, model, clips):
        # A direct call, not model.predict: no retracing for every new batch size.
        outputs = [np.asarray(model(chunk, training=False), dtype=np.float64)
                   for chunk in np.array_split(self.features(clips),
                                               max(1, math.ceil(len(clips) / 1024)))]
        return np.concatenate(outputs)

    def __repr__(self):
        return (f"ScaleClassifier(scale={self.scale}, sample_rate={self.sample_rate:g}, "
                f"test_accuracy={self.report.get('test_accuracy', float('nan')):.3f})")


def _build_mlp(num_features, num_classes, recipe, mean, variance):
    import keras

    regularizer = keras.regularizers.L2(recipe.l2)
    inputs = keras.Input((num_features,), name="features")
    x = keras.layers.Normalization(mean=mean, variance=variance, name="standardize")(inputs)
    x = keras.layers.Dropout(recipe.dropout, seed=recipe.seed)(x)
    x = keras.layers.Dense(recipe.hidden_units, activation="relu", kernel_regularizer=regularizer,
                           name="penultimate")(x)
    x = keras.layers.Dropout(recipe.dropout, seed=recipe.seed + 1)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax",
                                 kernel_regularizer=regularizer, name="probabilities")(x)
    return keras.Model(inputs, outputs, name="scale_classifier")


def _fit_mlp(features, labels, num_classes, recipe):
    """Full-batch Adam for ``recipe.steps`` steps, all inside one compiled loop.

    Full batches keep the result independent of any shuffling; one
    ``tf.function`` with a ``tf.range`` loop costs ~1 ms per step on a CPU
    where ``model.fit`` costs ~10 ms per batch.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(recipe.seed)
    model = _build_mlp(features.shape[1], num_classes, recipe, features.mean(axis=0),
                       features.var(axis=0) + 1e-6)
    optimizer = keras.optimizers.Adam(recipe.learning_rate)
    optimizer.build(model.trainable_variables)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy()
    x, y = tf.constant(features), tf.constant(labels)

    @tf.function
    def fit():
        for _ in tf.range(recipe.steps):
            with tf.GradientTape() as tape:
                loss = cross_entropy(y, model(x, training=True)) + tf.add_n(model.losses)
            optimizer.apply(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables)
        return loss

    # Every classifier has its own compiled loop; TensorFlow would warn about "retracing".
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        fit()
    finally:
        logger.setLevel(level)
    return model


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(C, C)``: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, int), np.asarray(predictions, int)), 1)
    return matrix


def train_classifier(dataset_dir: str | os.PathLike, scale: int,
                     recipe: ClassifierRecipe | None = None,
                     clips: dict | None = None) -> ScaleClassifier:
    """Train and test the classifier of one scale (nothing is saved).

    Args:
        dataset_dir: A dataset made by ``data.build_dataset``.
        scale: Scale index (0 = coarsest).
        recipe: Features and training settings (default :class:`ClassifierRecipe`).
        clips: Optional ``{"train": (audio, labels), "test": (audio, labels)}``
            already loaded at this scale (saves reading the dataset again).

    Returns:
        A :class:`ScaleClassifier` whose ``report`` holds test/train accuracy
        and the test confusion matrix.

    Raises:
        EvaluationError: Fewer than 2 classes, or an empty split.

    Notebook: chapters/06_evaluation.ipynb
    """
    recipe = recipe or ClassifierRecipe()
    manifest = data.read_manifest(dataset_dir)
    names = list(manifest["class_names"])
    if len(names) < 2:
        raise EvaluationError(f"{dataset_dir}: a classifier needs at least 2 classes, the "
                              f"dataset has {names}")
    rate = data.scale_rate(manifest, scale)
    clips = clips or {split: data.load_clips(dataset_dir, split, scale)
                      for split in ("train", "test")}
    (x_train, y_train), (x_test, y_test) = clips["train"], clips["test"]
    if len(x_train) == 0 or len(x_test) == 0:
        raise EvaluationError(f"{dataset_dir}: the train and the test split both need clips")
    started = time.perf_counter()
    f_train = classifier_features(x_train, rate, recipe)
    f_test = classifier_features(x_test, rate, recipe)
    model = _fit_mlp(f_train, y_train, len(names), recipe)
    train_pred = np.argmax(np.asarray(model(f_train, training=False)), axis=1)
    test_pred = np.argmax(np.asarray(model(f_test, training=False)), axis=1)
    report = {
        "scale": int(scale), "sample_rate": rate, "class_names": names,
        "test_accuracy": float(np.mean(test_pred == y_test)),
        "train_accuracy": float(np.mean(train_pred == y_train)),
        "chance_accuracy": float(np.max(np.bincount(y_test, minlength=len(names))) / len(y_test)),
        "confusion": confusion_matrix(y_test, test_pred, len(names)).tolist(),
        "num_train": int(len(y_train)), "num_test": int(len(y_test)),
        "num_features": int(f_train.shape[1]),
        "recipe": recipe.to_dict(), "dataset_fingerprint": data.dataset_fingerprint(manifest),
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    return ScaleClassifier(scale, rate, names, recipe, model, report)


def _classifier_paths(dataset_dir, scale):
    folder = Path(dataset_dir) / CLASSIFIER_DIR_NAME
    return folder / f"scale_{scale}.keras", folder / f"scale_{scale}.json"


def _load_saved(dataset_dir, scale, recipe, fingerprint):
    model_path, report_path = _classifier_paths(dataset_dir, scale)
    if not (model_path.is_file() and report_path.is_file()):
        return None
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return None
    if report.get("recipe") != recipe.to_dict() or report.get("dataset_fingerprint") != fingerprint:
        return None  # stale: another recipe or a rebuilt dataset
    import keras

    model = keras.saving.load_model(model_path)
    return ScaleClassifier(scale, report["sample_rate"], report["class_names"], recipe, model,
                           report)


def load_or_train_classifiers(dataset_dir: str | os.PathLike,
                              scales: Sequence[int] | None = None,
                              recipe: ClassifierRecipe | None = None, retrain: bool = False,
                              save: bool = True, progress: bool = False,
                              clip_cache: dict | None = None) -> dict[int, ScaleClassifier]:
    """The per-scale classifiers of a dataset: loaded when saved with this recipe, else trained.

    Saved as ``DATASET/classifiers/scale_<k>.keras`` (the model, standardisation
    included) and ``scale_<k>.json`` (test accuracy, confusion matrix, recipe,
    dataset fingerprint). A saved classifier is reused only when its recipe and
    the dataset's fingerprint (classes, shapes, split membership) match.

    Args:
        dataset_dir: Dataset folder.
        scales: Scales to provide (default: all).
        recipe: Classifier recipe (default :class:`ClassifierRecipe`).
        retrain: Train even when a matching saved classifier exists.
        save: Write trained classifiers into the dataset folder.
        progress: Print one line per scale.
        clip_cache: Optional dict ``{(split, scale): (audio, labels)}``; filled
            with the clips read (so that callers can reuse them).

    Returns:
        Dict scale -> :class:`ScaleClassifier`.

    Notebook: chapters/06_evaluation.ipynb
    """
    recipe = recipe or ClassifierRecipe()
    manifest = data.read_manifest(dataset_dir)
    scales = range(manifest["num_scales"]) if scales is None else scales
    fingerprint = data.dataset_fingerprint(manifest)
    clip_cache = {} if clip_cache is None else clip_cache
    result = {}
    for scale in scales:
        scale = int(scale)
        if not 0 <= scale < manifest["num_scales"]:
            raise EvaluationError(f"scale {scale} is not in {dataset_dir} (scales 0.."
                                  f"{manifest['num_scales'] - 1})")
        classifier = None if retrain else _load_saved(dataset_dir, scale, recipe, fingerprint)
        how = "loaded"
        if classifier is None:
            clips = {split: _cached_clips(dataset_dir, split, scale, clip_cache)
                     for split in ("train", "test")}
            classifier = train_classifier(dataset_dir, scale, recipe, clips)
            how = f"trained in {classifier.report['train_seconds']:.1f} s"
            if save:
                model_path, report_path = _classifier_paths(dataset_dir, scale)
                model_path.parent.mkdir(parents=True, exist_ok=True)
                classifier.model.save(model_path)
                files.write_json(report_path, classifier.report)
        if progress:
            print(f"scale {scale} ({classifier.sample_rate:g} Hz): test accuracy "
                  f"{classifier.report['test_accuracy']:.3f} ({how})")
        result[scale] = classifier
    return result


def classifier_summary(dataset_dir: str | os.PathLike, scales: Sequence[int] | None = None,
                       recipe: ClassifierRecipe | None = None, retrain: bool = False,
                       save: bool = True, progress: bool = False) -> dict[str, Any]:
    """How well a dataset's per-scale classifiers tell its classes apart, as plain JSON.

    The classifiers come from :func:`load_or_train_classifiers` (same arguments);
    beside their test reports this counts the *pieces* (source files) each
    class has in each split: a test accuracy rests on that many pieces, not on
    the number of clips cut from them. ``benchmarks/bench_classifier_corpus.py``
    compares corpus variants with it.

    Args:
        dataset_dir: A dataset made by ``data.build_dataset``.
        scales: Scales to report (default: all).
        recipe: Classifier recipe (default :class:`ClassifierRecipe`, chapter 6's).
        retrain: Train even when a matching saved classifier exists.
        save: Write trained classifiers into the dataset folder.
        progress: Print one line per scale.

    Returns:
        Dict with ``class_names``, ``pieces_per_class`` and ``clips_per_class``
        (``{"train": {class: n}, "test": {class: n}}``), ``recipe``,
        ``dataset_fingerprint`` and ``scales``: one dict per scale with
        ``scale``, ``sample_rate``, ``test_accuracy``, ``train_accuracy``,
        ``chance_accuracy``, ``confusion`` (rows: true class, columns:
        predicted; test clips), ``num_train``, ``num_test``, ``train_seconds``.
    """
    recipe = recipe or ClassifierRecipe()
    manifest = data.read_manifest(dataset_dir)
    names = list(manifest["class_names"])
    pieces = {split: {name: 0 for name in names} for split in ("train", "test")}
    for source in manifest["sources"]:
        pieces[source["split"]][source["class"]] += 1
    classifiers = load_or_train_classifiers(dataset_dir, scales, recipe, retrain=retrain,
                                            save=save, progress=progress)
    keys = ("scale", "sample_rate", "test_accuracy", "train_accuracy", "chance_accuracy",
            "confusion", "num_train", "num_test", "train_seconds")
    return {
        "class_names": names,
        "pieces_per_class": pieces,
        "clips_per_class": {split: dict(manifest["splits"][split]["clips_per_class"])
                            for split in ("train", "test")},
        "recipe": recipe.to_dict(),
        "dataset_fingerprint": data.dataset_fingerprint(manifest),
        "scales": [{key: classifier.report[key] for key in keys}
                   for _, classifier in sorted(classifiers.items())],
    }


def _cached_clips(dataset_dir, split, scale, cache):
    key = (split, scale)
    if key not in cache:
        cache[key] = data.load_clips(dataset_dir, split, scale)
    return cache[key]


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def inception_score(probs: np.ndarray, splits: int = 10, shuffle: bool = True,
                    seed: int = 0) -> tuple[float, float]:
    """Inception Score ``exp(E_x KL(p(y|x) || p(y)))``, mean and std over splits.

    ``p(y)`` is the mean of ``p(y|x)`` within each split (Salimans et al.
    2016). The score lies between 1 (every prediction equals the marginal: no
    confident classes, or one class for everything) and C, the number of
    classes (confident predictions spread evenly over all classes).

    Args:
        probs: ``(N, C)`` class probabilities, rows summing to 1.
        splits: Number of equal parts the N rows are cut into (``N >= splits``).
        shuffle: Shuffle the rows (seeded) before cutting. Needed whenever the
            rows are ordered, e.g. real clips stored class by class: a split
            holding one class only has ``p(y|x) ~ p(y)`` and scores ~1.
        seed: Seed of that shuffle.

    Returns:
        ``(mean, std)`` of the per-split scores.

    Raises:
        EvaluationError: Bad shape, rows that are not probabilities, or N < splits.

    Notebook: chapters/06_evaluation.ipynb
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise EvaluationError(f"probs: expected shape (N, C), got {p.shape}")
    if splits < 1 or p.shape[0] < splits:
        raise EvaluationError(f"probs: {p.shape[0]} samples cannot be cut into {splits} splits; "
                              f"give at least {splits} samples or fewer splits")
    if np.any(p < -1e-9) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise EvaluationError("probs: every row must be a probability distribution "
                              "(non-negative, summing to 1)")
    p = np.clip(p, 0.0, 1.0)
    if shuffle:
        p = p[np.random.default_rng(seed).permutation(len(p))]
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        # 0 * log 0 = 0: only terms with p > 0 count.
        ratio = np.where(part > 0, part / np.maximum(marginal, 1e-300), 1.0)
        kl = np.sum(part * np.log(ratio), axis=1)
        scores.append(math.exp(float(np.mean(kl))))
    return float(np.mean(scores)), float(np.std(scores))


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``. As in the
    reference FID code: when the matrix square root is not finite (singular
    covariances, e.g. fewer samples than features) ``eps`` is added to both
    diagonals; a tiny imaginary part from round-off is dropped.

    Args:
        mu1, mu2: Means ``(D,)``.
        sigma1, sigma2: Covariances ``(D, D)``.
        eps: Diagonal offset used when the square root fails.

    Returns:
        The distance (>= 0 up to round-off), a float.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise EvaluationError(f"frechet distance: shapes do not match: mu {mu1.shape} / "
                              f"{mu2.shape}, sigma {sigma1.shape} / {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # A singular product (fewer samples than features, dead units) is expected
        # here: it is what the eps fallback below is for.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.all(np.isfinite(covmean)):
            offset = np.eye(len(mu1)) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # imaginary parts are round-off of a PSD product
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula).

    Args:
        features_a: ``(N_a, D)``.
        features_b: ``(N_b, D)``; both need at least 2 rows.
        eps: See :func:`frechet_distance_from_moments`.

    Returns:
        The distance, a float (0 for identical sets).

    Notebook: chapters/06_evaluation.ipynb
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise EvaluationError(f"frechet distance: need two (N >= 2, D) feature sets with the "
                              f"same D, got {a.shape} and {b.shape}")
    return frechet_distance_from_moments(a.mean(axis=0), np.cov(a, rowvar=False),
                                         b.mean(axis=0), np.cov(b, rowvar=False), eps)


def ndb(reference: np.ndarray, samples: np.ndarray, num_bins: int = 10, alpha: float = 0.05,
        seed: int = 0, bins=None) -> dict[str, Any]:
    """Number of statistically Different Bins (Richardson and Weiss, 2018).

    k-means (seeded) cuts the *reference* set (real training clips) into
    ``num_bins`` bins; every sample is put into the bin of its nearest centre.
    For each bin a two-proportion z-test compares the share of reference and
    of samples in it; NDB counts the bins where they differ at level
    ``alpha``. Samples from the reference distribution give about
    ``alpha * num_bins`` bins by chance; a generator that misses modes or
    invents new ones gives more.

    Args:
        reference: ``(N_r, D)`` features of real training clips (bins are fitted here).
        samples: ``(N_s, D)`` features to test (generated, or real test clips).
        num_bins: K, the number of k-means bins.
        alpha: Significance level of each test (two-sided).
        seed: k-means seed.
        bins: A ``sklearn.cluster.KMeans`` already fitted on ``reference``
            (reused when several sample sets are compared with one reference).

    Returns:
        Dict with ``ndb`` (count), ``ndb_over_k``, ``num_bins``, ``alpha``,
        ``reference_proportions`` and ``sample_proportions`` (lists of K),
        ``significant`` (list of K bools), ``z`` (list of K floats).
    """
    from scipy import stats
    from sklearn.cluster import KMeans

    ref, gen = np.asarray(reference, np.float64), np.asarray(samples, np.float64)
    if ref.ndim != 2 or gen.ndim != 2 or ref.shape[1] != gen.shape[1]:
        raise EvaluationError(f"ndb: need two (N, D) sets with the same D, got {ref.shape} and "
                              f"{gen.shape}")
    if len(ref) < num_bins:
        raise EvaluationError(f"ndb: {len(ref)} reference rows cannot fill {num_bins} bins")
    if len(gen) < 2:
        raise EvaluationError(f"ndb: need at least 2 samples, got {len(gen)}")
    kmeans = bins if bins is not None else KMeans(n_clusters=num_bins, n_init=4, random_state=seed).fit(ref)
    num_bins = kmeans.n_clusters
    ref_counts = np.bincount(kmeans.labels_, minlength=num_bins)
    gen_counts = np.bincount(kmeans.predict(gen), minlength=num_bins)
    p_ref, p_gen = ref_counts / len(ref), gen_counts / len(gen)
    pooled = (ref_counts + gen_counts) / (len(ref) + len(gen))
    se = np.sqrt(pooled * (1 - pooled) * (1 / len(ref) + 1 / len(gen)))
    z = np.where(se > 0, (p_gen - p_ref) / np.where(se > 0, se, 1.0), 0.0)
    significant = np.abs(z) > stats.norm.ppf(1 - alpha / 2)
    return {"ndb": int(significant.sum()), "ndb_over_k": float(significant.mean()),
            "num_bins": int(num_bins), "alpha": float(alpha),
            "reference_proportions": p_ref.round(5).tolist(),
            "sample_proportions": p_gen.round(5).tolist(),
            "significant": significant.tolist(), "z": np.round(z, 4).tolist()}


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from every query row to its nearest reference row.

    Args:
        queries: ``(N_q, D)``.
        reference: ``(N_r, D)``.

    Returns:
        ``(distances, indices)``: float64 ``(N_q,)`` and int64 ``(N_q,)``
        (index into ``reference``).

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    q, r = np.asarray(queries, np.float64), np.asarray(reference, np.float64)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1] or len(r) == 0:
        raise EvaluationError(f"nearest neighbours: need (N, D) queries and a non-empty "
                              f"(M, D) reference, got {q.shape} and {r.shape}")
    squared = (np.sum(q ** 2, axis=1)[:, None] - 2 * q @ r.T + np.sum(r ** 2, axis=1)[None])
    indices = np.argmin(squared, axis=1)
    distances = np.sqrt(np.maximum(squared[np.arange(len(q)), indices], 0.0))
    return distances, indices


# ---------------------------------------------------------------------------
# Transformations for testing the classifier (the report's caveat)
# ---------------------------------------------------------------------------

def low_passed(clips: np.ndarray, sample_rate: float, cutoff_hz: float) -> np.ndarray:
    """Clips with everything above ``cutoff_hz`` removed (brick-wall, in the FFT).

    Returns:
        float32 array shaped like ``clips``.

    Notebook: chapters/06_evaluation.ipynb
    """
    x = np.asarray(clips, dtype=np.float32)
    spectrum = np.fft.rfft(x, axis=1)
    frequencies = np.fft.rfftfreq(x.shape[1], 1.0 / sample_rate)
    shape = [1] * x.ndim
    shape[1] = len(frequencies)
    spectrum *= (frequencies <= cutoff_hz).reshape(shape)
    return np.fft.irfft(spectrum, n=x.shape[1], axis=1).astype(np.float32)


def phase_scrambled(clips: np.ndarray, seed: int = 0) -> np.ndarray:
    """Clips with the same magnitude spectrum (of the whole clip) and random phases.

    Keeps the long-term spectrum, destroys melody, rhythm and attacks: it
    sounds like a steady noisy chord.

    Returns:
        float32 array shaped like ``clips``.

    Notebook: chapters/06_evaluation.ipynb
    """
    x = np.asarray(clips, dtype=np.float32)
    spectrum = np.fft.rfft(x, axis=1)
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, spectrum.shape)
    phases[:, 0] = 0.0  # keep DC real
    scrambled = np.abs(spectrum) * np.exp(1j * phases)
    return np.fft.irfft(scrambled, n=x.shape[1], axis=1).astype(np.float32)


# ---------------------------------------------------------------------------
# Whole evaluations
# ---------------------------------------------------------------------------

def _check_count(n, splits, name):
    if n < max(2 * splits, 10):
        raise EvaluationError(f"{name}: {n} clips are too few to evaluate; need at least "
                              f"{max(2 * splits, 10)} (2 per IS split)")


def real_reference(classifier: ScaleClassifier, train_clips: np.ndarray,
                   test_clips: np.ndarray, splits: int = 10, num_bins: int = 10,
                   seed: int = 0, cache: dict | None = None) -> dict[str, Any]:
    """The metrics of real test clips against real training clips: what a perfect generator gets.

    Args:
        classifier: The scale's classifier.
        train_clips: ``(N_train, samples[, 1])`` real training clips at that scale.
        test_clips: ``(N_test, samples[, 1])`` real test clips.
        splits: IS splits.
        num_bins: NDB bins.
        seed: NDB k-means seed.
        cache: See :func:`evaluate_clips`.

    Returns:
        Dict like :func:`evaluate_clips` (``inception_score``, ``inception_score_std``,
        ``frechet_distance``, ``ndb``, ``ndb_over_k``, ``nn_median``, ``nn_mean``, ``n``).

    Notebook: chapters/06_evaluation.ipynb
    """
    return evaluate_clips(classifier, test_clips, train_clips, splits=splits,
                          num_bins=num_bins, seed=seed, cache=cache)


def _train_side(classifier, train, num_bins, seed, cache):
    """Features of the real training clips, computed once per classifier and setting."""
    from sklearn.cluster import KMeans

    key = (id(classifier), train.shape, num_bins, seed)
    if cache is None or key not in cache:
        rate, recipe = classifier.sample_rate, classifier.recipe
        spectra = mean_log_spectrum(train, rate, recipe).astype(np.float64)
        value = {"embedding": classifier.embed(train), "mean_spectrum": spectra,
                 "bins": KMeans(n_clusters=num_bins, n_init=4, random_state=seed).fit(spectra),
                 "spectra": normalized_log_spectra(train, rate, recipe)}
        if cache is None:
            return value
        cache[key] = value
    return cache[key]


def evaluate_clips(classifier: ScaleClassifier, clips: np.ndarray, train_clips: np.ndarray,
                   splits: int = 10, num_bins: int = 10, seed: int = 0,
                   closest: int = 5, cache: dict | None = None) -> dict[str, Any]:
    """IS, Fréchet distance, NDB and nearest-neighbour distances of clips at one scale.

    Fréchet distance and NDB compare ``clips`` with the real training clips
    (NDB bins are fitted on those); nearest neighbours are searched among them.

    Args:
        classifier: The scale's :class:`ScaleClassifier`.
        clips: ``(N, samples[, 1])`` clips to evaluate (generated or real test).
        train_clips: Real training clips of the same scale.
        splits: IS splits.
        num_bins: NDB bins.
        seed: NDB k-means seed.
        closest: How many closest (clip, training clip) pairs to list.
        cache: Optional dict in which the training clips' features are kept
            between calls with the same classifier and training clips.

    Returns:
        Dict: ``n``, ``inception_score``, ``inception_score_std``,
        ``frechet_distance``, ``ndb``, ``ndb_over_k``, ``nn_median``, ``nn_mean``,
        ``nn_min``, ``spectral_flatness`` (median over clips, see
        :func:`spectral_flatness`) and its ``spectral_flatness_iqr``,
        ``closest_pairs`` (list of ``[clip index, train index, distance]``),
        ``predicted_class_shares`` (list of C).
    """
    x = _as_clips(clips, "clips")
    train = _as_clips(train_clips, "train_clips")
    if x.shape[1] != train.shape[1]:
        raise EvaluationError(f"clips have {x.shape[1]} samples, the scale's training clips "
                              f"{train.shape[1]}: not the same scale")
    _check_count(len(x), splits, "clips")
    rate, recipe = classifier.sample_rate, classifier.recipe
    reference = _train_side(classifier, train, num_bins, seed, cache)
    probs = classifier.predict_proba(x)
    is_mean, is_std = inception_score(probs, splits, seed=seed)
    fd = frechet_distance(reference["embedding"], classifier.embed(x))
    bins = ndb(reference["mean_spectrum"], mean_log_spectrum(x, rate, recipe),
               seed=seed, bins=reference["bins"])
    distances, indices = nearest_neighbours(normalized_log_spectra(x, rate, recipe),
                                            reference["spectra"])
    order = np.argsort(distances)[:closest]
    shares = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1]) / len(x)
    flatness = spectral_flatness(x, rate)
    return {"n": int(len(x)), "inception_score": is_mean, "inception_score_std": is_std,
            "frechet_distance": fd, "ndb": bins["ndb"], "ndb_over_k": bins["ndb_over_k"],
            "nn_median": float(np.median(distances)), "nn_mean": float(distances.mean()),
            "nn_min": float(distances.min()),
            "spectral_flatness": float(np.median(flatness)),
            "spectral_flatness_iqr": [float(q) for q in np.percentile(flatness, [25, 75])],
            "closest_pairs": [[int(i), int(indices[i]), float(distances[i])] for i in order],
            "predicted_class_shares": shares.round(4).tolist()}


def _check_run_matches(run_config: dict, manifest: dict, run_dir, dataset_dir) -> None:
    trained_on = run_config.get("dataset", {})
    for key in ("num_scales", "clip_samples", "sample_rate", "class_names"):
        if key in trained_on and trained_on[key] != manifest.get(key):
            raise EvaluationError(
                f"{dataset_dir} does not match the run {run_dir}: {key} is "
                f"{manifest.get(key)!r} in the dataset but {trained_on[key]!r} in the run's "
                f"config.json; evaluate with the dataset the run was trained on")


def _trained_variants(run_dir, use_ema) -> dict[str, int]:
    """``{"ema"|"raw": finest trained scale}`` for each generator variant the run has."""
    from pggan_lib import training

    variants = {}
    for ema in use_ema:
        try:
            _, info = training.load_generator(run_dir, use_ema=ema)
        except training.RunError as error:
            if ema and len(use_ema) == 1:
                raise EvaluationError(str(error)) from error
            continue  # e.g. no checkpoint for the raw generator
        variants["ema" if ema else "raw"] = int(info["trained_scale"])
    if not variants:
        raise EvaluationError(f"{run_dir}: nothing trained to evaluate yet")
    return variants


def _finest_pyramid(run_dir, n, seed, top) -> dict[int, np.ndarray]:
    """The EMA generator's finest-scale clips taken down every scale as the data was.

    Returns:
        ``{scale: (n, samples_at_scale)}`` for scales ``0..top``, from
        :func:`audio.downsample2` applied ``top - scale`` times (the dataset's
        own anti-aliasing), so a coarse scale is judged by what the finished
        generator puts in that band, not by the scale's own output head.
    """
    from pggan_lib import training

    clips, _, _ = training.generate_audio(run_dir, n, seed=seed, scale=top, use_ema=True)
    levels = {top: np.asarray(clips, np.float32)}
    for scale in range(top - 1, -1, -1):
        levels[scale] = audio.downsample2(levels[scale + 1].T).T  # (samples, n) for soxr
    return levels


def evaluate_run(run_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
                 n: int | None = None, use_ema: Sequence[bool] = (True, False),
                 seed: int = 0, splits: int = 10, num_bins: int = 10,
                 recipe: ClassifierRecipe | None = None, scales: Sequence[int] | None = None,
                 write: bool = True, progress: bool = False) -> dict[str, Any]:
    """Evaluate every trained scale of a run and write ``RUN/metrics.json``.

    For each trained scale k: ``n`` clips from the generator at scale k (the
    final weights; a coarse scale's output path is the one trained before
    the network grew past it, its shared blocks kept training), scored with
    the scale's classifier; beside them the real test split's scores against
    the real train split (IS ceiling; Fréchet, NDB and nearest-neighbour
    floors). Each variant in ``use_ema`` is evaluated when the run has it
    (the raw generator needs a checkpoint); ``finest`` scores the EMA
    generator's finest clips taken down to each scale as the dataset was.

    Args:
        run_dir: Run folder (``pggan train``).
        dataset_dir: The dataset the run was trained on.
        n: Generated clips per scale (default: the test split's size, so
            that generated and real scores use the same sample size).
        use_ema: Generator variants: True = EMA, False = raw weights.
        seed: Seed of the latent vectors (and NDB's k-means).
        splits: IS splits.
        num_bins: NDB bins.
        recipe: Classifier recipe (default :class:`ClassifierRecipe`).
        scales: Scales to evaluate (default: all trained ones).
        write: Write ``RUN/metrics.json``.
        progress: Print progress lines.

    Returns:
        Dict with ``run``, ``dataset``, ``n``, ``seed``, ``recipe``, ``class_names`` and
        ``scales``: {"k": {"sample_rate", "classifier_test_accuracy", "real": {...},
        "ema": {...}, "raw": {...}, "finest": {...}}} (metric dicts as in
        :func:`evaluate_clips`; ``finest`` when the EMA generator is evaluated
        up to its finest trained scale).

    Raises:
        EvaluationError: Missing run or dataset, a dataset that does not
            match the run, or too few clips.

    Notebook: chapters/06_evaluation.ipynb
    """
    from pggan_lib import training

    run_dir, dataset_dir = Path(run_dir), Path(dataset_dir)
    run_config = runs.read_config(run_dir, EvaluationError,
                                  f"train one with `pggan train --data DATASET --out {run_dir}`")
    if not (dataset_dir / data.MANIFEST_NAME).is_file():
        raise EvaluationError(f"{dataset_dir}: not a built dataset (no {data.MANIFEST_NAME}); "
                              f"build one with `pggan dataset SOURCE {dataset_dir}`")
    manifest = data.read_manifest(dataset_dir)
    _check_run_matches(run_config, manifest, run_dir, dataset_dir)
    n_test = int(manifest["splits"]["test"]["num_clips"])
    n = n_test if n is None else int(n)
    _check_count(n, splits, "--n")
    _check_count(n_test, splits, f"{dataset_dir} test split")

    variants = _trained_variants(run_dir, use_ema)
    top = max(variants.values())
    scales = list(range(top + 1)) if scales is None else [int(s) for s in scales]
    for scale in scales:
        if not 0 <= scale <= top:
            raise EvaluationError(f"scale {scale} is not trained in {run_dir} (trained: 0..{top})")

    cache: dict = {}
    feature_cache: dict = {}
    classifiers = load_or_train_classifiers(dataset_dir, scales, recipe, progress=progress,
                                            clip_cache=cache)
    result = {"run": str(run_dir), "dataset": str(dataset_dir), "n": n, "seed": seed,
              "splits": splits, "num_bins": num_bins,
              "recipe": (recipe or ClassifierRecipe()).to_dict(),
              "class_names": list(manifest["class_names"]), "scales": {}}
    with_finest = variants.get("ema") == top
    finest = (_finest_pyramid(run_dir, n, seed, top)
              if with_finest and min(scales) < top else None)
    for scale in scales:
        classifier = classifiers[scale]
        train_clips = _cached_clips(dataset_dir, "train", scale, cache)[0]
        test_clips = _cached_clips(dataset_dir, "test", scale, cache)[0]

        def score(clips):
            return evaluate_clips(classifier, clips, train_clips, splits, num_bins, seed,
                                  cache=feature_cache)

        entry = {"sample_rate": classifier.sample_rate,
                 "classifier_test_accuracy": classifier.report["test_accuracy"],
                 "real": real_reference(classifier, train_clips, test_clips, splits, num_bins,
                                        seed, feature_cache)}
        entry.update({name: score(training.generate_audio(run_dir, n, seed=seed, scale=scale,
                                                          use_ema=(name == "ema"))[0])
                      for name, trained in variants.items() if scale <= trained})
        if with_finest:
            entry["finest"] = entry["ema"] if scale == top else score(finest[scale])
        result["scales"][str(scale)] = entry
        if progress:
            print(f"scale {scale}: evaluated {', '.join(k for k in entry if k in variants)}")
    if write:
        files.write_json(run_dir / METRICS_FILE_NAME, result)
    return result


def record_phase_metrics(run_dir: str | os.PathLike, dataset_dir: str | os.PathLike,
                         scale: int, phase_index: int, n: int | None = None,
                         seed: int = 0) -> dict[str, Any]:
    """Evaluate the EMA generator of a run at ``scale`` as it is now; keep it by phase.

    Meant to run at a phase end (``training.train(on_phase_end=...)``, ``pggan
    train --evaluate``): :func:`evaluate_run` scores a coarse scale with the
    *final* weights, this keeps the scores each scale had when training left it.
    The entry of a phase is overwritten when the phase is reported again (a
    resumed run), so the file never holds duplicates.

    Args:
        run_dir: Run folder; its ``generator.keras`` is evaluated.
        dataset_dir: The run's dataset.
        scale: Scale the phase trained.
        phase_index: Index of the phase in the schedule (the key of the entry).
        n: Generated clips (default: the test split's size).
        seed: Seed of the latents and of NDB's k-means.

    Returns:
        The phase's entry: ``phase``, ``scale``, and the per-scale dict of
        :func:`evaluate_run` (``real`` references and ``ema`` scores).
    """
    metrics = evaluate_run(run_dir, dataset_dir, n=n, use_ema=(True,), seed=seed,
                           scales=[scale], write=False)
    entry = {"phase": int(phase_index), "scale": int(scale), **metrics["scales"][str(scale)]}
    path = Path(run_dir) / PHASE_METRICS_FILE_NAME
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    recorded[str(phase_index)] = entry
    files.write_json(path, recorded)
    return entry


def _flatness_text(metrics: dict[str, Any]) -> str:
    # metrics.json files written before the tonality measure existed have none.
    value = metrics.get("spectral_flatness")
    return "-" if value is None else f"{value:.3f}"


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate_run`'s result, one row per scale and source.

    Columns: scale, rate, classifier accuracy, source (``real``: the real test
    clips; ``ema`` / ``raw``: the generator's at that scale; ``finest``: the EMA
    generator's finest clips downsampled to it; the finest scale's own row is
    ``ema``), IS (and IS / C), Fréchet distance
    to train, NDB/K, median nearest-neighbour distance to train, median
    spectral flatness (tonality: lower is more tonal). At most 76 characters wide.

    Notebook: chapters/06_evaluation.ipynb
    """
    num_classes = len(metrics["class_names"])
    header = (f"{'scale':>5} {'rate':>5} {'acc':>5} {'source':>6} {'IS':>12} {'IS/C':>5} "
              f"{'FD':>8} {'NDB/K':>6} {'NN med':>7} {'flat':>6}")
    lines = [header, "-" * len(header)]
    for scale, entry in metrics["scales"].items():
        first = True
        for source in ("real", "ema", "raw", "finest"):
            if source not in entry or (source == "finest" and entry[source] == entry["ema"]):
                continue
            m = entry[source]
            prefix = (f"{scale:>5} {entry['sample_rate']:>5g} "
                      f"{entry['classifier_test_accuracy']:>5.2f}" if first else " " * 17)
            lines.append(f"{prefix} {source:>6} {m['inception_score']:>6.2f}±"
                         f"{m['inception_score_std']:<5.2f} "
                         f"{m['inception_score'] / num_classes:>5.2f} "
                         f"{m['frechet_distance']:>8.3g} {m['ndb_over_k']:>6.2f} "
                         f"{m['nn_median']:>7.3f} {_flatness_text(m):>6}")
            first = False
    lines.append("real: the real test clips; ema / raw: generated, EMA / raw weights;")
    lines.append("finest: EMA, finest scale downsampled to this one")
    return "\n".join(lines)


#: Targets of a run that sounds like its corpus (chapter 6): IS_gen / IS_real at
#: least ``is_ratio``; FD_gen / FD floor at most ``fd_ratio_low`` up to
#: ``low_rate_hz`` and ``fd_ratio_high`` above; the finest scale's median
#: spectral flatness within ``flatness_tolerance`` of the real clips'.
TARGETS = {"is_ratio": 0.7, "fd_ratio_low": 3.0, "fd_ratio_high": 10.0, "low_rate_hz": 1000.0,
           "flatness_tolerance": 0.25}


def check_targets(metrics: dict[str, Any], source: str = "ema",
                  targets: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Each scale of :func:`evaluate_run`'s result against :data:`TARGETS`.

    Args:
        metrics: ``metrics.json`` of a run.
        source: ``"ema"``, ``"raw"`` or ``"finest"`` (the finished generator's
            finest clips downsampled to each scale).
        targets: Replaces :data:`TARGETS`.

    Returns:
        One dict per scale: ``scale``, ``sample_rate``, ``is_ratio``, ``fd_ratio``,
        ``fd_limit``, ``flatness_ratio`` (gen / real), and booleans ``is_met``,
        ``fd_met`` and (finest scale only, else None) ``flatness_met``.

    Notebook: chapters/06_evaluation.ipynb
    """
    targets = {**TARGETS, **(targets or {})}
    scales = sorted(metrics["scales"], key=int)
    rows = []
    for scale in scales:
        entry = metrics["scales"][scale]
        real, gen = entry["real"], entry[source]
        rate = float(entry["sample_rate"])
        fd_limit = targets["fd_ratio_low"] if rate <= targets["low_rate_hz"] else \
            targets["fd_ratio_high"]
        flatness = (gen.get("spectral_flatness") / real["spectral_flatness"]
                    if gen.get("spectral_flatness") and real.get("spectral_flatness") else None)
        finest = scale == scales[-1]
        rows.append({
            "scale": int(scale), "sample_rate": rate,
            "is_ratio": gen["inception_score"] / real["inception_score"],
            "fd_ratio": gen["frechet_distance"] / real["frechet_distance"], "fd_limit": fd_limit,
            "flatness_ratio": flatness,
            "is_met": gen["inception_score"] / real["inception_score"] >= targets["is_ratio"],
            "fd_met": gen["frechet_distance"] / real["frechet_distance"] <= fd_limit,
            "flatness_met": (abs(flatness - 1.0) <= targets["flatness_tolerance"]
                             if finest and flatness is not None else None)})
    return rows


def format_targets_table(rows: list[dict[str, Any]]) -> str:
    """:func:`check_targets` as a plain-text table (``yes``/``no`` per target).

    Notebook: chapters/06_evaluation.ipynb
    """
    def flag(value):
        return "-" if value is None else ("yes" if value else "no")

    header = (f"{'scale':>5} {'rate':>6} {'IS/IS_real':>10} {'>=' + str(TARGETS['is_ratio']):>5} "
              f"{'FD/floor':>9} {'limit':>6} {'met':>4} {'flat/real':>9} {'met':>4}")
    lines = [header, "-" * len(header)]
    for r in rows:
        flat = "-" if r["flatness_ratio"] is None else f"{r['flatness_ratio']:.2f}"
        lines.append(f"{r['scale']:>5} {r['sample_rate']:>6g} {r['is_ratio']:>10.2f} "
                     f"{flag(r['is_met']):>5} {r['fd_ratio']:>9.1f} {r['fd_limit']:>6g} "
                     f"{flag(r['fd_met']):>4} {flat:>9} {flag(r['flatness_met']):>4}")
    return "\n".join(lines)
