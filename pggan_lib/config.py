"""Presets, data-shape defaults and the quick-mode switch.

Everything that sizes a run lives here, so that a chapter, a test and the
command line agree on what "quick" or "reference" means.

Notebook: chapters/01_audio_fundamentals.ipynb
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

#: True when the ``PGGAN_QUICK`` environment variable is ``"1"``: chapters and
#: tests shrink every size and step count so that they run on a 2-core CPU.
QUICK = os.environ.get("PGGAN_QUICK", "0") == "1"

#: Sample rate of the finest progressive scale (Hz).
DEFAULT_SAMPLE_RATE = 16_000
#: Number of progressive scales K (scale 0 is the coarsest).
DEFAULT_NUM_SCALES = 7
#: What a chapter's quick mode does to a training preset: a handful of steps per
#: phase (it shows the mechanics of growing, not a trained model) and no XLA, whose
#: compile time per phase is longer than such a short phase on a CPU.
QUICK_TRAIN_OVERRIDES = {"stable_steps": (20, 10, 6, 4, 3, 2, 1),
                         "fade_steps": (0, 4, 4, 3, 2, 2, 2), "jit_compile": False}


def chapter_train_overrides() -> dict:
    """Preset overrides of a chapter's training runs: :data:`QUICK_TRAIN_OVERRIDES` in quick mode.

    Returns:
        A new dict, empty unless :data:`QUICK` (full mode trains the preset as it ships).

    Notebook: chapters/03_progressive_model.ipynb
    """
    return dict(QUICK_TRAIN_OVERRIDES) if QUICK else {}


#: Samples of one clip at the finest scale (1.024 s at 16 kHz; 256 samples at
#: the coarsest of 7 scales).
DEFAULT_CLIP_SAMPLES = 16_384

#: Root of the repository checkout (where ``data/`` and ``results/`` live).
REPO_ROOT = Path(__file__).resolve().parent.parent
#: True when running from a source checkout rather than an installed wheel
#: (in Colab, REPO_ROOT would be site-packages: no place for data).
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").exists()
#: Where the embedded default corpus and its dataset are built: ``data/`` in a
#: checkout, else ``pggan_data/`` in the working directory. Override with
#: ``PGGAN_DATA_DIR``.
DATA_DIR = Path(os.environ.get(
    "PGGAN_DATA_DIR", REPO_ROOT / "data" if IN_CHECKOUT else Path.cwd() / "pggan_data"))
DEMO_CORPUS_DIR = DATA_DIR / "demo_corpus"
DEMO_DATASET_DIR = DATA_DIR / "demo_dataset"
#: Size of the embedded default corpus: up to 16 excerpts of at most 15 s per
#: class, so that the test split (a fifth of each class, by file) holds at
#: least 3 pieces per class.
DEMO_MINUTES_PER_CLASS = 4.0
DEMO_MAX_EXCERPT_SECONDS = 15.0
#: Committed artefacts of documented long runs (``results/`` of the checkout).
RESULTS_DIR = REPO_ROOT / "results" if IN_CHECKOUT else Path.cwd() / "results"
#: The committed reference run (``pggan train --preset reference`` on the demo corpus).
REFERENCE_RUN_DIR = RESULTS_DIR / "reference"
#: The reference run before sub-pixel upsampling and the log-spectrum term (FIR
#: upsampling; same schedule otherwise), kept to compare against (``SUMMARY.md``'s
#: before/after).
PREVIOUS_REFERENCE_RUN_DIR = RESULTS_DIR / "reference_fir"
#: The run before that: the noise among the augmentations.
NOISE_REFERENCE_RUN_DIR = RESULTS_DIR / "reference_noise"
#: The run before that: skip outputs, He's heads.
SKIPS_REFERENCE_RUN_DIR = RESULTS_DIR / "reference_skips"
#: The run before skip outputs (PGGAN's head, He's heads). Chapter 5 compares all four.
PGGAN_HEAD_REFERENCE_RUN_DIR = RESULTS_DIR / "reference_pggan_head"
#: Fields every run folder's ``config.json`` has (a reader names a missing one).
RUN_CONFIG_FIELDS = ("preset", "model_spec", "loss", "activation", "dataset", "schedule")


def is_fft_length(value: int) -> bool:
    """Whether ``value`` is an FFT length the library takes: a power of 2 >= 4
    (``layers.LogSpectrogram``, ``Preset.critic_spectrum``)."""
    return value >= 4 and not value & (value - 1)


def spectrum_frame(fft_length: int, samples: int) -> int:
    """The frame a log spectrogram of ``fft_length`` uses on a clip of ``samples``:
    halved until the clip holds four frames (at least 4 samples).

    ``models.ProgressiveCritic``'s spectrogram branch and
    ``losses.log_spectrum_gap`` use it at every scale: 512 at 16 kHz, 64 at 250 Hz
    for the default pyramid.
    """
    while fft_length > max(samples // 4, 4):
        fft_length //= 2
    return fft_length


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


# ---------------------------------------------------------------------------
# Training presets
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Preset:
    """How long, how wide and how fast to train; never the data's shape.

    The number of scales and the clip length come from the dataset's
    manifest, so one preset serves any dataset. Per-scale tuples are indexed
    coarse -> fine; a tuple shorter than the dataset's number of scales
    repeats its last value, a longer one is cut.

    Attributes:
        name: Preset name (a key of :data:`PRESETS`).
        description: One line for ``pggan train --help``.
        channels: Feature channels per scale (generator and critic).
        latent_dim: Size of the latent vector z.
        kernel_size: 1-D convolution kernel size.
        batch_sizes: Global batch size per scale.
        stable_steps: Optimiser steps of each scale's stable phase (int or per scale).
        fade_steps: Steps of each fade-in phase, alpha 0 -> 1 (int or per scale;
            scale 0 has no fade-in).
        n_critic: Critic updates per generator update.
        learning_rate, beta_1, beta_2: Adam settings of both players (PGGAN:
            0.001, 0.0, 0.99); ``learning_rate`` may be per scale.
        gp_weight: Weight of the critic's penalty: lambda of WGAN-GP, gamma of R1.
        penalty: ``"gp"`` (WGAN-GP's, on real/fake interpolates, towards norm 1)
            or ``"r1"`` (on real clips, towards 0; ``losses.r1_penalty``).
        drift_weight: PGGAN's drift weight on ``D(x)^2`` (WGAN-GP loss only).
        ema_decay: Decay of the generator's exponential moving average.
        checkpoint_every: Steps between checkpoints (also one at each phase end).
        log_every: Steps between TensorBoard scalars / history flushes.
        sample_every: Steps between extra audio samples (0 = only at phase ends).
        num_samples: Clips written per sample point.
        mixed_precision: None, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        jit_compile: Compile the train step with XLA.
        min_clip_samples: Shortest finest-scale clip the preset is meant for
            (``train`` refuses a dataset with shorter clips).
        loss: Default loss, ``"wgan-gp"`` or ``"report"``.
        activation: Default hidden activation (``report|leaky|linear|tanh``).
        minibatch_group_size: Group size of minibatch standard deviation.
        phase_shuffle: Critic phase-shuffle radius in samples (WaveGAN: 2; 0 = off).
        data: ``"clips"`` (the dataset's fixed clips, shuffled) or ``"windows"``
            (windows at random offsets of whole files, ``data.make_window_dataset``).
        augment: Differentiable augmentations applied to real and generated
            audio in both players' steps (names from ``layers.AUGMENT_NAMES``).
        output_skips: The generator's output is the sum of every scale's
            upsampled output (``models.ModelSpec.output_skips``), so coarse
            scales keep shaping the finest clip after the network grows.
        silent_heads: The generator's to-waveform heads start at zero
            (``models.ModelSpec.silent_heads``) instead of as a loud hum.
        head_std: The heads' initial standard deviation when not silent
            (``models.ModelSpec.head_std``; 1 = He's).
        feature_pixel_norm: PGGAN's pixel norm after every convolution of the
            waveform generator (``models.ModelSpec.feature_pixel_norm``; the
            latent's stays). At audio rate it rescales every sample on its own,
            which puts power into the top octave (chapter 5, "Where the hiss is
            made").
        critic_emphasis: Coefficient of the pre-emphasis filter in front of
            the progressive waveform critic (``models.ModelSpec.critic_emphasis``;
            0 = none).
        critic_spectrum: FFT length of the progressive waveform critic's
            log-spectrogram branch (``models.ModelSpec.critic_spectrum``; 0 = none).
        upsample: How the progressive waveform generator doubles the rate in each
            block: ``"fir"`` (low-passed zero insertion) or ``"subpixel"``
            (``models.ModelSpec.upsample``).
        spectrum_match: Weight of a term added to the generator's loss: the
            squared gap between the batch's mean log power spectrum and the real
            batch's (``losses.log_spectrum_gap``, frames of
            :func:`spectrum_frame` ``(512, samples)``; 0 = none). It sees the
            noise floor between partials, which a critic penalised towards
            1-Lipschitz in the waveform's L2 barely feels.
        representation: What the GAN grows over: ``"waveform"`` (the report's
            sample-rate pyramid), ``"spectral"`` (log magnitude + instantaneous
            frequency) or ``"magnitude"`` (log magnitude, Griffin-Lim phase);
            see :mod:`pggan_lib.representations`. The spectrogram models are
            unconditional, use 3 x 3 kernels, and train without ``augment``
            (its transforms act on waveforms).
        scale_gains: Loudness of the random windows at each scale:
            ``"per_scale"`` (each scale of a file normalised on its own) or
            ``"finest"`` (every scale takes the finest scale's gain, so a
            coarse scale is the finest clip low-passed, at its level).
        architecture: ``"progressive"`` or ``"wavegan"``: the non-progressive
            WaveGAN players (``models.WaveGANGenerator``), trained on the
            finest scale alone (every other scale's steps must be 0).

    Notebook: chapters/03_progressive_model.ipynb
    """

    name: str
    description: str
    channels: tuple = (32,)
    latent_dim: int = 64
    kernel_size: int = 9
    batch_sizes: tuple = (16,)
    stable_steps: object = 100
    fade_steps: object = 100
    n_critic: int = 1
    learning_rate: object = 1e-3
    beta_1: float = 0.0
    beta_2: float = 0.99
    gp_weight: float = 10.0
    penalty: str = "gp"
    drift_weight: float = 1e-3
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    log_every: int = 10
    sample_every: int = 0
    num_samples: int = 4
    mixed_precision: object = None
    jit_compile: bool = True
    min_clip_samples: int = 0
    loss: str = "wgan-gp"
    activation: str = "leaky"
    minibatch_group_size: int = 4
    phase_shuffle: int = 2
    data: str = "clips"
    augment: tuple = ()
    output_skips: bool = False
    silent_heads: bool = False
    head_std: float = 1.0
    critic_emphasis: float = 0.0
    critic_spectrum: int = 0
    spectrum_match: float = 0.0
    upsample: str = "fir"
    feature_pixel_norm: bool = True
    representation: str = "waveform"
    architecture: str = "progressive"
    scale_gains: str = "per_scale"

    def per_scale(self, field: str, num_scales: int) -> tuple:
        """Expand a per-scale field to exactly ``num_scales`` values (coarse -> fine)."""
        value = getattr(self, field)
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        return (values + values[-1:] * num_scales)[:num_scales]

    def finest_scale_only(self, num_scales: int) -> "Preset":
        """A copy that spends the whole schedule's steps at the finest scale.

        No growing: every step of the stable and fade phases moves to the
        finest scale's stable phase (the way the WaveGAN peer trains,
        ``architecture="wavegan"``).

        Args:
            num_scales: Scales of the dataset (K).
        """
        total = (sum(self.per_scale("stable_steps", num_scales))
                 + sum(self.per_scale("fade_steps", num_scales)[1:]))
        return self.single_scale(num_scales - 1, num_scales, total)

    def single_scale(self, scale: int, num_scales: int, steps: int) -> "Preset":
        """A copy that trains scale ``scale`` alone, for ``steps`` steps.

        Every other phase gets 0 steps, so training starts at ``scale`` and
        ends there (the peers that do not grow; ``finest_scale_only``).

        Args:
            scale: The scale trained (0 = coarsest).
            num_scales: Scales of the dataset (K).
            steps: Steps of that scale's stable phase.
        """
        if not 0 <= scale < num_scales:
            raise ValueError(f"scale must be in [0, {num_scales - 1}], got {scale}")
        stable = tuple(int(steps) if k == scale else 0 for k in range(num_scales))
        return self.replace(stable_steps=stable, fade_steps=(0,) * num_scales)

    def replace(self, **changes) -> "Preset":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


#: Values of ``Preset.representation`` (:mod:`pggan_lib.representations`).
REPRESENTATIONS = ("waveform", "spectral", "magnitude")
#: Values of ``Preset.architecture`` (and ``models.ModelSpec.architecture``).
ARCHITECTURES = ("progressive", "wavegan")
#: Values of ``Preset.upsample`` (``models.ModelSpec.upsample``).
UPSAMPLERS = ("fir", "subpixel")
#: The fields only the progressive waveform players have, each at its "off" value
#: (``training`` refuses any other value for the spectrogram or WaveGAN players).
WAVEFORM_PLAYER_FIELDS = {"critic_emphasis": 0.0, "critic_spectrum": 0, "spectrum_match": 0.0,
                          "upsample": "fir", "feature_pixel_norm": True}


def for_players(preset: Preset, keep=()) -> Preset:
    """``preset`` with its waveform-only fields off when its players are not the
    progressive waveform ones, so that ``--representation spectral`` works with a
    preset tuned for waveforms.

    Args:
        preset: A :class:`Preset`, overrides applied.
        keep: Fields the caller set on purpose (overrides); they stay, so that
            training refuses them with a message naming the field.

    Returns:
        The :class:`Preset`; unchanged for progressive waveform players.

    Notebook: chapters/08_which_representation.ipynb
    """
    if preset.representation == "waveform" and preset.architecture == "progressive":
        return preset
    return preset.replace(**{field: off for field, off in WAVEFORM_PLAYER_FIELDS.items()
                             if field not in keep})


#: Values of ``Preset.penalty``: WGAN-GP's (``losses.gradient_penalty``) or R1
#: (``losses.r1_penalty``).
PENALTIES = ("gp", "r1")
#: Values of ``Preset.scale_gains`` (``data.make_window_dataset(gain_scale=)``).
SCALE_GAINS = ("per_scale", "finest")

#: The augmentations the presets use: all of ``layers.AUGMENT_NAMES`` but the
#: noise. White noise at -40 dBFS lies above the corpus's 4-8 kHz octave, and no
#: measurement says it helps; taking it out did not remove the hiss the generator
#: makes there (chapter 5, "What the noise hides").
DEFAULT_AUGMENT = ("gain", "polarity", "shift", "cutout")
#: The augmentations of the presets the committed studies measured (with the noise).
STUDIED_AUGMENT = ("gain", "polarity", "shift", "cutout", "noise")

#: How the presets' generators make each new octave: learned sub-pixel filters
#: plus the log-spectrum term in the generator's loss. The peer arm
#: pggan_subpixel_match, 3 seeds x 400 CPU-s at 16 kHz (results/representations):
#: FD 24.0±2.0 x the floor and flatness 0.65x the corpus's, against 139.8±57.4 and
#: 20.8x for the FIR players it replaces (chapter 5, "Notes or noise").
PRESET_UPSAMPLING = {"upsample": "subpixel", "spectrum_match": 1.0}

#: Named presets. ``tiny`` exists for tests and smoke checks (seconds). The
#: quick, reference and colab presets train on random windows with DiffAugment:
#: ``results/study`` (chapter 5) measured both at equal CPU time.
PRESETS = {
    "tiny": Preset(
        name="tiny",
        description="seconds; for tests and smoke checks only (learns nothing)",
        channels=(8,), latent_dim=8, kernel_size=3, batch_sizes=(4,),
        stable_steps=4, fade_steps=4, ema_decay=0.9, checkpoint_every=3, log_every=2,
        num_samples=2, jit_compile=False, minibatch_group_size=2, phase_shuffle=0),
    "quick": Preset(
        name="quick",
        description="every scale in about 3 minutes on a 2-core CPU (a smoke run, not music)",
        channels=(32, 32, 24, 16, 16, 16, 16), latent_dim=32, kernel_size=9,
        batch_sizes=(8,), stable_steps=(40, 30, 30, 20, 15, 15, 15),
        fade_steps=(0, 15, 15, 15, 15, 15, 15),
        ema_decay=0.99, checkpoint_every=100, log_every=10, num_samples=4,
        # XLA measured slower than plain graphs for these 1-D convs on CPU.
        jit_compile=False, data="windows", augment=DEFAULT_AUGMENT, output_skips=False,
        head_std=0.1, **PRESET_UPSAMPLING),
    "reference": Preset(
        name="reference",
        description="the longest useful run on 2 CPU cores: about an hour",
        channels=(64, 64, 48, 32, 24, 16, 16), latent_dim=64, kernel_size=9,
        batch_sizes=(16, 16, 16, 16, 8, 8, 8),
        # Time weighted toward the coarse scales, where a step costs least (0.07 s
        # at scale 0 against 0.8 s at scale 6 in the previous run's history).
        stable_steps=(3000, 1600, 800, 600, 500, 600, 1000),
        fade_steps=(0, 400, 400, 400, 300, 300, 400),
        # EMA half-life 69 steps: 0.999's 693 outlasted most of these phases. Learning
        # rate 2e-3: the clearest win of results/study (measured at scale 0 only).
        learning_rate=2e-3, ema_decay=0.99, checkpoint_every=250, log_every=25, num_samples=8,
        # PGGAN's head starting at a tenth of He's std: the growth study's best arm
        # (pggan_quiet) at every scale it trained, every seed (results/study/growth.json).
        jit_compile=False, data="windows", augment=DEFAULT_AUGMENT, output_skips=False,
        head_std=0.1, **PRESET_UPSAMPLING),
    "colab": Preset(
        name="colab",
        description="one Colab GPU for hours (chapter 5 derives the cost from the model's "
                    "FLOPs); needs 4.096 s clips (`pggan dataset --clip-samples 65536`)",
        # Sized by FLOPs (profiling.run_flops): convolution cost grows with channels
        # squared times clip length, so the long fine scales stay narrow.
        channels=(128, 128, 128, 64, 64, 32, 32), latent_dim=128, kernel_size=25,
        batch_sizes=(64, 64, 64, 32, 32, 16, 16),
        stable_steps=(4000, 4000, 4000, 4000, 4000, 5000, 6000),
        fade_steps=(0, 3000, 3000, 3000, 3000, 4000, 4000),
        ema_decay=0.999, checkpoint_every=1000, log_every=50, sample_every=2000,
        num_samples=8, mixed_precision="mixed_float16", jit_compile=True,
        min_clip_samples=65_536, data="windows", augment=DEFAULT_AUGMENT, output_skips=False,
        head_std=0.1, **PRESET_UPSAMPLING),
}

#: The presets as the committed studies measured them (skip outputs, He's heads,
#: noise among the augmentations, FIR upsampling, no log-spectrum term).
#: A study arm names its base preset (``StudyArm.preset``, ``AblationBudget.base_preset``)
#: and is built from this copy, so the live presets can take the winners while every
#: committed arm keeps its meaning.
STUDIED_PRESETS = {name: preset.replace(output_skips=name != "tiny", head_std=1.0,
                                        augment=STUDIED_AUGMENT if preset.augment else (),
                                        upsample="fir", spectrum_match=0.0)
                   for name, preset in PRESETS.items()}


def studied_preset(name: str) -> Preset:
    """The preset called ``name`` as the committed studies measured it (:data:`STUDIED_PRESETS`).

    Notebook: chapters/05_training_on_gpu.ipynb
    """
    preset = get_preset(name)  # a Preset passes through; the same message for a bad name
    return STUDIED_PRESETS.get(preset.name, preset) if isinstance(name, str) else preset


def get_preset(name) -> Preset:
    """Return the preset called ``name`` (a :class:`Preset` passes through).

    Args:
        name: ``"quick"``, ``"reference"``, ``"colab"`` or ``"tiny"``, or a Preset.

    Returns:
        The :class:`Preset`.

    Raises:
        ValueError: For an unknown name; the message lists the valid ones.

    Notebook: chapters/03_progressive_model.ipynb
    """
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; valid presets: "
                         f"{', '.join(sorted(PRESETS))}") from None
