import base64

import ipywidgets as widgets
import pytest

from multihead.widgets import (
    PrecomputedView,
    choice,
    image_view,
    selection,
    shape_explorer,
    shape_trace,
    toggle,
    visible_text,
)


def test_shape_trace_of_running_example() -> None:
    shapes = {step: shape for step, _, shape in shape_trace(4, 16, 512, 4)}
    assert shapes == {
        "input": (4, 16, 512),
        "project": (4, 16, 512),
        "split": (4, 16, 4, 128),
        "heads first": (4, 4, 16, 128),
        "scores": (4, 4, 16, 16),
        "attend": (4, 4, 16, 128),
        "merge": (4, 16, 512),
        "mix": (4, 16, 512),
    }


def test_explorer_starts_on_running_example() -> None:
    explorer = shape_explorer()
    assert [c.value for c in explorer.controls] == [4, 16, 512, 4]
    shown = explorer.shown().value
    assert "d_k = 512 / 4 = <b>128</b>" in shown and "(4, 4, 16, 128)" in shown


@pytest.mark.parametrize(("values", "expected"), [((32, 1024, 768, 12), "(32, 12, 1024, 64)"), ((1, 128, 256, 8), "(1, 8, 128, 32)")])
def test_explorer_follows_controls(values: tuple[int, ...], expected: str) -> None:
    explorer = shape_explorer()
    for control, value in zip(explorer.controls, values):
        control.value = value
    assert expected in explorer.shown().value


def test_explorer_explains_indivisible_d_model() -> None:
    explorer = shape_explorer()
    explorer.controls[3].value = 3  # 512 / 3
    shown = explorer.shown().value
    assert "d_model=512 is not divisible by num_heads=3" in shown
    assert "1, 2, 4, 8, 16" in shown and "Traceback" not in shown


def test_every_state_is_precomputed_and_linked_in_the_browser() -> None:
    explorer = shape_explorer()
    assert len(explorer.leaves) == 3 * 3 * 3 * 8
    # Each Stack level is driven by one control through a browser-side link.
    stack = explorer.view.children[-1]  # below the panel of controls
    for depth, control in enumerate(explorer.controls):
        assert isinstance(stack, widgets.Stack)
        assert any(link.source == (control, "index") and link.target == (stack, "selected_index") for link in explorer.links)
        stack = stack.children[control.index]
    assert stack is explorer.shown()
    assert "shape-explorer" in explorer.view._dom_classes


def test_precomputed_view_renders_each_combination_once() -> None:
    calls = []

    def render(a: int, b: str) -> widgets.HTML:
        calls.append((a, b))
        return widgets.HTML(f"{a}{b}")

    view = PrecomputedView([selection("a", [1, 2], 1), selection("b", ["x", "y", "z"], "z")], render, "demo")
    assert sorted(calls) == [(a, b) for a in (1, 2) for b in "xyz"]
    assert view.shown().value == "1z"
    view.controls[0].value = 2
    assert view.shown().value == "2z"


def test_image_view_holds_one_png_per_state_each_with_its_alt_text() -> None:
    view = image_view(
        [selection("h", [1, 4], 4), selection("seed", [0, 1, 2], 0)],
        lambda h, s: bytes([h, s]),
        "runs",
        alt=lambda h, s: f"loss of {h} heads, seed {s} <&>",
    )
    assert len(view.leaves) == 6
    assert view.shown().png == bytes([4, 0]) and view.shown().alt == "loss of 4 heads, seed 0 <&>"
    view.controls[1].value = 2
    assert view.shown().png == bytes([4, 2])
    img = view.shown().value
    assert img.startswith('<img src="data:image/png;base64,' + base64.b64encode(bytes([4, 2])).decode())
    assert 'alt="loss of 4 heads, seed 2 &lt;&amp;&gt;"' in img, "the alt follows the state, escaped"
    layouts = {leaf.layout.model_id for leaf in view.leaves.values()}
    assert len(layouts) == 1, "leaves share one Layout model"


