"""Measuring what attention layers and trained heads do: dependence, profiles, ablation, pruning (chapters 5, 6)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .heads import split_heads
from .module import MultiHeadAttention
from .training import TinyAttentionModel, token_loss


def token_dependence(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(T, T) bool: [t, s] is True where output position t of fn depends on input position s.

    Introduced in chapter 5. fn maps one sequence (1, T, d_in) to (1, T, d_out). The answer is
    read from the Jacobian at x: a dependence that the computation does not have gives an exact
    zero block there (a key blocked with -inf gets weight 0 and gradient 0), and one it has gives
    a nonzero block for a random x, unless a saturated softmax rounds a weight to exactly 0.
    """
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"x must be one sequence of shape (1, T, d_in), got {tuple(x.shape)}")
    with torch.no_grad():
        shape = tuple(fn(x).shape)
    if len(shape) != 3 or shape[:2] != tuple(x.shape[:2]):
        raise ValueError(f"fn must return (1, T={x.shape[1]}, d_out), got {shape}")
    jacobian = torch.autograd.functional.jacobian(fn, x)  # (1, T, d_out, 1, T, d_in)
    return jacobian[0, :, :, 0].abs().sum(dim=(1, 3)) > 0  # (T, d_out, T, d_in) -> (T, T)


def head_parameters(attention: MultiHeadAttention, *, grad: bool = False) -> dict[str, torch.Tensor]:
    """Each head's share of a layer's weights, or of their gradients, as (h, ...) views. Introduced in chapter 6.

    W_q, W_k and W_v give each head d_k rows (and d_k biases); W_o gives it d_k columns. The
    views share memory with the parameters, so writing into them (under torch.no_grad) changes
    the layer. W_o's bias belongs to no head and is left out.
    """
    if attention.num_kv_heads != attention.num_heads or attention.W_q.bias is None:
        raise ValueError(
            f"head_parameters needs a biased, classic layer, got num_heads={attention.num_heads}, "
            f"num_kv_heads={attention.num_kv_heads}, bias={attention.W_q.bias is not None}"
        )
    h, d_k, d_model = attention.num_heads, attention.head_dim, attention.d_model

    def read(p: torch.Tensor) -> torch.Tensor:
        if not grad:
            return p
        if p.grad is None:
            raise ValueError("head_parameters(grad=True) needs gradients: call backward() first")
        return p.grad

    shares = {}
    for name in ("W_q", "W_k", "W_v"):
        linear = getattr(attention, name)
        shares[f"{name}.weight"] = read(linear.weight).view(h, d_k, d_model)  # rows of head i
        shares[f"{name}.bias"] = read(linear.bias).view(h, d_k)
    shares["W_o.weight"] = read(attention.W_o.weight).view(d_model, h, d_k).permute(1, 0, 2)  # (h, d_model, d_k)
    return shares


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
def head_outputs(model: TinyAttentionModel, tokens: torch.Tensor) -> torch.Tensor:
    """Each head's output before the merge, (B, h, T, d_k). Introduced in chapter 6."""
    x = model.embed(tokens)  # (B, T, d_model)
    attn = model.attention_weights(tokens)  # (B, h, T, T)
    v = split_heads(model.attention.W_v(x), model.attention.num_heads)  # (B, h, T, d_k)
    return attn @ v  # (B, h, T, T) @ (B, h, T, d_k) -> (B, h, T, d_k)


@torch.no_grad()
def mean_head_outputs(model: TinyAttentionModel, tokens: torch.Tensor) -> torch.Tensor:
    """Each head's output averaged over the sequences, at each position, (h, T, d_k). Introduced in chapter 6."""
    return head_outputs(model, tokens).mean(dim=0)  # (h, T, d_k)


