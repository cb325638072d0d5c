"""Boolean masks, True = "may attend", and converters to other conventions (chapter 3).

This is the convention of `F.scaled_dot_product_attention`. `nn.MultiheadAttention` uses the
opposite one (True = blocked) for `key_padding_mask` and boolean `attn_mask`; additive masks hold
0 where a query may attend and -inf where it may not.
"""

from __future__ import annotations

import torch

from .heads import check_positive


def causal_mask(T_q: int, T_k: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """(T_q, T_k) mask letting query i see keys up to its own position. Introduced in chapter 3.

    With T_k > T_q (a cache of earlier keys), the queries are the last T_q positions.
    """
    T_k = T_q if T_k is None else T_k
    check_positive(T_q=T_q, T_k=T_k)
    if T_k < T_q:
        raise ValueError(f"a causal mask needs T_k >= T_q, got T_q={T_q}, T_k={T_k}")
    return torch.ones(T_q, T_k, dtype=torch.bool, device=device).tril(diagonal=T_k - T_q)  # (T_q, T_k)


def sliding_window_mask(
    T_q: int, T_k: int | None = None, *, window: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(T_q, T_k) mask letting the query at position t see keys t - window + 1 .. t only. Introduced in chapter 10.

    As in `causal_mask`, with T_k > T_q the queries are the last T_q positions.
    """
    T_k = T_q if T_k is None else T_k
    check_positive(T_q=T_q, T_k=T_k, window=window)
    if T_k < T_q:
        raise ValueError(f"a sliding-window mask needs T_k >= T_q, got T_q={T_q}, T_k={T_k}")
    ones = torch.ones(T_q, T_k, dtype=torch.bool, device=device)
    offset = T_k - T_q  # query i sits at position offset + i
    return ones.tril(diagonal=offset) & ones.triu(diagonal=offset - window + 1)  # (T_q, T_k)


def padding_mask(lengths: torch.Tensor | list[int], T_k: int) -> torch.Tensor:
    """(B, 1, 1, T_k) mask letting every query see the first lengths[b] keys. Introduced in chapter 3."""
    lengths = torch.as_tensor(lengths)
    check_positive(T_k=T_k)
    if lengths.dim() != 1 or ((lengths < 0) | (lengths > T_k)).any():
        raise ValueError(f"lengths must be a 1-d list of values in [0, T_k={T_k}], got {lengths.tolist()}")
    keep = torch.arange(T_k, device=lengths.device) < lengths[:, None]  # (B, T_k)
    return keep[:, None, None, :]  # (B, 1, 1, T_k)


def check_mask(mask: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Check that a boolean mask broadcasts to (B, h, T_q, T_k); return it unchanged. Introduced in chapter 3."""
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be boolean (True = may attend), got dtype {mask.dtype}; "
            "convert an additive mask with from_additive()"
        )
    try:
        broadcast = torch.broadcast_shapes(mask.shape, shape)
    except RuntimeError:
        broadcast = None
    if broadcast != torch.Size(shape):
        raise ValueError(f"mask of shape {tuple(mask.shape)} cannot broadcast to (B, h, T_q, T_k)={tuple(shape)}")
    return mask


def guard_empty_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Open fully masked query rows so softmax gives no NaN; return (safe_mask, has_key).

    A query row with no key to attend to has no meaningful weighted average. The package's
    choice: such a row gets all-zero attention weights and a zero output. Callers attend with
    `safe_mask` and then zero the rows where `has_key` (..., T_q, 1) is False.
    Introduced in chapter 3.
    """
    has_key = mask.any(dim=-1, keepdim=True)  # (..., T_q, 1)
    return mask | ~has_key, has_key


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean (True = may attend) -> additive (0 or -inf). Introduced in chapter 3."""
    additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return additive.masked_fill(~mask, float("-inf"))


def from_additive(mask: torch.Tensor) -> torch.Tensor:
    """Additive (0 or -inf) -> boolean (True = may attend). Introduced in chapter 3."""
    if not mask.is_floating_point():
        raise ValueError(f"an additive mask is floating point, got dtype {mask.dtype}")
    return mask != float("-inf")


def to_torch_key_padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, T_k) or (B, T_k) True = may attend -> nn.MultiheadAttention's (B, T_k) True = blocked.

    Introduced in chapter 3.
    """
    if mask.dim() == 4:
        if mask.shape[1] != 1 or mask.shape[2] != 1:
            raise ValueError(f"a padding mask has shape (B, 1, 1, T_k), got {tuple(mask.shape)}")
        mask = mask[:, 0, 0, :]  # (B, T_k)
    if mask.dim() != 2:
        raise ValueError(f"a padding mask has shape (B, T_k) or (B, 1, 1, T_k), got {tuple(mask.shape)}")
    return ~mask


def from_torch_key_padding_mask(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """nn.MultiheadAttention's (B, T_k) True = blocked -> (B, 1, 1, T_k) True = may attend. Introduced in chapter 3."""
    if key_padding_mask.dim() != 2:
        raise ValueError(f"key_padding_mask has shape (B, T_k), got {tuple(key_padding_mask.shape)}")
    if key_padding_mask.is_floating_point():
        return from_additive(key_padding_mask)[:, None, None, :]  # (B, 1, 1, T_k)
    return ~key_padding_mask[:, None, None, :]  # (B, 1, 1, T_k)


def to_torch_attn_mask(mask: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(T_q, T_k) or (B, h, T_q, T_k) True = may attend -> nn.MultiheadAttention's True = blocked.

    A 4-d mask becomes the (B * h, T_q, T_k) layout that nn.MultiheadAttention expects.
    Introduced in chapter 3.
    """
    if mask.dim() == 2:
        return ~mask  # (T_q, T_k)
    if mask.dim() == 4:
        B, _, T_q, T_k = mask.shape
        full = mask.expand(B, num_heads, T_q, T_k)  # (B, h, T_q, T_k)
        return ~full.reshape(B * num_heads, T_q, T_k)  # (B * h, T_q, T_k)
    raise ValueError(f"attn_mask has shape (T_q, T_k) or (B, h, T_q, T_k), got {tuple(mask.shape)}")


def from_torch_attn_mask(attn_mask: torch.Tensor, num_heads: int) -> torch.Tensor:
    """nn.MultiheadAttention's attn_mask (True = blocked, or additive) -> True = may attend.

    (T_q, T_k) stays (T_q, T_k); (B * h, T_q, T_k) becomes (B, h, T_q, T_k). Introduced in chapter 3.
    """
    keep = from_additive(attn_mask) if attn_mask.is_floating_point() else ~attn_mask
    if keep.dim() == 2:
        return keep  # (T_q, T_k)
    if keep.dim() == 3 and keep.shape[0] % num_heads == 0:
        Bh, T_q, T_k = keep.shape
        return keep.view(Bh // num_heads, num_heads, T_q, T_k)  # (B, h, T_q, T_k)
    raise ValueError(
        f"attn_mask has shape (T_q, T_k) or (B * num_heads, T_q, T_k) with num_heads={num_heads}, "
        f"got {tuple(attn_mask.shape)}"
    )
