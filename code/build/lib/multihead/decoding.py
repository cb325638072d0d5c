"""Autoregressive decoding with a key/value cache (chapter 10).

A decoder generates one token at a time. Without a cache, every step recomputes the keys and
values of the whole prefix. With one, each step projects only the new token and appends its
key and value to those stored from earlier steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import scaled_dot_product_attention
from .heads import check_positive, merge_heads, split_heads
from .masks import causal_mask, sliding_window_mask
from .module import MultiHeadAttention, repeat_kv
from .positions import rotary


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, (B, h_kv, T, d_k) each. Introduced in chapter 10."""

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

    def truncate(self, length: int) -> None:
        """Forget every token from position `length` on."""
        if not 0 <= length <= len(self):
            raise ValueError(f"length={length} must be between 0 and the {len(self)} tokens stored")
        if self.keys is not None:
            self.keys, self.values = self.keys[:, :, :length], self.values[:, :, :length]

    def keep_last(self, length: int) -> None:
        """Forget every token but the last `length` (a sliding window); fewer stored means no change."""
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length={length!r} must be a non-negative integer")
        if self.keys is not None and len(self) > length:
            start = len(self) - length
            self.keys, self.values = self.keys[:, :, start:], self.values[:, :, start:]  # (B, h_kv, length, d_k)


def attend_with_cache(mha: MultiHeadAttention, x_new: torch.Tensor, cache: KVCache) -> torch.Tensor:
    """Causal self-attention for the newest tokens x_new (B, T_new, d_model), using and extending the cache.

    Returns (B, T_new, d_model): the same rows a full causal forward over the whole sequence gives.
    Introduced in chapter 10.
    """
    q = split_heads(mha.W_q(x_new), mha.num_heads)  # (B, h, T_new, d_k)
    k_new = split_heads(mha.W_k(x_new), mha.num_kv_heads)  # (B, h_kv, T_new, d_k)
    v_new = split_heads(mha.W_v(x_new), mha.num_kv_heads)
    k, v = cache.append(k_new, v_new)  # (B, h_kv, T, d_k)
    k, v = (repeat_kv(t, mha.num_heads) for t in (k, v))  # (B, h, T, d_k)
    mask = causal_mask(x_new.shape[1], k.shape[2], device=x_new.device)  # (T_new, T): the new tokens are last
    heads, _ = scaled_dot_product_attention(q, k, v, mask)  # (B, h, T_new, d_k)
    return mha.W_o(merge_heads(heads))  # (B, T_new, d_model)


class StaticKVCache:
    """Keys and values in buffers allocated once, (B, h_kv, T_max, d_k) each, written in place. Introduced in chapter 10.

    `append` copies only the new tokens' keys and values into the next free positions and
    returns views of the filled part; nothing already stored is copied again.
    """

    def __init__(
        self,
        batch_size: int,
        num_kv_heads: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        check_positive(batch_size=batch_size, num_kv_heads=num_kv_heads, max_len=max_len, head_dim=head_dim)
        shape = (batch_size, num_kv_heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)  # (B, h_kv, T_max, d_k)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0  # positions filled so far

    @classmethod
    def for_module(cls, mha: MultiHeadAttention, batch_size: int, max_len: int) -> StaticKVCache:
        """An empty cache shaped for `mha`'s key/value heads, on its device and in its dtype."""
        weight = mha.W_k.weight
        return cls(batch_size, mha.num_kv_heads, max_len, mha.head_dim, dtype=weight.dtype, device=weight.device)

    @property
    def max_len(self) -> int:
        return self.keys.shape[2]

    def __len__(self) -> int:
        return self.length

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new keys and values (B, h_kv, T_new, d_k) in place; return views of all (B, h_kv, T, d_k)."""
        B, h_kv, _, d_k = self.keys.shape
        if k.shape != v.shape or k.dim() != 4 or (k.shape[0], k.shape[1], k.shape[3]) != (B, h_kv, d_k):
            raise ValueError(
                f"new keys {tuple(k.shape)} and values {tuple(v.shape)} must both be (B={B}, h_kv={h_kv}, T_new, d_k={d_k})"
            )
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(
                f"the cache holds max_len={self.max_len} tokens: {self.length} stored + {k.shape[2]} new = {end}"
            )
        self.keys[:, :, self.length : end] = k  # (B, h_kv, T_new, d_k), in place
        self.values[:, :, self.length : end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # views, no copy

    def truncate(self, length: int) -> None:
        """Forget every token from position `length` on (to re-run a step, or to drop a draft)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"length={length} must be between 0 and the {self.length} tokens stored")
        self.length = length

    def nbytes(self) -> int:
        """Bytes held by the buffers, filled or not."""
        return 2 * self.keys.numel() * self.keys.element_size()


