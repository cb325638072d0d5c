"""Counting parameters, FLOPs and attention-matrix memory (chapters 3 and 5).

A multiply-add counts as 2 FLOPs. Softmax counts 4 FLOPs per score (subtract the row
maximum, exponentiate, add to the row sum, divide); it is small next to the matmuls.
"""

from __future__ import annotations

import torch
from torch import nn

from .heads import check_positive, head_dim

SOFTMAX_FLOPS_PER_SCORE = 4


def count_parameters(module: nn.Module) -> int:
    """Number of scalars in a module's parameters. Introduced in chapter 5."""
    return sum(p.numel() for p in module.parameters())


def mha_parameters(d_model: int, num_heads: int, *, bias: bool = True, num_kv_heads: int | None = None) -> int:
    """Parameters of one multi-head attention layer: 4 d_model^2 (+ 4 d_model bias). Introduced in chapter 5.

    The count does not depend on num_heads: the heads share out the same d_model columns. With
    num_kv_heads < num_heads (chapter 10), W_k and W_v shrink to d_model x (num_kv_heads * d_k).
    """
    d_k = head_dim(d_model, num_heads)  # validates the pair
    kv_width = (num_heads if num_kv_heads is None else num_kv_heads) * d_k
    weights = 2 * d_model * d_model + 2 * d_model * kv_width
    return weights + ((2 * d_model + 2 * kv_width) if bias else 0)


def kv_cache_bytes(
    num_layers: int, num_kv_heads: int, head_dim: int, seq_len: int, *, batch_size: int = 1, bytes_per_number: int = 2
) -> int:
    """Bytes of a KV cache: keys and values for every layer, KV head and token. Introduced in chapter 10.

    2 (keys and values) x layers x KV heads x d_k x tokens x batch x bytes (2 for float16/bfloat16).
    """
    check_positive(num_layers=num_layers, num_kv_heads=num_kv_heads, head_dim=head_dim, seq_len=seq_len)
    return 2 * num_layers * num_kv_heads * head_dim * seq_len * batch_size * bytes_per_number


def mha_flops(batch_size: int, seq_len: int, d_model: int, num_heads: int, kv_len: int | None = None) -> dict[str, int]:
    """FLOPs of one forward pass, per component, for self- or cross-attention. Introduced in chapter 3.

    Keys: q_proj, k_proj, v_proj, scores, softmax, weighted_sum, out_proj, total.
    `scores` and `weighted_sum` equal 2 * B * T_q * T_k * d_model for any num_heads; only the
    softmax, which works on each of the B * h * T_q * T_k scores, grows with num_heads.
    """
    T_k = seq_len if kv_len is None else kv_len
    check_positive(batch_size=batch_size, seq_len=seq_len, kv_len=T_k)
    B, T_q, h, d_k = batch_size, seq_len, num_heads, head_dim(d_model, num_heads)
    flops = {
        "q_proj": 2 * B * T_q * d_model * d_model,
        "k_proj": 2 * B * T_k * d_model * d_model,
        "v_proj": 2 * B * T_k * d_model * d_model,
        "scores": 2 * B * h * T_q * T_k * d_k,  # Q_h K_h^T for every head
        "softmax": SOFTMAX_FLOPS_PER_SCORE * B * h * T_q * T_k,
        "weighted_sum": 2 * B * h * T_q * T_k * d_k,  # A_h V_h for every head
        "out_proj": 2 * B * T_q * d_model * d_model,
    }
    flops["total"] = sum(flops.values())
    return flops


def attention_memory_bytes(
    batch_size: int, num_heads: int, seq_len: int, kv_len: int | None = None, dtype: torch.dtype = torch.float32
) -> int:
    """Bytes of the attention weights (B, h, T_q, T_k); this grows with h. Introduced in chapter 3."""
    T_k = seq_len if kv_len is None else kv_len
    check_positive(batch_size=batch_size, num_heads=num_heads, seq_len=seq_len, kv_len=T_k)
    element_size = torch.empty((), dtype=dtype).element_size()
    return batch_size * num_heads * seq_len * T_k * element_size


def allreduce_bytes_per_rank(num_numbers: int, world_size: int, *, bytes_per_number: int = 2) -> float:
    """Bytes each of p ranks sends in a ring all-reduce of n numbers: 2 (p - 1) / p x n. Introduced in chapter 11.

    A ring all-reduce is a reduce-scatter (p - 1 steps, each sending n / p numbers) followed by
    an all-gather (p - 1 more). Its cost per rank barely grows with p: it tends to 2n.
    """
    check_positive(num_numbers=num_numbers, world_size=world_size, bytes_per_number=bytes_per_number)
    return 2 * (world_size - 1) / world_size * num_numbers * bytes_per_number


def tensor_parallel_ratio(
    d_model: int, world_size: int, link_bytes_per_s: float, flops_per_s: float, *, bytes_per_number: int = 2
) -> float:
    """Communication time over compute time of one Transformer layer's forward pass split over p ranks. Chapter 11.

    Per layer: 24 B T d_model^2 FLOPs of matmuls (8 in attention's four projections, 16 in an MLP
    of width 4 d_model), shared by p ranks, and two all-reduces of B T d_model numbers (Megatron's
    g after attention and after the MLP). B and T cancel:
    (p - 1) x bytes_per_number x flops_per_s / (6 d_model x link_bytes_per_s).
    """
    check_positive(d_model=d_model, world_size=world_size)
    if not (link_bytes_per_s > 0 and flops_per_s > 0):
        raise ValueError(f"link_bytes_per_s={link_bytes_per_s!r} and flops_per_s={flops_per_s!r} must be positive")
    return (world_size - 1) * bytes_per_number * flops_per_s / (6 * d_model * link_bytes_per_s)
