"""Interactive explorers for notebooks (ipywidgets), each with a static twin.

ipywidgets need a live kernel (or their JavaScript from a CDN) to draw; a
rendered page shows the static twin instead, so a chapter calls both.

Notebook: chapters/07_playing_with_the_generator.ipynb
"""

from __future__ import annotations

from typing import Sequence

import IPython.display as ipd
import matplotlib.pyplot as plt
import numpy as np

from pggan_lib import plots

__all__ = ["latent_explorer", "interpolation_figure"]


def _clip_view(playground, seed_a, seed_b, t, class_name, title):
    clip = playground.interpolate(seed_a, seed_b, [t], class_name or None)[0]
    fig, ax = plt.subplots(figsize=(7, 2.2))
    plots.plot_spectrogram(clip, playground.sample_rate, ax=ax, title=title)
    plt.show()
    ipd.display(ipd.Audio(clip, rate=playground.sample_rate, normalize=True))


def latent_explorer(playground, max_seed: int = 999):
    """Sliders for seed A, seed B, position t along their slerp (and class).

    Every change generates the clip at ``slerp(z_A, z_B, t)`` and shows its
    spectrogram and a player.

    Args:
        playground: A :class:`pggan_lib.playground.Playground`.
        max_seed: Largest seed on the sliders.

    Returns:
        An ``ipywidgets.VBox`` (display it as a cell's last value).

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    import ipywidgets as widgets

    seed_a = widgets.IntSlider(value=1, min=0, max=max_seed, description="seed A")
    seed_b = widgets.IntSlider(value=2, min=0, max=max_seed, description="seed B")
    t = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="t")
    names = playground.class_names if playground.conditional else []
    class_name = widgets.Dropdown(options=[""] + names, value="", description="class",
                                  disabled=not playground.conditional)
    output = widgets.Output()

    def redraw(_=None):
        output.clear_output(wait=True)
        with output:
            _clip_view(playground, seed_a.value, seed_b.value, t.value, class_name.value,
                       f"slerp(seed {seed_a.value}, seed {seed_b.value}, t = {t.value:.2f})")

    for control in (seed_a, seed_b, t, class_name):
        control.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([seed_a, seed_b]), widgets.HBox([t, class_name]), output])


def interpolation_figure(playground, seed_a: int, seed_b: int,
                         positions: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                         class_name: str | None = None):
    """The static twin of :func:`latent_explorer`: spectrograms along one slerp.

    Returns:
        ``(figure, clips)``: the figure (one panel per position, at most three
        per row, 7.5 inches wide) and the clips, float32
        ``(len(positions), clip_samples)``.

    Notebook: chapters/07_playing_with_the_generator.ipynb
    """
    clips = playground.interpolate(seed_a, seed_b, positions, class_name)
    columns = min(3, len(positions))
    rows = -(-len(positions) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7.5, 2.3 * rows), sharey=True,
                             squeeze=False)
    for ax in axes.ravel()[len(positions):]:
        ax.set_visible(False)
    for ax, clip, position in zip(axes.ravel(), clips, positions):
        plots.plot_spectrogram(clip, playground.sample_rate, ax=ax, title=f"t = {position:.2f}")
    fig.suptitle(f"slerp from seed {seed_a} (t = 0) to seed {seed_b} (t = 1)", fontsize=10)
    fig.tight_layout()
    return fig, clips
