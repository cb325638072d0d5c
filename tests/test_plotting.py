"""The plotting helpers: what they draw, and their errors."""

import io

import pytest
import torch
from PIL import Image

from multihead.plotting import VIRIDIS_LEVELS, _palette, heatmap_png, plot_head_grid


def test_heatmap_png_draws_each_weight_in_its_colour() -> None:
    weights = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    tokens = ["[CLS]", "cat", "[SEP]"]
    image = Image.open(io.BytesIO(heatmap_png(weights, tokens, "layer 0, head 2", cell=10)))
    assert image.mode == "P" and image.format == "PNG"
    palette = _palette()
    # find the grid: its top-left cell has weight 1, the brightest viridis colour
    pixels = image.load()
    found = [(x, y) for y in range(image.height) for x in range(image.width) if pixels[x, y] == VIRIDIS_LEVELS - 1]
    x0, y0 = min(found)
    for q in range(3):
        for k in range(3):
            index = pixels[x0 + 10 * k + 5, y0 + 10 * q + 5]  # the middle of cell (q, k)
            assert index == round(weights[q, k].item() * (VIRIDIS_LEVELS - 1))
    assert len(palette) == 3 * (VIRIDIS_LEVELS + 16)


def test_heatmap_png_rejects_what_it_cannot_draw() -> None:
    with pytest.raises(ValueError, match=r"one square \(T, T\) matrix, got shape \(2, 3\)"):
        heatmap_png(torch.zeros(2, 3), ["a", "b"])
    with pytest.raises(ValueError, match="2 labels for a 3 x 3 matrix"):
        heatmap_png(torch.zeros(3, 3), ["a", "b"])


def test_plot_head_grid_tiles_every_head() -> None:
    weights = torch.rand(2, 3, 4, 4).softmax(-1)  # (layers, h, T, T)
    fig = plot_head_grid(weights)
    ax = fig.axes[0]
    tiles = ax.images[0].get_array()
    assert tiles.shape == (2 * 5 - 1, 3 * 5 - 1)  # one gap between tiles
    torch.testing.assert_close(torch.tensor(tiles[5:9, 10:14].data), weights[1, 2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"\(layers, h, T, T\), got shape \(3, 4, 4\)"):
        plot_head_grid(weights[0])


def test_loss_curves_tell_their_labels_apart_by_marker_as_well_as_colour() -> None:
    from multihead.plotting import plot_loss_curves

    curves = {f"h={h}": [[1.0] * 40, [2.0] * 40] for h in (1, 2, 4)}
    ax = plot_loss_curves(curves, window=5)
    means = [line for line in ax.get_lines() if line.get_label().startswith("h=")]
    assert len({line.get_marker() for line in means}) == 3
    with pytest.raises(ValueError, match="at most 6 labels, got 7"):
        plot_loss_curves({str(i): [[1.0] * 10] for i in range(7)}, window=2)
