"""Splitting `d_model` into heads and merging them back (chapter 2)."""

from __future__ import annotations

import torch


def is_positive_int(value: object) -> bool:
    """True for a positive int; False for bool (True is an int in Python), float, str. Introduced in chapter 2."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_positive(**sizes: int) -> None:
    """Raise ValueError naming every size that is not a positive integer. Introduced in chapter 2."""
    bad = [f"{name}={value!r}" for name, value in sizes.items() if not is_positive_int(value)]
    if bad:
        raise ValueError(f"sizes must be positive integers, got {', '.join(bad)}")


def head_dim(d_model: int, num_heads: int) -> int:
    """Width of one head, d_k = d_model / h, checked for divisibility. Introduced in chapter 2."""
    check_positive(d_model=d_model, num_heads=num_heads)
    if d_model % num_heads:
        raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
    return d_model // num_heads


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Split the last dimension into heads: (B, T, d_model) -> (B, h, T, d_k). Introduced in chapter 2."""
    if x.dim() != 3:
        raise ValueError(f"split_heads expects (B, T, d_model), got shape {tuple(x.shape)}")
    B, T, d_model = x.shape
    d_k = head_dim(d_model, num_heads)
    # view, as in the chapter: cutting one axis into two never needs a copy, whatever the strides
    x = x.view(B, T, num_heads, d_k)  # (B, T, h, d_k)
    return x.transpose(1, 2)  # (B, h, T, d_k)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Merge heads back: (B, h, T, d_k) -> (B, T, h * d_k), the inverse of split_heads. Introduced in chapter 4."""
    if x.dim() != 4:
        raise ValueError(f"merge_heads expects (B, h, T, d_k), got shape {tuple(x.shape)}")
    B, h, T, d_k = x.shape
    x = x.transpose(1, 2).contiguous()  # (B, T, h, d_k), memory in that order
    return x.view(B, T, h * d_k)  # (B, T, d_model)