@torch.no_grad()
def ablated_logits(
    model: TinyAttentionModel, tokens: torch.Tensor, keep: torch.Tensor, means: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits (B, T, V) with the heads where keep (h,) is 0 ablated. Introduced in chapter 6.

    means None: zero-ablation, the head's output is set to 0. means (h, T, d_k), e.g. from
    `mean_head_outputs` on other data: mean-ablation, the head's output is replaced by its mean,
    so the head still adds its average term and only what depends on the input is removed.
    """
    h = model.attention.num_heads
    if keep.shape != (h,):
        raise ValueError(f"keep must have shape (num_heads={h},), got {tuple(keep.shape)}")
    if means is None:
        return model(tokens, head_mask=keep)
    T = tokens.shape[1]
    if means.shape[0] != h or means.shape[1] < T:
        raise ValueError(f"means must be (h={h}, T >= {T}, d_k), got {tuple(means.shape)}")
    replaced = means[:, :T] * (1.0 - keep)[:, None, None]  # (h, T, d_k): the means of the removed heads
    merged = replaced.transpose(0, 1).flatten(1)  # (T, h * d_k) = (T, d_model)
    offset = merged @ model.attention.W_o.weight.T  # (T, d_model): their terms, no bias (it stays)
    handle = model.attention.register_forward_hook(lambda module, args, out: out + offset)
    try:
        return model(tokens, head_mask=keep)  # (B, T, V)
    finally:
        handle.remove()


@torch.no_grad()
def ablation_losses(
    model: TinyAttentionModel, inputs: torch.Tensor, targets: torch.Tensor, means: torch.Tensor | None = None
) -> torch.Tensor:
    """Loss increase when each head alone is ablated, (h,). Introduced in chapter 6.

    Zero-ablation when means is None, mean-ablation with means (h, T, d_k) (see `ablated_logits`).
    """
    h = model.attention.num_heads
    base = token_loss(model(inputs), targets)
    increases = []
    for i in range(h):
        keep = torch.ones(h)
        keep[i] = 0.0
        increases.append(token_loss(ablated_logits(model, inputs, keep, means), targets) - base)
    return torch.stack(increases)


@torch.no_grad()
def pruning_curve(
    model: TinyAttentionModel,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    order: list[int],
    means: torch.Tensor | None = None,
) -> list[float]:
    """Loss with 0, 1, 2, ... heads ablated, in the given order. Introduced in chapter 6.

    Zero-ablation when means is None, mean-ablation with means (h, T, d_k) (see `ablated_logits`).
    """
    keep = torch.ones(model.attention.num_heads)
    losses = [token_loss(model(inputs), targets).item()]
    for i in order:
        keep[i] = 0.0
        losses.append(token_loss(ablated_logits(model, inputs, keep, means), targets).item())
    return losses


def earlier_copies(tokens: torch.Tensor, targets: torch.Tensor, end: int) -> torch.Tensor:
    """(B, T, T) boolean: key k <= t holds query t's target and lies in t's sentence. Introduced in chapter 6.

    tokens and targets (B, T); a sentence ends with the token id `end`. A query with any True
    key can predict its next token by copying a word it has already seen in this sentence.
    """
    if tokens.shape != targets.shape or tokens.dim() != 2:
        raise ValueError(f"tokens and targets must be (B, T) each, got {tuple(tokens.shape)}, {tuple(targets.shape)}")
    T = tokens.shape[1]
    ended = (tokens == end).long()  # (B, T)
    sentence = ended.cumsum(dim=1) - ended  # (B, T): number of `end` tokens before each position
    same = sentence[:, :, None] == sentence[:, None, :]  # (B, T_q, T_k)
    earlier = torch.ones(T, T, dtype=torch.bool).tril()  # (T_q, T_k): k <= t
    match = tokens[:, None, :] == targets[:, :, None]  # (B, T_q, T_k)
    inside = (tokens != end)[:, :, None]  # (B, T_q, 1): after `end`, the target starts a new sentence
    return match & same & earlier & inside


def conditional_score(attn: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Per head, the weight on the marked keys, averaged over queries with a marked key, (h,). Introduced in chapter 6.

    attn (B, h, T, T); keys (B, T, T) boolean, e.g. from `earlier_copies`. Queries with no
    marked key are left out, so the score measures a head only where its pattern is needed.
    """
    if attn.dim() != 4 or keys.shape != (attn.shape[0], *attn.shape[2:]):
        raise ValueError(f"need attn (B, h, T, T) and keys (B, T, T), got {tuple(attn.shape)}, {tuple(keys.shape)}")
    queries = keys.any(dim=-1)  # (B, T)
    if not queries.any():
        raise ValueError("no query has a marked key")
    mass = (attn * keys[:, None]).sum(dim=-1)  # (B, h, T)
    return mass.transpose(0, 1)[:, queries].mean(dim=1)  # (h, n_queries) -> (h,)
