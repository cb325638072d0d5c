"""A small, seeded training loop for the CPU (chapters 1, 6, 7)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .data import generator

Batch = tuple[torch.Tensor, torch.Tensor]


def train(
    model: nn.Module,
    make_batch: Callable[[torch.Generator], Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    lr: float = 3e-3,
    seed: int = 0,
) -> list[float]:
    """Train with Adam on fresh batches from make_batch; return the loss of every step. Introduced in chapter 1."""
    if steps <= 0 or lr <= 0:
        raise ValueError(f"steps={steps} and lr={lr} must be positive")
    rng = generator(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        inputs, targets = make_batch(rng)
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses
