"""Scaled dot-product attention with explicit weights (chapter 3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .masks import check_mask, guard_empty_rows


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    dropout: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d_k)) v, returning (out, attn). Introduced in chapter 3.

    q (B, h, T_q, d_k), k (B, h, T_k, d_k), v (B, h, T_k, d_v); mask True = may attend,
    broadcastable to (B, h, T_q, T_k). A query row with no key to attend to gets zero weights
    and a zero output instead of NaN. `dropout` > 0 drops weights (the returned ones are those used).
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be (B, h, T, d_k), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1] or k.shape[:-1] != v.shape[:-1] or q.shape[:2] != k.shape[:2]:
        raise ValueError(
            f"incompatible q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: "
            "need the same (B, h), the same d_k for q and k, the same T_k for k and v"
        )
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, h, T_q, d_k) @ (B, h, d_k, T_k) -> (B, h, T_q, T_k)
    if mask is None:
        attn = scores.softmax(dim=-1)  # (B, h, T_q, T_k), each row sums to 1
    else:
        safe_mask, has_key = guard_empty_rows(check_mask(mask, tuple(scores.shape)))
        attn = scores.masked_fill(~safe_mask, float("-inf")).softmax(dim=-1)  # (B, h, T_q, T_k)
        attn = attn.masked_fill(~has_key, 0.0)  # rows with no key: all zeros
    if dropout > 0.0:
        attn = F.dropout(attn, p=dropout)
    return attn @ v, attn  # (B, h, T_q, T_k) @ (B, h, T_k, d_v) -> (B, h, T_q, d_v)