def grouped_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention of h query heads on h_kv shared key/value heads, with no copy of k or v. Introduced in chapter 10.

    q (B, h, T_q, d_k); k, v (B, h_kv, T_k, d_k); mask (T_q, T_k), True = may attend, leaving every
    query at least one key (a causal mask does), or None. The g = h / h_kv query heads of a group
    are stacked along the query axis, so each key/value head is read once, by one product of a
    (g * T_q, d_k) matrix with a (d_k, T_k) one, instead of g products of (T_q, d_k) with copies.
    """
    if q.dim() != 4 or k.dim() != 4 or k.shape != v.shape:
        raise ValueError(
            f"need q (B, h, T_q, d_k) and k, v (B, h_kv, T_k, d_k), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    B, h, T_q, d_k = q.shape
    h_kv, T_k = k.shape[1], k.shape[2]
    if k.shape[0] != B or k.shape[3] != d_k or h % h_kv:
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)}: need the same B and d_k, and h={h} divisible by h_kv={h_kv}"
        )
    g = h // h_kv
    q = q.reshape(B, h_kv, g * T_q, d_k) * d_k**-0.5  # (B, h_kv, g*T_q, d_k): heads of a group stacked, scaled
    # k @ q^T, then transposed: the same numbers as q @ k^T, but in this order the BLAS spreads a
    # decoding step's thin product over all threads, and in the other it keeps it on one
    scores = (k @ q.transpose(-2, -1)).transpose(-2, -1)  # (B, h_kv, T_k, g*T_q) -> (B, h_kv, g*T_q, T_k)
    if mask is not None:
        scores = scores.reshape(B, h_kv, g, T_q, T_k).masked_fill(~mask, float("-inf")).reshape(B, h_kv, g * T_q, T_k)
    out = scores.softmax(dim=-1) @ v  # (B, h_kv, g*T_q, d_k)
    return out.view(B, h, T_q, d_k)  # head i*g + j is row block j of group i


FEW_ROWS = 8  # up to this many rows, decode_linear splits the weight across threads


def decode_linear(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`linear(x)` for the few rows of a decoding step, on every CPU thread. Introduced in chapter 10.

    x (..., d_in) -> (..., d_out). For one row, `linear` is a matrix-vector product, and the BLAS
    behind PyTorch's CPU build runs it on a single core, which reads the weight at about half the
    machine's bandwidth. Here the weight's d_out rows are cut into one block per thread, and the
    blocks are multiplied in one batched product, which PyTorch spreads over the threads. With
    more than FEW_ROWS rows, one thread, or d_out not divisible by the thread count, this is
    `linear(x)` itself.
    """
    weight = linear.weight  # (d_out, d_in)
    d_out, d_in = weight.shape
    rows = x.reshape(-1, d_in)  # (N, d_in)
    threads = torch.get_num_threads()
    if x.device.type != "cpu" or threads == 1 or d_out % threads or rows.shape[0] > FEW_ROWS:
        return linear(x)
    blocks = weight.view(threads, d_out // threads, d_in)  # (P, d_out/P, d_in): rows cut, no copy
    y = torch.bmm(blocks, rows.T.expand(threads, d_in, rows.shape[0]))  # (P, d_out/P, N)
    y = y.view(d_out, rows.shape[0]).T  # (N, d_out)
    if linear.bias is not None:
        y = y + linear.bias
    return y.reshape(*x.shape[:-1], d_out)  # (..., d_out)


def attend_with_static_cache(mha: MultiHeadAttention, x_new: torch.Tensor, cache: StaticKVCache) -> torch.Tensor:
    """`attend_with_cache` without copies and on every thread. Introduced in chapter 10.

    Keys and values are written in place, the query heads of a group attend as one, and the four
    projections run through `decode_linear`. x_new (B, T_new, d_model) -> (B, T_new, d_model),
    the same rows a full causal forward gives.
    """
    q = split_heads(decode_linear(mha.W_q, x_new), mha.num_heads)  # (B, h, T_new, d_k)
    k_new = split_heads(decode_linear(mha.W_k, x_new), mha.num_kv_heads)  # (B, h_kv, T_new, d_k)
    v_new = split_heads(decode_linear(mha.W_v, x_new), mha.num_kv_heads)
    k, v = cache.append(k_new, v_new)  # (B, h_kv, T, d_k) views of the buffers
    T_new = x_new.shape[1]
    mask = None if T_new == 1 else causal_mask(T_new, k.shape[2], device=x_new.device)  # one new token sees all
    heads = grouped_attention(q, k, v, mask)  # (B, h, T_new, d_k)
    return decode_linear(mha.W_o, merge_heads(heads))  # (B, T_new, d_model)


def attend_with_rotary_cache(
    mha: MultiHeadAttention,
    x_new: torch.Tensor,
    cache: KVCache | StaticKVCache,
    *,
    start: int | None = None,
    base: float = 10000.0,
) -> torch.Tensor:
    """Cached causal self-attention with RoPE on q and k; the cache stores rotated keys. Introduced in chapter 10.

    x_new (B, T_new, d_model) holds the tokens at positions start .. start + T_new - 1; `start`
    defaults to the number of tokens cached (pass it when the cache was trimmed to a window).
    Returns (B, T_new, d_model).
    """
    start = len(cache) if start is None else start
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start={start!r} must be a non-negative integer position")
    T_new = x_new.shape[1]
    positions = torch.arange(start, start + T_new)  # (T_new,)
    q = rotary(split_heads(mha.W_q(x_new), mha.num_heads), positions, base)  # (B, h, T_new, d_k)
    k_new = rotary(split_heads(mha.W_k(x_new), mha.num_kv_heads), positions, base)  # (B, h_kv, T_new, d_k)
    v_new = split_heads(mha.W_v(x_new), mha.num_kv_heads)  # values are not rotated
    k, v = cache.append(k_new, v_new)  # (B, h_kv, T, d_k): rotated keys, stored once
    mask = None if T_new == 1 else causal_mask(T_new, k.shape[2], device=x_new.device)
    heads = grouped_attention(q, k, v, mask)  # (B, h, T_new, d_k)
    return mha.W_o(merge_heads(heads))  # (B, T_new, d_model)


def attend_with_window_cache(mha: MultiHeadAttention, x_new: torch.Tensor, cache: KVCache, window: int) -> torch.Tensor:
    """Cached sliding-window self-attention; the cache keeps only the last `window` tokens. Introduced in chapter 10.

    x_new (B, T_new, d_model) -> (B, T_new, d_model): the same rows a full pass with
    `sliding_window_mask(T, window=window)` gives.
    """
    check_positive(window=window)
    q = split_heads(mha.W_q(x_new), mha.num_heads)  # (B, h, T_new, d_k)
    k_new = split_heads(mha.W_k(x_new), mha.num_kv_heads)  # (B, h_kv, T_new, d_k)
    v_new = split_heads(mha.W_v(x_new), mha.num_kv_heads)
    k, v = cache.append(k_new, v_new)  # (B, h_kv, T, d_k), T <= window + T_new
    mask = sliding_window_mask(x_new.shape[1], k.shape[2], window=window, device=x_new.device)  # (T_new, T)
    heads = grouped_attention(q, k, v, mask)  # (B, h, T_new, d_k)
    cache.keep_last(window)  # the last window tokens; the next query sees window - 1 of them and itself
    return mha.W_o(merge_heads(heads))  # (B, T_new, d_model)
