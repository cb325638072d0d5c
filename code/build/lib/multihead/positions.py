"""Rotary position embedding (RoPE) for queries and keys, one head at a time (chapter 10).

RoPE (Su et al., RoFormer) turns each pair of features (2i, 2i+1) of a query or key at position p
by the angle p * base**(-2i / d_k). The score of a rotated query at position m and a rotated key at
position n then depends on the positions only through m - n.
"""

from __future__ import annotations

import torch


def rotary_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """(T,) positions -> (T, d_k / 2) angles p * base**(-2i / d_k), in float64. Introduced in chapter 10."""
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise ValueError(f"head_dim={head_dim!r} must be a positive even integer: RoPE turns pairs of features")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not base > 1.0:
        raise ValueError(f"base={base!r} must be a number greater than 1")
    positions = torch.as_tensor(positions)
    if positions.dim() != 1 or positions.is_complex() or positions.dtype == torch.bool:
        raise ValueError(
            f"positions must be a 1-d tensor of real numbers, got shape {tuple(positions.shape)}, dtype={positions.dtype}"
        )
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim  # (d_k / 2,): 2i / d_k
    frequencies = base**-exponents  # (d_k / 2,)
    return positions.to("cpu", torch.float64)[:, None] * frequencies  # (T, d_k / 2)


def rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate feature pairs (2i, 2i+1) of x (..., T, d_k) by the angles of `positions` (T,). Introduced in chapter 10.

    Apply it to queries (B, h, T, d_k) and keys (B, h_kv, T, d_k) after splitting the heads and
    before the scores (and before writing keys into a cache). Angles are computed in float64,
    then cos and sin are cast to x's dtype.
    """
    if x.dim() < 2:
        raise ValueError(f"x must have shape (..., T, d_k), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be floating point, got dtype={x.dtype}: cos and sin would round to integers")
    T, d_k = x.shape[-2], x.shape[-1]
    if d_k % 2:
        raise ValueError(f"d_k={d_k} is odd: RoPE turns pairs of features, so d_k must be even")
    positions = torch.as_tensor(positions)
    if positions.dim() != 1 or positions.shape[0] != T:
        raise ValueError(f"positions of shape {tuple(positions.shape)} must be (T,) with T={T} for x {tuple(x.shape)}")
    angles = rotary_angles(positions, d_k, base)  # (T, d_k / 2)
    cos = angles.cos().to(x.device, x.dtype)  # (T, d_k / 2)
    sin = angles.sin().to(x.device, x.dtype)
    pairs = x.unflatten(-1, (d_k // 2, 2))  # (..., T, d_k / 2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]  # (..., T, d_k / 2) each
    turned = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)  # (..., T, d_k / 2, 2)
    return turned.flatten(-2)  # (..., T, d_k)
