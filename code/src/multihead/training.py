"""A small, seeded training loop for the CPU (chapters 1, 6, 7).

`train` trains one model. `train_together` trains several models of one architecture at once
(one per seed), as one batched computation: `torch.func.stack_module_state` stacks their
parameters and `torch.func.vmap` runs the forward pass of all of them in one call. Adam's update
is elementwise, so each model takes the steps it would take alone, up to floating-point rounding
(batched matmuls add in another order, and training amplifies such differences over many steps).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

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


def train_together(
    models: Sequence[nn.Module],
    make_batch: Callable[[torch.Generator], Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    seeds: Sequence[int],
    lr: float = 3e-3,
) -> torch.Tensor:
    """Train models[i] as `train(models[i], ..., seed=seeds[i])` would, all in one batched pass. Introduced in chapter 1.

    The models must share one architecture. They are updated in place; the result holds the
    loss of every model at every step, shape (len(models), steps).
    """
    if steps <= 0 or lr <= 0:
        raise ValueError(f"steps={steps} and lr={lr} must be positive")
    if len(models) == 0 or len(models) != len(seeds):
        raise ValueError(f"need one seed per model, got {len(models)} models and {len(seeds)} seeds")
    shapes = {tuple((n, p.shape) for n, p in m.named_parameters()) for m in models}
    if len(shapes) != 1:
        raise ValueError("train_together needs models with the same parameter names and shapes")
    for m in models:
        m.train()
    params, buffers = stack_module_state(list(models))  # name -> (E, ...) leaves
    template = copy.deepcopy(models[0]).to("meta")

    def loss_of_one(p: dict, b: dict, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # vmap has no batching rule for the fused CPU kernel of SDPA; its math form is plain matmuls
        with sdpa_kernel(SDPBackend.MATH):
            return loss_fn(functional_call(template, (p, b), (inputs,)), targets)

    batched_loss = vmap(loss_of_one)  # (E, B, T) inputs and targets -> (E,) losses
    rngs = [generator(seed) for seed in seeds]
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    losses = torch.empty(len(models), steps)
    for step in range(steps):
        batches = [make_batch(rng) for rng in rngs]
        inputs = torch.stack([x for x, _ in batches])  # (E, B, T)
        targets = torch.stack([y for _, y in batches])  # (E, B, T)
        loss = batched_loss(params, buffers, inputs, targets)  # (E,)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # the models share no parameter, so each gets its own gradient
        optimizer.step()
        losses[:, step] = loss.detach()
    with torch.no_grad():
        for i, m in enumerate(models):
            for name, p in m.named_parameters():
                p.copy_(params[name][i])
            m.eval()
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
