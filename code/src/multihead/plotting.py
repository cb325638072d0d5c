"""Plotting helpers: attention heatmaps with token labels (chapters 1, 3, 6).

Figures are built with `matplotlib.figure.Figure`, not pyplot, so no backend or global state
is involved; a notebook displays a returned Figure inline.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from PIL import Image
from matplotlib.figure import Figure


def plot_attention(
    attn: torch.Tensor,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    colorbar: bool = True,
    vmax: float | None = 1.0,
) -> Axes:
    """Heatmap of one (T_q, T_k) weight matrix: query rows, key columns. Introduced in chapter 3.

    The colour scale runs from 0 to `vmax`; None scales it to the largest weight shown.
    """
    if attn.dim() != 2:
        raise ValueError(f"plot_attention takes one (T_q, T_k) matrix, got shape {tuple(attn.shape)}")
    T_q, T_k = attn.shape
    if ax is None:
        ax = Figure(figsize=(0.35 * T_k + 1.5, 0.35 * T_q + 1)).add_subplot()
    image = ax.imshow(attn.detach().float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=vmax)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for axis, labels, n in ((ax.xaxis, key_labels, T_k), (ax.yaxis, query_labels, T_q)):
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"{len(labels)} labels for an axis of length {n}")
            axis.set_ticks(range(n), labels)
    ax.tick_params(axis="x", labelrotation=90)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title)
    return ax


def plot_heads(attn: torch.Tensor, tokens: Sequence[str] | None = None, *, ncols: int = 4) -> Figure:
    """One heatmap panel per head for an (h, T_q, T_k) tensor. Introduced in chapter 3."""
    if attn.dim() != 3:
        raise ValueError(f"plot_heads takes (h, T_q, T_k), got shape {tuple(attn.shape)}")
    h = attn.shape[0]
    ncols = min(ncols, h)
    nrows = -(-h // ncols)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        if i < h:
            plot_attention(attn[i], tokens, tokens, ax=ax, title=f"head {i}")
        else:
            ax.set_visible(False)
    return fig


def figure_to_png(fig: Figure, dpi: int | None = None) -> bytes:
    """Compact PNG bytes of a figure, for precomputed widget states. Introduced in chapter 1.

    The image is reduced to a 256-colour palette: for plots and heatmaps this is about a third of
    the size of matplotlib's RGBA output, and it keeps pages with many widget states light.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    compact = io.BytesIO()
    image.save(compact, format="png", optimize=True)
    return compact.getvalue()


def plot_loss_curves(
    curves: dict[str, Sequence[Sequence[float]]], *, window: int = 25, every: int = 1, ax: Axes | None = None
) -> Axes:
    """Per-seed loss curves (thin) and their mean (thick), one colour per label. Introduced in chapter 1.

    A curve holds one loss per `every` training steps (a recorded run keeps block means); each
    curve is smoothed with a moving average over `window` of its points.
    """
    if ax is None:
        ax = Figure(figsize=(6, 3.2), layout="constrained").add_subplot()
    for colour, (label, runs) in zip(("C0", "C1", "C2", "C3", "C4", "C5"), curves.items()):
        smooth = torch.tensor([list(run) for run in runs]).unfold(1, window, 1).mean(-1)  # (seeds, points - window + 1)
        steps = (torch.arange(smooth.shape[1]) + window) * every  # the training step at each window's end
        for run in smooth:
            ax.plot(steps, run, color=colour, alpha=0.3, linewidth=1)
        mean_label = label if len(runs) == 1 else f"{label} (mean of {len(runs)})"
        ax.plot(steps, smooth.mean(0), color=colour, linewidth=2.5, label=mean_label)
    ax.set(xlabel="training step", ylabel="loss", ylim=(0, None))
    ax.legend()
    return ax


def plot_flow(steps: Sequence[tuple[str, str]], *, title: str | None = None) -> Figure:
    """A top-to-bottom chain of boxes, one per (operation, shape) step. Introduced in chapter 5."""
    n = len(steps)
    fig = Figure(figsize=(6.4, 0.62 * n + 0.4), layout="constrained")
    ax = fig.add_subplot()
    ax.set(xlim=(0, 10), ylim=(-n + 0.4, 0.8))
    ax.axis("off")
    for i, (operation, shape) in enumerate(steps):
        y = -i
        ax.text(3.2, y, operation, ha="center", va="center", fontsize=10,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": "#e8eef7", "edgecolor": "#4a6fa5"})
        ax.text(6.6, y, shape, ha="left", va="center", fontsize=10, family="monospace")
        if i < n - 1:
            ax.annotate("", xy=(3.2, y - 0.68), xytext=(3.2, y - 0.32),
                        arrowprops={"arrowstyle": "->", "color": "#4a6fa5"})
    if title:
        ax.set_title(title)
    return fig
