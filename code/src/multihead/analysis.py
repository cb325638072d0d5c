"""Measuring what trained heads do: attention profiles, ablation and pruning (chapter 6)."""

from __future__ import annotations

import torch

from .training import TinyAttentionModel, token_loss


def uniform_causal(seq_len: int) -> torch.Tensor:
    """(T, T) attention that spreads each query evenly over keys 0..t: the no-preference baseline.

    Introduced in chapter 6.
    """
    weights = torch.ones(seq_len, seq_len).tril()  # (T, T)
    return weights / weights.sum(dim=-1, keepdim=True)


def head_profile(attn: torch.Tensor, key_groups: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Average attention per head on named key positions, over queries t >= 1. Introduced in chapter 6.

    attn (B, h, T, T). Always measured: "previous token" (key t-1), "same position" (key t) and
    "first token" (key 0). Each entry of key_groups, a (B, T) boolean tensor, adds the mass on
    the keys it marks, e.g. punctuation. Returns name -> (h,) tensor.
    """
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f"attn must be (B, h, T, T), got {tuple(attn.shape)}")
    B, h, T, _ = attn.shape
    t = torch.arange(1, T)
    profile = {
        "previous token": attn[:, :, t, t - 1].mean(dim=(0, 2)),
        "same position": attn[:, :, t, t].mean(dim=(0, 2)),
        "first token": attn[:, :, t, 0].mean(dim=(0, 2)),
    }
    for name, marked in (key_groups or {}).items():
        mass = (attn * marked[:, None, None, :]).sum(dim=-1)  # (B, h, T)
        profile[name] = mass[:, :, 1:].mean(dim=(0, 2))
    return profile


@torch.no_grad()
def ablation_losses(model: TinyAttentionModel, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Loss increase when each head alone is switched off, (h,). Introduced in chapter 6."""
    h = model.attention.num_heads
    base = token_loss(model(inputs), targets)
    increases = []
    for i in range(h):
        keep = torch.ones(h)
        keep[i] = 0.0
        increases.append(token_loss(model(inputs, head_mask=keep), targets) - base)
    return torch.stack(increases)


@torch.no_grad()
def pruning_curve(
    model: TinyAttentionModel, inputs: torch.Tensor, targets: torch.Tensor, order: list[int]
) -> list[float]:
    """Loss with 0, 1, 2, ... heads switched off, in the given order. Introduced in chapter 6."""
    keep = torch.ones(model.attention.num_heads)
    losses = [token_loss(model(inputs), targets).item()]
    for i in order:
        keep[i] = 0.0
        losses.append(token_loss(model(inputs, head_mask=keep), targets).item())
    return losses
