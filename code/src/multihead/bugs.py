"""Ten broken forward passes of multi-head attention, one bug each, for chapter 5's puzzle.

Each `forward_N(mha, x, mask=None)` takes a MultiHeadAttention, an input x (B, T, d_model) and an
optional boolean mask (True = may attend), and uses the module's weights, so a correct version
equals `mha(x, mask=mask)`; `reference_forward` is that correct version. The names, docstrings
and comments say nothing about the bug: the chapter prints `source(forward_N)` as a puzzle and
runs `exercises.check_forward` on it. `ALL` pairs each function with its bug's name and an
explanation, for the solutions and the tests. The functions repeat each other on purpose: each
must read as a whole forward pass.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .module import MultiHeadAttention


def reference_forward(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The forward pass that the ten bugs break, without a bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_1(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, h, T, d_k) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_2(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_3(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_model)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_4(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(T, B, h, d_k).transpose(0, 1) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_5(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_6(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).view(B, T, d_model)
    return mha.W_o(merged)


def forward_7(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-2)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_8(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return mha.W_o(merged)


def forward_9(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.transpose(1, 2).contiguous().view(B, T, d_model)
    return x + mha.W_o(merged)


def forward_10(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """A forward pass with one bug. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    projections = (mha.W_q, mha.W_k, mha.W_v)
    # (B, T, d_model) -> (B, h, T, d_k)
    q, k, v = (W(x).view(B, T, h, d_k).transpose(1, 2) for W in projections)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # (B, h, T, T)
    heads = weights @ v  # (B, h, T, d_k)
    # (B, h, T, d_k) -> (B, T, d_model)
    merged = heads.permute(2, 0, 1, 3).reshape(B, T, d_model)
    return mha.W_o(merged)


@dataclass(frozen=True)
class Bug:
    """One broken forward pass, the bug's short name, and what goes wrong. Introduced in chapter 5."""

    forward: Callable[..., torch.Tensor]  # forward(mha, x, mask=None) -> (B, T, d_model)
    name: str  # a few words, for the solution's table
    why: str  # one sentence: what the wrong line does


ALL = [  # the chapter's bugs 1 to 10, in order
    Bug(
        forward_1,
        "view without transpose",
        "view(B, h, T, d_k) cuts the sequence into heads, not each token's features.",
    ),
    Bug(
        forward_2,
        "masked scores set to 0",
        "0 is an ordinary score, so a blocked key keeps the weight exp(0).",
    ),
    Bug(
        forward_3,
        "scaled by sqrt(d_model)",
        "with several heads, sqrt(d_model) = sqrt(h * d_k) is too large: the weights come out too flat.",
    ),
    Bug(
        forward_4,
        "softmax across heads",
        "view(T, B, h, d_k).transpose(0, 1) gives (B, T, h, d_k), so the softmax runs across heads; "
        "it also reads the batch-first input as (T, B, d_model).",
    ),
    Bug(
        forward_5,
        "mask after the softmax",
        "zeroing blocked weights after the softmax leaves rows that sum to less than 1.",
    ),
    Bug(
        forward_6,
        "missing contiguous()",
        "view after transpose raises a RuntimeError with several heads and tokens.",
    ),
    Bug(
        forward_7,
        "softmax over the queries",
        "softmax(dim=-2) normalises each key's column, not each query's row.",
    ),
    Bug(
        forward_8,
        "inverted mask",
        "masked_fill(mask, ...) blocks the keys a query may see and keeps the others.",
    ),
    Bug(
        forward_9,
        "residual inside",
        "x + ... belongs to the Transformer block around the module, not inside it.",
    ),
    Bug(
        forward_10,
        "sequence-first merge",
        "permute(2, 0, 1, 3) makes (T, B, h, d_k); reshaping that to (B, T, d_model) mixes the sequences.",
    ),
]


class BrokenAttention(nn.Module):
    """A MultiHeadAttention layer run by one of the broken forward passes, to train with. Introduced in chapter 5.

    It owns the layer and its weights, so a model trains the same parameters through the bug:
    `model.attention = BrokenAttention(model.attention, forward_1)`. The broken passes apply no
    dropout, take no head_mask and return no attention weights, so a model's
    `attention_weights` does not work through it.
    """

    def __init__(self, attention: MultiHeadAttention, forward: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        if not isinstance(attention, MultiHeadAttention):
            raise ValueError(f"BrokenAttention wraps a MultiHeadAttention, got {type(attention).__name__}")
        if not callable(forward):
            raise ValueError(f"forward must be a function forward(mha, x, mask), got {forward!r}")
        self.attention = attention
        self.broken_forward = forward

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, head_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, T, d_model) -> (B, T, d_model), through the broken pass."""
        if head_mask is not None:
            raise ValueError("BrokenAttention takes no head_mask")
        return self.broken_forward(self.attention, x, mask)


def source(fn: Callable[..., object]) -> str:
    """fn's source with a short def line and no docstring, as chapter 5 prints it. Introduced in chapter 5."""
    if not inspect.isfunction(fn):
        raise ValueError(f"source() needs a Python function, got {fn!r}")
    text = textwrap.dedent(inspect.getsource(fn))
    node = ast.parse(text).body[0]
    if not isinstance(node, ast.FunctionDef):
        raise ValueError(f"source() needs a function defined with def, got {fn!r}")
    body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
    args = node.args.args
    defaults = [None] * (len(args) - len(node.args.defaults)) + node.args.defaults
    params = ", ".join(a.arg if d is None else f"{a.arg}={ast.unparse(d)}" for a, d in zip(args, defaults))
    lines = text.splitlines()[body[0].lineno - 1 :]
    return "\n".join([f"def {fn.__name__}({params}):", *lines])


def changed_lines(before: Callable[..., object], after: Callable[..., object]) -> list[str]:
    """The body lines that `after` removes ("- ") from `before` or adds ("+ "). Introduced in chapter 5."""
    old, new = (source(fn).splitlines()[1:] for fn in (before, after))
    return [line for line in difflib.ndiff(old, new) if line[:2] in ("- ", "+ ")]
