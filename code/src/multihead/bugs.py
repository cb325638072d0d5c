"""Six broken forward passes of multi-head attention, one classic mistake each (chapter 5).

Each takes a MultiHeadAttention `mha`, an input x (B, T, d_model) and an optional mask, and
returns the output. They use the module's weights, so a correct version equals `mha(x, mask=mask)`.
The chapter prints their source and runs `exercises.check_forward` on each. The six functions
repeat each other on purpose: each must read as a whole forward pass with one wrong line.
"""

from __future__ import annotations

import math

import torch

from .module import MultiHeadAttention


def view_without_transpose(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Buggy: splits heads with a view straight to (B, h, T, d_k). Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    q, k, v = (W(x).view(B, h, T, d_k) for W in (mha.W_q, mha.W_k, mha.W_v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    heads = scores.softmax(dim=-1) @ v  # (B, h, T, d_k)
    return mha.W_o(heads.transpose(1, 2).contiguous().view(B, T, d_model))


def scaled_by_sqrt_d_model(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Buggy: divides the scores by sqrt(d_model) instead of sqrt(d_k). Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    q, k, v = (
        W(x).view(B, T, h, d_k).transpose(1, 2)
        for W in (mha.W_q, mha.W_k, mha.W_v)
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_model)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    heads = scores.softmax(dim=-1) @ v  # (B, h, T, d_k)
    return mha.W_o(heads.transpose(1, 2).contiguous().view(B, T, d_model))


def softmax_over_queries(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Buggy: normalises over the query axis. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    q, k, v = (
        W(x).view(B, T, h, d_k).transpose(1, 2)
        for W in (mha.W_q, mha.W_k, mha.W_v)
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    heads = scores.softmax(dim=-2) @ v  # (B, h, T, d_k)
    return mha.W_o(heads.transpose(1, 2).contiguous().view(B, T, d_model))


def missing_contiguous(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Buggy: merges heads with a view straight after the transpose. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    q, k, v = (
        W(x).view(B, T, h, d_k).transpose(1, 2)
        for W in (mha.W_q, mha.W_k, mha.W_v)
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    heads = scores.softmax(dim=-1) @ v  # (B, h, T, d_k)
    return mha.W_o(heads.transpose(1, 2).view(B, T, d_model))


def heads_merged_in_wrong_order(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Buggy: merges heads as (B, T, d_k, h), interleaving their features. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    q, k, v = (
        W(x).view(B, T, h, d_k).transpose(1, 2)
        for W in (mha.W_q, mha.W_k, mha.W_v)
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    heads = scores.softmax(dim=-1) @ v  # (B, h, T, d_k)
    return mha.W_o(heads.permute(0, 2, 3, 1).reshape(B, T, d_model))


def residual_inside(
    mha: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Buggy: adds the residual inside the attention module. Introduced in chapter 5."""
    B, T, d_model = x.shape
    h, d_k = mha.num_heads, mha.head_dim
    q, k, v = (
        W(x).view(B, T, h, d_k).transpose(1, 2)
        for W in (mha.W_q, mha.W_k, mha.W_v)
    )
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    heads = scores.softmax(dim=-1) @ v  # (B, h, T, d_k)
    return x + mha.W_o(heads.transpose(1, 2).contiguous().view(B, T, d_model))


ALL = [
    view_without_transpose,
    scaled_by_sqrt_d_model,
    softmax_over_queries,
    missing_contiguous,
    heads_merged_in_wrong_order,
    residual_inside,
]
