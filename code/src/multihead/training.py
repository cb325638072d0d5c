"""A small, seeded training loop for the CPU (chapters 1, 6, 7)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import IGNORE, generator
from .masks import causal_mask
from .module import MultiHeadAttention

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


class TinyAttentionModel(nn.Module):
    """Embeddings, one multi-head attention layer with a residual, and an MLP readout. Introduced in chapter 1.

    For a fixed d_model, the parameter count does not depend on num_heads.
    """

    def __init__(self, vocab_size: int, seq_len: int, d_model: int, num_heads: int, *, causal: bool = False) -> None:
        super().__init__()
        self.causal = causal  # a language model: position t sees tokens 0..t only
        self.token = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(seq_len, d_model)
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, vocab_size))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> (B, T, d_model)."""
        return self.token(tokens) + self.position(torch.arange(tokens.shape[1], device=tokens.device))

    def attention_mask(self, tokens: torch.Tensor) -> torch.Tensor | None:
        """The causal mask for these tokens, or None."""
        return causal_mask(tokens.shape[1], device=tokens.device) if self.causal else None

    def forward(self, tokens: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, T) -> logits (B, T, vocab_size); head_mask (h,) switches heads off."""
        x = self.embed(tokens)  # (B, T, d_model)
        x = x + self.attention(x, mask=self.attention_mask(tokens), head_mask=head_mask)  # (B, T, d_model)
        return self.readout(self.norm(x))  # (B, T, vocab_size)

    def attention_weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> the layer's attention weights (B, h, T, T)."""
        with torch.no_grad():
            _, attn = self.attention(self.embed(tokens), mask=self.attention_mask(tokens), return_attention=True)
        return attn


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over (B, T, V) logits and (B, T) targets; IGNORE targets are skipped. Introduced in chapter 1."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (B*T, V) vs (B*T,)


@torch.no_grad()
def token_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of non-ignored positions whose arg-max prediction is right. Introduced in chapter 1."""
    keep = targets != IGNORE
    return (logits.argmax(-1)[keep] == targets[keep]).float().mean().item()
