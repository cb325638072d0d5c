"""Plotting helpers: attention heatmaps with token labels (chapters 1, 3, 6, 7).

Figures are built with `matplotlib.figure.Figure`, not pyplot, so no backend or global state
is involved; a notebook displays a returned Figure inline.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from PIL import Image, ImageDraw, ImageFont
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


CURVE_STYLES = [("C0", "o"), ("C1", "s"), ("C2", "^"), ("C3", "D"), ("C4", "v"), ("C5", "P")]


def plot_loss_curves(
    curves: dict[str, Sequence[Sequence[float]]], *, window: int = 25, every: int = 1, ax: Axes | None = None
) -> Axes:
    """Per-seed loss curves (thin) and their mean (thick), one colour and one marker per label.
    Introduced in chapter 1.

    A curve holds one loss per `every` training steps (a recorded run keeps block means); each
    curve is smoothed with a moving average over `window` of its points. The markers tell the
    means apart where colours cannot (in grey print, or for a reader who does not see the hue).
    """
    if len(curves) > len(CURVE_STYLES):
        raise ValueError(f"plot_loss_curves draws at most {len(CURVE_STYLES)} labels, got {len(curves)}")
    if ax is None:
        ax = Figure(figsize=(6, 3.2), layout="constrained").add_subplot()
    for (colour, marker), (label, runs) in zip(CURVE_STYLES, curves.items()):
        smooth = torch.tensor([list(run) for run in runs]).unfold(1, window, 1).mean(-1)  # (seeds, points - window + 1)
        steps = (torch.arange(smooth.shape[1]) + window) * every  # the training step at each window's end
        for run in smooth:
            ax.plot(steps, run, color=colour, alpha=0.3, linewidth=1)
        mean_label = label if len(runs) == 1 else f"{label} (mean of {len(runs)})"
        markevery = max(1, smooth.shape[1] // 8)  # about eight markers per curve
        ax.plot(steps, smooth.mean(0), color=colour, linewidth=2.5, marker=marker, markevery=markevery, label=mean_label)
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


VIRIDIS_LEVELS = 64  # palette entries 0..63: viridis from 0 to 1; 64..79: greys for the text


@functools.cache
def _palette() -> list[int]:
    """An 80-colour palette: viridis for the weights, then 16 greys from black to white."""
    from matplotlib import colormaps

    colours = colormaps["viridis"](torch.linspace(0, 1, VIRIDIS_LEVELS).numpy())[:, :3] * 255
    greys = [[round(255 * g / 15)] * 3 for g in range(16)]
    return [round(c) for rgb in colours.tolist() + greys for c in rgb]


@functools.cache
def _label_font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


@functools.cache
def _key_labels(tokens: tuple[str, ...], cell: int, size: int) -> Image.Image:
    """The key labels ("L" image), written upwards under each column as `plot_attention` writes them."""
    font = _label_font(size)
    width = int(max(font.getlength(t) for t in tokens)) + 4
    strip = Image.new("L", (width, cell * len(tokens)), 255)  # one row per token, then turned
    draw = ImageDraw.Draw(strip)
    for i, token in enumerate(tokens):
        draw.text((width - 2, i * cell + cell / 2), token, fill=0, font=font, anchor="rm")
    return strip.rotate(90, expand=True, fillcolor=255)  # row 0 becomes the leftmost column


def heatmap_png(attn: torch.Tensor, tokens: Sequence[str], title: str = "", *, cell: int = 14) -> bytes:
    """One (T, T) weight matrix as a small PNG: query rows, key columns, token labels. Introduced in chapter 7.

    Drawn with PIL straight into a fixed palette in about 2 ms, against about 100 for a
    matplotlib figure, so a widget can hold hundreds of them. The colours are
    `plot_attention`'s: viridis from 0 to 1.
    """
    if attn.dim() != 2 or attn.shape[0] != attn.shape[1]:
        raise ValueError(f"heatmap_png takes one square (T, T) matrix, got shape {tuple(attn.shape)}")
    T = attn.shape[0]
    if len(tokens) != T:
        raise ValueError(f"{len(tokens)} labels for a {T} x {T} matrix")
    size = max(8, cell - 3)
    font = _label_font(size)
    keys = _key_labels(tuple(tokens), cell, size)
    left = int(max(font.getlength(t) for t in tokens)) + 6
    top = size + 8 if title else 4
    text = Image.new("L", (left + T * cell + 4, top + T * cell + keys.height), 255)  # labels, black on white
    text.paste(keys, (left, top + T * cell))
    draw = ImageDraw.Draw(text)
    for i, token in enumerate(tokens):
        draw.text((left - 3, top + i * cell + cell / 2), token, fill=0, font=font, anchor="rm")
    if title:
        draw.text((left, 3), title, fill=0, font=font)
    canvas = text.point([VIRIDIS_LEVELS + v // 16 for v in range(256)])  # grey level -> its palette entry
    canvas.putpalette(_palette())  # now a "P" image
    levels = (attn.detach().float().clamp(0, 1) * (VIRIDIS_LEVELS - 1)).round().to(torch.uint8)  # (T, T)
    grid = Image.fromarray(levels.numpy(), mode="L").resize((T * cell, T * cell), Image.Resampling.NEAREST)
    canvas.paste(grid, (left, top))  # palette indices, copied as they are
    buffer = io.BytesIO()
    canvas.save(buffer, format="png")
    return buffer.getvalue()


def plot_head_grid(weights: torch.Tensor, *, gap: int = 1) -> Figure:
    """Every head's (T, T) weights, layers as rows and heads as columns, in one image. Introduced in chapter 7.

    weights has shape (layers, h, T, T). One `imshow` of a tiled array draws all of them at the
    cost of one; `gap` white cells separate the tiles.
    """
    if weights.dim() != 4:
        raise ValueError(f"plot_head_grid takes (layers, h, T, T), got shape {tuple(weights.shape)}")
    L, h, T, _ = weights.shape
    step = T + gap
    tiles = torch.full((L * step - gap, h * step - gap), float("nan"))  # NaN shows as the background
    for layer in range(L):
        for head in range(h):
            tiles[layer * step : layer * step + T, head * step : head * step + T] = weights[layer, head]
    fig = Figure(figsize=(0.62 * h + 0.8, 0.62 * L + 0.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(tiles.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([head * step + (T - 1) / 2 for head in range(h)], [str(head) for head in range(h)])
    ax.set_yticks([layer * step + (T - 1) / 2 for layer in range(L)], [str(layer) for layer in range(L)])
    ax.set(xlabel="head", ylabel="layer")
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return fig
