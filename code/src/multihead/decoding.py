"""Autoregressive decoding with a key/value cache (chapter 9).

A decoder generates one token at a time. Without a cache, every step recomputes the keys and
values of the whole prefix. With one, each step projects only the new token and appends its
key and value to those stored from earlier steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import scaled_dot_product_attention
from .heads import merge_heads, split_heads
from .masks import causal_mask
from .module import MultiHeadAttention, repeat_kv


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, (B, h_kv, T, d_k) each. Introduced in chapter 9."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new keys and values (B, h_kv, T_new, d_k); return all of them."""
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=2)  # (B, h_kv, T, d_k)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=2)
        return self.keys, self.values

    def nbytes(self) -> int:
        """Bytes held by the cache."""
        return 0 if self.keys is None else 2 * self.keys.numel() * self.keys.element_size()


def attend_with_cache(mha: MultiHeadAttention, x_new: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Causal self-attention for the newest tokens x_new (B, T_new, d_model), using and extending the cache.

    Returns (B, T_new, d_model): the same rows a full causal forward over the whole sequence gives.
    Introduced in chapter 9.
    """
    q = split_heads(mha.W_q(x_new), mha.num_heads)  # (B, h, T_new, d_k)
    k_new = split_heads(mha.W_k(x_new), mha.num_kv_heads)  # (B, h_kv, T_new, d_k)
    v_new = split_heads(mha.W_v(x_new), mha.num_kv_heads)
    k, v = cache.append(k_new, v_new)  # (B, h_kv, T, d_k)
    k, v = (repeat_kv(t, mha.num_heads) for t in (k, v))  # (B, h, T, d_k)
    mask = causal_mask(x_new.shape[1], k.shape[2], device=x_new.device)  # (T_new, T): the new tokens are last
    heads, _ = scaled_dot_product_attention(q, k, v, mask)  # (B, h, T_new, d_k)
    return mha.W_o(merge_heads(heads))  # (B, T_new, d_model)
