"""Widgets that work in a live kernel and on the static page (chapter 2 onwards).

Every state a reader can pick is rendered ahead of time. Each control's `index` is linked in
the browser (`jslink`) to the `selected_index` of a `Stack`, one nesting level per control, so
moving a control switches what is shown without a kernel.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from functools import partial
from html.parser import HTMLParser
from typing import Any

import ipywidgets as widgets
import torch
from ipywidgets.widgets.widget_string import HTMLStyle

from .counting import attention_memory_bytes, kv_cache_bytes, mha_flops, mha_parameters
from .heads import head_dim, merge_heads, split_heads
from .parallel import head_layout


def selection(description: str, values: Sequence[Any], value: Any) -> widgets.SelectionSlider:
    """A slider over a fixed list of values; its index drives a precomputed view. Introduced in chapter 2."""
    return widgets.SelectionSlider(
        options=[(str(v), v) for v in values],
        value=value,
        description=description,
        continuous_update=True,
        style={"description_width": "80px"},  # one width, so the sliders line up
    )


def choice(description: str, values: Sequence[Any], value: Any) -> widgets.Dropdown:
    """A dropdown over a fixed list, for long labels such as sentences. Introduced in chapter 6."""
    return widgets.Dropdown(
        options=[(str(v), v) for v in values],
        value=value,
        description=description,
        style={"description_width": "80px"},
        layout=widgets.Layout(width="max-content"),
    )


def toggle(description: str, on: bool = True) -> widgets.ToggleButtons:
    """An on/off switch whose index drives a precomputed view. Introduced in chapter 4."""
    return widgets.ToggleButtons(
        options=[("on", True), ("off", False)],
        value=on,
        description=description,
        style={"description_width": "initial", "button_width": "40px"},
        layout=widgets.Layout(width="max-content", margin="0 16px 0 0"),
    )


class PrecomputedView:
    """Controls above nested Stacks that hold render(*values) for every combination of values.

    `view` is the box to display; `css_class` gives browser tests a stable hook. The controls
    stand in a column, or in a row when `row` is true. Introduced in chapter 2.
    """

    def __init__(
        self,
        controls: Sequence[widgets.Widget],
        render: Callable[..., widgets.Widget],
        css_class: str,
        *,
        row: bool = False,
    ) -> None:
        self.controls = list(controls)
        self.links: list[widgets.jslink] = []
        self.leaves: dict[tuple[int, ...], widgets.Widget] = {}
        panel = widgets.HBox(self.controls) if row else widgets.VBox(self.controls)
        self.view = widgets.VBox([panel, self._level(0, (), render)])
        self.view.add_class(css_class)

    def _level(self, depth: int, chosen: tuple[int, ...], render: Callable[..., widgets.Widget]) -> widgets.Widget:
        if depth == len(self.controls):
            values = [c.options[i][1] for c, i in zip(self.controls, chosen)]
            self.leaves[chosen] = leaf = render(*values)
            return leaf
        control = self.controls[depth]
        children = [self._level(depth + 1, chosen + (i,), render) for i in range(len(control.options))]
        stack = widgets.Stack(children, selected_index=control.index)
        self.links.append(widgets.jslink((control, "index"), (stack, "selected_index")))
        return stack

    def shown(self) -> widgets.Widget:
        """The leaf the browser shows for the controls' current values."""
        return self.leaves[tuple(c.index for c in self.controls)]

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget, and the state it shows first for readers without a widget manager.

        The book's PDF, GitHub's notebook view and a notebook reopened without its kernel pick
        the PNG of an image leaf, or the visible text of an HTML leaf, instead of the widget.
        """
        bundle = self.view._repr_mimebundle_(**kwargs)
        leaf = self.shown()
        settings = ", ".join(f"{c.description} = {c.options[c.index][0]}" for c in self.controls)
        if isinstance(leaf, ImageLeaf):
            bundle["image/png"] = base64.b64encode(leaf.png).decode("ascii")
            bundle["text/plain"] = f"[{settings}] {leaf.alt}"
        else:
            bundle["text/plain"] = f"[{settings}]\n{visible_text(leaf.value)}"
        return bundle


class _VisibleText(HTMLParser):
    """The text of an HTML fragment as a reader sees it: a line per paragraph, line break and table
    row, table cells in aligned columns, inline boxes apart, styles and scripts left out."""

    LINES = {"p", "br", "div", "li", "table"}

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = [""]
        self.rows: list[list[str]] = []  # of the table being read
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script"):
            self.hidden += 1
        elif tag in self.LINES:
            self.new_line()
        elif tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
        elif tag == "span" and self.lines[-1] and not self.lines[-1].endswith(" "):
            self.lines[-1] += " "  # boxes in a row, such as the heads of chapter 10

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self.hidden -= 1
        elif tag == "table":
            widths = [max(len(row[i]) for row in self.rows if i < len(row)) for i in range(max(map(len, self.rows)))]
            self.lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in self.rows]
            self.rows = []
            self.lines.append("")
        elif tag == "p":
            self.new_line()

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data
        else:
            self.lines[-1] += data

    def new_line(self) -> None:
        if self.lines[-1].strip():
            self.lines.append("")


def visible_text(fragment: str) -> str:
    """What a reader reads in an HTML fragment, as plain text (a widget's state in the PDF). Introduced in chapter 2."""
    parser = _VisibleText()
    parser.feed(fragment)
    parser.close()
    return "\n".join(line.rstrip() for line in parser.lines if line.strip())


class ImageLeaf(widgets.HTML):
    """A PNG with alt text, as an HTML widget: ipywidgets' Image has no alt, so a screen reader
    would meet a nameless image (issue 16). Introduced in chapter 1."""

    def __init__(self, png: bytes, alt: str, **kwargs: Any) -> None:
        if not alt.strip():
            raise ValueError("an image needs alt text that says what it shows, got an empty alt")
        source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        image = f'<img src="{source}" alt="{html.escape(alt)}" style="max-width: 100%">'
        super().__init__(value=image, **kwargs)
        self.png, self.alt = png, alt


def image_view(
    controls: Sequence[widgets.Widget],
    render_png: Callable[..., bytes],
    css_class: str,
    *,
    alt: Callable[..., str],
    row: bool = False,
) -> PrecomputedView:
    """A PrecomputedView whose leaves are render_png(*values), each with the text alt(*values) for
    readers who do not see it. Introduced in chapter 1."""
    shared = {"layout": widgets.Layout(max_width="100%"), "style": HTMLStyle()}  # one model each for all leaves

    def leaf(*values: Any) -> ImageLeaf:
        return ImageLeaf(render_png(*values), alt(*values), **shared)

    return PrecomputedView(controls, leaf, css_class, row=row)


def shape_trace(batch_size: int, seq_len: int, d_model: int, num_heads: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """(step, code, shape) for every step of multi-head attention, run on 'meta' tensors. Introduced in chapter 2."""
    d_k = head_dim(d_model, num_heads)
    B, T, h = batch_size, seq_len, num_heads
    x = torch.empty(B, T, d_model, device="meta")  # shapes only, no memory
    W = torch.empty(d_model, d_model, device="meta")
    q = x @ W.T  # (B, T, d_model)
    q_split = q.view(B, T, h, d_k)  # (B, T, h, d_k)
    q_heads = split_heads(q, h)  # (B, h, T, d_k)
    scores = q_heads @ q_heads.transpose(-2, -1)  # (B, h, T, T)
    heads = scores.softmax(-1) @ q_heads  # (B, h, T, d_k)
    merged = merge_heads(heads)  # (B, T, d_model)
    return [
        ("input", "x", tuple(x.shape)),
        ("project", "q = W_q(x)", tuple(q.shape)),
        ("split", "q.view(B, T, h, d_k)", tuple(q_split.shape)),
        ("heads first", ".transpose(1, 2)", tuple(q_heads.shape)),
        ("scores", "q @ k.transpose(-2, -1)", tuple(scores.shape)),
        ("attend", "softmax(scores) @ v", tuple(heads.shape)),
        ("merge", ".transpose(1, 2).contiguous().view(B, T, d_model)", tuple(merged.shape)),
        ("mix", "W_o(merged)", tuple(merged.shape)),
    ]


# Inline, so the table looks the same in JupyterLab and in the static book.
TABLE_STYLE = (
    "<style>.shape-table th, .shape-table td {padding: 2px 16px 2px 0; text-align: left}"
    " .shape-table th[scope=row] {font-weight: normal}</style>"
)


def _facts_table(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column table of (what, value); each row is headed by what it gives, for screen readers."""
    body = "".join(f"<tr><th scope='row'>{what}</th><td style='text-align: right'>{value}</td></tr>" for what, value in rows)
    return f"{TABLE_STYLE}<table class='shape-table'>{body}</table>"


def _shape_table(batch_size: int, seq_len: int, d_model: int, num_heads: int, **shared: widgets.Widget) -> widgets.HTML:
    try:
        steps = shape_trace(batch_size, seq_len, d_model, num_heads)
    except ValueError as error:
        divisors = [h for h in range(1, 17) if d_model % h == 0]
        return widgets.HTML(
            f"<p class='shape-error'><b>No split possible.</b> {html.escape(str(error))}: "
            f"d_k = {d_model} / {num_heads} is not an integer. "
            f"Head counts up to 16 that divide {d_model}: {', '.join(map(str, divisors))}.</p>",
            **shared,
        )
    rows = "".join(
        f"<tr><td>{step}</td><td><code>{html.escape(code)}</code></td><td><code>{shape}</code></td></tr>"
        for step, code, shape in steps
    )
    memory = attention_memory_bytes(batch_size, num_heads, seq_len) / 2**20
    return widgets.HTML(
        f"<p>d_k = {d_model} / {num_heads} = <b>{d_model // num_heads}</b>; "
        f"attention weights (B, h, T, T) in float32: {memory:,.2f} MiB</p>"
        f"{TABLE_STYLE}<table class='shape-table'><tr><th>step</th><th>code</th><th>shape</th></tr>{rows}</table>",
        **shared,
    )


def shape_explorer(
    batch_sizes: Sequence[int] = (1, 4, 32),
    seq_lens: Sequence[int] = (16, 128, 1024),
    d_models: Sequence[int] = (256, 512, 768),
    head_counts: Sequence[int] = (1, 2, 3, 4, 6, 8, 12, 16),
) -> PrecomputedView:
    """Pick B, T, d_model and h; see every intermediate shape. Introduced in chapter 2."""
    controls = [
        selection("batch B", batch_sizes, 4 if 4 in batch_sizes else batch_sizes[0]),
        selection("tokens T", seq_lens, 16 if 16 in seq_lens else seq_lens[0]),
        selection("d_model", d_models, 512 if 512 in d_models else d_models[0]),
        selection("heads h", head_counts, 4 if 4 in head_counts else head_counts[0]),
    ]
    # One Layout and one Style for all leaves: each would otherwise be a model of its own in the page.
    render = partial(_shape_table, layout=widgets.Layout(), style=HTMLStyle())
    return PrecomputedView(controls, render, "shape-explorer")


def _module_card(d_model: int, num_heads: int, seq_len: int, **shared: widgets.Widget) -> widgets.HTML:
    try:
        params = mha_parameters(d_model, num_heads)
    except ValueError as error:
        return widgets.HTML(f"<p><b>Not a valid layer.</b> {html.escape(str(error))}.</p>", **shared)
    flops = mha_flops(1, seq_len, d_model, num_heads)
    projections = flops["q_proj"] + flops["k_proj"] + flops["v_proj"] + flops["out_proj"]
    memory = attention_memory_bytes(1, num_heads, seq_len) / 2**20
    rows = [
        ("d_k = d_model / h", f"{d_model // num_heads}"),
        ("parameters, 4 d_model² + 4 d_model", f"{params:,}"),
        (f"FLOPs for one sequence of {seq_len} tokens", f"{flops['total']:,}"),
        ("  of which the four projections", f"{projections / flops['total']:.0%}"),
        ("attention weights (h, T, T), float32", f"{memory:,.1f} MiB"),
    ]
    return widgets.HTML(_facts_table(rows), **shared)


def module_calculator(
    d_models: Sequence[int] = (256, 512, 768, 1024, 4096),
    head_counts: Sequence[int] = (1, 2, 4, 8, 12, 16, 32),
    seq_lens: Sequence[int] = (128, 1024, 8192),
) -> PrecomputedView:
    """Pick d_model, h and T; see d_k, parameters, FLOPs and attention memory. Introduced in chapter 5."""
    controls = [
        selection("d_model", d_models, 768 if 768 in d_models else d_models[0]),
        selection("heads h", head_counts, 12 if 12 in head_counts else head_counts[0]),
        selection("tokens T", seq_lens, 1024 if 1024 in seq_lens else seq_lens[0]),
    ]
    render = partial(_module_card, layout=widgets.Layout(), style=HTMLStyle())
    return PrecomputedView(controls, render, "module-calculator")


# Dark enough that their white numbers keep WCAG's 4.5:1 contrast (the lowest is 5.6:1).
GROUP_COLOURS = ["#1f4e8c", "#a33b38", "#4d6b1f", "#6a4c93", "#a35200", "#2b6f80", "#595959", "#8a5a2b"]


def _head_box(label: int, kv_head: int) -> str:
    """A small coloured box with a head's number, in the colour of its key/value head."""
    return (f"<span style='display:inline-block;width:22px;margin:1px;text-align:center;"
            f"color:white;background:{GROUP_COLOURS[kv_head % len(GROUP_COLOURS)]};font-size:11px'>{label}</span>")


def _sharing(group: int) -> str:
    """In words, which query heads share a key/value head: the colours say it too, but not to every reader."""
    if group == 1:
        return "query head i uses key/value head i"
    return f"query heads {group}j to {group}j + {group - 1} share key/value head j"


def _grouping_card(
    num_heads: int, num_kv_heads: int, seq_len: int, *, d_model: int, num_layers: int, **shared: widgets.Widget
) -> widgets.HTML:
    if num_heads % num_kv_heads:
        return widgets.HTML(
            f"<p><b>Not a valid grouping.</b> num_kv_heads={num_kv_heads} does not divide "
            f"num_heads={num_heads}: every key/value head must serve the same number of query heads.</p>",
            **shared,
        )
    d_k = d_model // num_heads
    group = num_heads // num_kv_heads

    queries = "".join(_head_box(i, i // group) for i in range(num_heads))
    kv = "".join(_head_box(j, j) for j in range(num_kv_heads))
    kind = "multi-head" if num_kv_heads == num_heads else "multi-query" if num_kv_heads == 1 else "grouped-query"
    params = mha_parameters(d_model, num_heads, num_kv_heads=num_kv_heads, bias=False)
    cache = kv_cache_bytes(num_layers, num_kv_heads, d_k, seq_len) / 2**20
    full = kv_cache_bytes(num_layers, num_heads, d_k, seq_len) / 2**20
    rows = [
        ("kind", kind),
        ("query heads per key/value head", str(group)),
        ("attention parameters per layer", f"{params:,}"),
        (f"KV cache, {num_layers} layers, {seq_len:,} tokens, float16", f"{cache:,.0f} MiB"),
        ("the same with one KV head per query head", f"{full:,.0f} MiB"),
    ]
    return widgets.HTML(
        f"<p>query heads: {queries}<br>key/value heads: {kv}<br>{_sharing(group)}</p>{_facts_table(rows)}",
        **shared,
    )


def grouping_explorer(
    head_counts: Sequence[int] = (8, 16, 32),
    kv_counts: Sequence[int] = (1, 2, 4, 8, 16, 32),
    seq_lens: Sequence[int] = (1024, 8192, 32768),
    d_model: int = 4096,
    num_layers: int = 32,
) -> PrecomputedView:
    """Pick h, the number of KV heads and T; see the grouping, parameters and KV-cache size. Introduced in chapter 10."""
    controls = [
        selection("heads h", head_counts, 32 if 32 in head_counts else head_counts[0]),
        selection("KV heads", kv_counts, 8 if 8 in kv_counts else kv_counts[0]),
        selection("tokens T", seq_lens, 8192 if 8192 in seq_lens else seq_lens[0]),
    ]
    render = partial(_grouping_card, d_model=d_model, num_layers=num_layers, layout=widgets.Layout(), style=HTMLStyle())
    return PrecomputedView(controls, render, "grouping-explorer")


def _parallel_card(
    num_heads: int, num_kv_heads: int, world_size: int, *, d_k: int, num_layers: int, seq_len: int,
    **shared: widgets.Widget,
) -> widgets.HTML:
    try:
        shares = head_layout(num_heads, num_kv_heads, world_size)
    except ValueError as error:
        return widgets.HTML(f"<p><b>Not a valid split.</b> {html.escape(str(error))}.</p>", **shared)
    group = num_heads // num_kv_heads

    rows = []
    for s in shares:
        cache = kv_cache_bytes(num_layers, s.num_kv_heads, d_k, seq_len) / 2**20
        queries = " ".join(_head_box(i, i // group) for i in range(s.q_start, s.q_stop))
        kv = " ".join(_head_box(j, j) for j in range(s.kv_start, s.kv_stop))
        q_rows = f"{s.q_start * d_k}:{s.q_stop * d_k}"
        kv_rows = f"{s.kv_start * d_k}:{s.kv_stop * d_k}"
        rows.append(f"<tr><th scope='row'>{s.rank}</th><td>{queries}</td><td>{kv}</td><td>{q_rows}</td><td>{kv_rows}</td>"
                    f"<td>{q_rows}</td><td style='text-align: right'>{cache:,.0f} MiB</td></tr>")
    replicas = max(1, world_size // num_kv_heads)
    head = ("<tr><th>rank</th><th>query heads</th><th>KV heads</th><th>W_q rows</th><th>W_k, W_v rows</th>"
            "<th>W_o columns</th><th>KV cache</th></tr>")
    note = (f"each KV head is stored on {replicas} ranks" if replicas > 1 else "each KV head lives on one rank")
    return widgets.HTML(
        f"{TABLE_STYLE}<table class='shape-table'>{head}{''.join(rows)}</table>"
        f"<p>{_sharing(group)}; {note}; KV cache per rank for {num_layers} layers, {seq_len:,} tokens, "
        f"d_k = {d_k}, float16.</p>",
        **shared,
    )


def parallel_explorer(
    head_counts: Sequence[int] = (8, 16, 24, 32),
    kv_counts: Sequence[int] = (1, 2, 4, 8),
    world_sizes: Sequence[int] = (1, 2, 3, 4, 8),
    d_k: int = 128,
    num_layers: int = 32,
    seq_len: int = 8192,
) -> PrecomputedView:
    """Pick h, the number of KV heads and p; see which heads, weight slices and cache each rank holds. Chapter 11."""
    controls = [
        selection("heads h", head_counts, 32 if 32 in head_counts else head_counts[0]),
        selection("KV heads", kv_counts, 8 if 8 in kv_counts else kv_counts[0]),
        selection("ranks p", world_sizes, 4 if 4 in world_sizes else world_sizes[0]),
    ]
    render = partial(
        _parallel_card, d_k=d_k, num_layers=num_layers, seq_len=seq_len,
        layout=widgets.Layout(), style=HTMLStyle(),
    )
    return PrecomputedView(controls, render, "parallel-explorer")