def test_an_image_without_alt_text_is_refused() -> None:
    with pytest.raises(ValueError, match="alt text"):
        image_view([selection("h", [1, 4], 4)], lambda h: bytes([h]), "runs", alt=lambda h: " ")


def contrast(foreground: str, background: str) -> float:
    """WCAG 2.1's contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_is_wcag_contrast() -> None:
    assert contrast("#ffffff", "#000000") == pytest.approx(21.0)
    assert contrast("#ffffff", "#9bbb59") == pytest.approx(2.18, abs=0.01)  # the old green, too pale


def test_head_boxes_keep_white_text_readable_and_say_the_grouping_in_words() -> None:
    from multihead.widgets import GROUP_COLOURS, grouping_explorer, parallel_explorer

    assert min(contrast("#ffffff", colour) for colour in GROUP_COLOURS) >= 4.5
    assert "query heads 4j to 4j + 3 share key/value head j" in grouping_explorer().shown().value
    assert "query heads 4j to 4j + 3 share key/value head j" in parallel_explorer().shown().value


def test_dropdown_and_toggle_controls_drive_the_view() -> None:
    view = PrecomputedView([choice("s", ["a long sentence", "another"], "another"), toggle("on")], lambda s, on: widgets.HTML(f"{s}|{on}"), "d")
    assert view.shown().value == "another|True"
    view.controls[0].value = "a long sentence"
    view.controls[1].value = False
    assert view.shown().value == "a long sentence|False"
    assert len(view.links) == 1 + 2  # one Stack for the dropdown, one per dropdown choice for the toggle


def test_grouping_explorer_explains_invalid_groupings() -> None:
    from multihead.widgets import grouping_explorer

    explorer = grouping_explorer()
    assert "grouped-query" in explorer.shown().value and "1,024 MiB" in explorer.shown().value
    explorer.controls[0].value, explorer.controls[1].value = 8, 16  # 16 KV heads for 8 query heads
    assert "does not divide" in explorer.shown().value
    explorer.controls[1].value = 1
    assert "multi-query" in explorer.shown().value


def test_parallel_explorer_shows_each_rank_and_explains_invalid_splits() -> None:
    from multihead.widgets import parallel_explorer

    explorer = parallel_explorer()  # h = 32, 8 KV heads, p = 4
    shown = visible_text(explorer.shown().value)
    assert "3072:4096" in shown and "256 MiB" in shown and "lives on one rank" in shown
    explorer.controls[1].value = 2  # 2 KV heads for 4 ranks
    assert "stored on 2 ranks" in explorer.shown().value
    explorer.controls[2].value = 3
    assert "Not a valid split" in explorer.shown().value and "(32)" in explorer.shown().value


def test_a_view_carries_its_first_state_for_readers_without_widgets() -> None:
    alt = lambda h, c: f"{h} heads, {'causal' if c else 'no'} mask"  # noqa: E731
    view = image_view([selection("h", [1, 4], 4), toggle("causal")], lambda h, c: bytes([h, c]), "runs", alt=alt)
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == bytes([4, 1])
    assert bundle["text/plain"] == "[h = 4, causal = on] 4 heads, causal mask"


def test_an_html_view_carries_its_visible_text() -> None:
    explorer = shape_explorer()
    text = explorer._repr_mimebundle_()["text/plain"]
    lines = text.splitlines()
    assert lines[0] == "[batch B = 4, tokens T = 16, d_model = 512, heads h = 4]"
    assert "<" not in text and "padding" not in text, "tags and the table's style are left out"
    split = next(line for line in lines if line.startswith("split"))
    assert split.split() == ["split", "q.view(B,", "T,", "h,", "d_k)", "(4,", "16,", "4,", "128)"]
    header = next(line for line in lines if line.startswith("step"))
    assert header.index("shape") == split.index("(4, 16, 4, 128)"), "table columns line up"


def test_visible_text_keeps_paragraphs_and_boxes_apart() -> None:
    fragment = "<p>query heads: <span>0</span><span>1</span><br>kv: <span>0</span></p><p>done</p>"
    assert visible_text(fragment) == "query heads: 0 1\nkv: 0\ndone"
