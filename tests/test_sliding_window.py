"""Sliding-window attention (chapter 10): the mask, and a cache trimmed to the window."""

import pytest
import torch
import torch.nn.functional as F

from multihead import MultiHeadAttention, causal_mask, merge_heads, rotary, sliding_window_mask, split_heads
from multihead.decoding import KVCache, attend_with_rotary_cache, attend_with_window_cache


@pytest.mark.parametrize(("T_q", "T_k"), [(6, 6), (1, 9), (3, 8), (5, None)])
@pytest.mark.parametrize("window", [1, 2, 3, 20])
def test_sliding_window_mask_matches_a_loop(T_q: int, T_k: int | None, window: int) -> None:
    mask = sliding_window_mask(T_q, T_k, window=window)
    T_k = T_q if T_k is None else T_k
    want = torch.zeros(T_q, T_k, dtype=torch.bool)
    for i in range(T_q):
        t = T_k - T_q + i  # the position of query i
        for j in range(T_k):
            want[i, j] = t - window < j <= t
    assert mask.dtype == torch.bool and torch.equal(mask, want)


def test_a_window_as_long_as_the_sequence_is_the_causal_mask() -> None:
    assert torch.equal(sliding_window_mask(7, window=7), causal_mask(7))
    assert torch.equal(sliding_window_mask(3, 10, window=10), causal_mask(3, 10))
    assert torch.equal(sliding_window_mask(5, window=1), torch.eye(5, dtype=torch.bool))


def test_sliding_window_mask_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="window=0"):
        sliding_window_mask(4, window=0)
    with pytest.raises(ValueError, match="T_q=5, T_k=3"):
        sliding_window_mask(5, 3, window=2)


def test_keep_last_trims_the_front() -> None:
    cache = KVCache()
    k = torch.arange(6.0).view(1, 1, 6, 1)
    cache.append(k, -k)
    cache.keep_last(10)
    assert len(cache) == 6
    cache.keep_last(4)
    assert cache.keys.flatten().tolist() == [2.0, 3.0, 4.0, 5.0]
    assert cache.values.flatten().tolist() == [-2.0, -3.0, -4.0, -5.0]
    with pytest.raises(ValueError, match="length=-1"):
        cache.keep_last(-1)


@pytest.mark.parametrize("num_kv_heads", [4, 1])
@pytest.mark.parametrize(("prompt", "window"), [(1, 3), (5, 3), (2, 1), (4, 16)])
def test_window_cache_equals_a_full_sliding_window_pass(num_kv_heads: int, prompt: int, window: int) -> None:
    torch.manual_seed(2)
    mha = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads).eval()
    T = 12
    x = torch.randn(2, T, 32)
    cache = KVCache()
    with torch.no_grad():
        want = mha(x, mask=sliding_window_mask(T, window=window))
        outs = [attend_with_window_cache(mha, x[:, :prompt], cache, window)]
        sizes = [len(cache)]
        for t in range(prompt, T):
            outs.append(attend_with_window_cache(mha, x[:, t : t + 1], cache, window))
            sizes.append(len(cache))
    torch.testing.assert_close(torch.cat(outs, dim=1), want)
    assert max(sizes) == min(window, T)


def test_rope_with_a_trimmed_cache_counts_positions_apart() -> None:
    """Rotated keys keep their absolute positions: with a trimmed cache, `start` is the tokens seen so far."""
    torch.manual_seed(3)
    mha = MultiHeadAttention(16, 2).eval()
    T, window = 8, 3
    x = torch.randn(1, T, 16)
    with torch.no_grad():
        pos = torch.arange(T)
        q = rotary(split_heads(mha.W_q(x), 2), pos)  # (B, h, T, d_k)
        k = rotary(split_heads(mha.W_k(x), 2), pos)
        v = split_heads(mha.W_v(x), 2)
        mask = sliding_window_mask(T, window=window)
        want = mha.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))
        cache, steps = KVCache(), []
        for t in range(T):
            steps.append(attend_with_rotary_cache(mha, x[:, t : t + 1], cache, start=t))
            cache.keep_last(window - 1)  # the next token sees these and itself
    torch.testing.assert_close(torch.cat(steps, dim=1), want)
    torch.testing.assert_close(cache.keys, k[:, :, -(window - 1) :])  # rotated at their own positions
