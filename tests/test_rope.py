"""RoPE (chapter 10): against a complex-number reference, relative positions, and cached decoding."""

import pytest
import torch
import torch.nn.functional as F

from multihead import MultiHeadAttention, merge_heads, rotary, split_heads
from multihead.decoding import KVCache, StaticKVCache, attend_with_rotary_cache
from multihead.positions import rotary_angles


def complex_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """The paper's form: pairs (2i, 2i+1) as complex numbers, times exp(i * p * theta_i)."""
    d_k = x.shape[-1]
    theta = base ** (-torch.arange(0, d_k, 2, dtype=torch.float64) / d_k)  # (d_k / 2,)
    turn = torch.polar(torch.ones(len(positions), d_k // 2, dtype=torch.float64), positions[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d_k // 2, 2).contiguous())  # (..., T, d_k / 2)
    return torch.view_as_real(z * turn).flatten(-2).to(x.dtype)  # (..., T, d_k)


@pytest.mark.parametrize("shape", [(2, 4, 7, 16), (1, 1, 3, 2), (3, 5, 64)])
@pytest.mark.parametrize("base", [10000.0, 500.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotary_matches_the_complex_number_form(shape: tuple, base: float, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=dtype)
    positions = torch.arange(3, 3 + shape[-2])
    torch.testing.assert_close(rotary(x, positions, base), complex_rotary(x, positions.double(), base))


def test_rotary_keeps_norms_and_position_zero_is_identity() -> None:
    x = torch.randn(2, 3, 5, 8)
    turned = rotary(x, torch.arange(5))
    torch.testing.assert_close(turned.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(turned[:, :, 0], x[:, :, 0])


@pytest.mark.parametrize("shift", [1, 17, 1000])
def test_scores_depend_only_on_the_offset(shift: int) -> None:
    q, k = torch.randn(2, 4, 6, 32, dtype=torch.float64), torch.randn(2, 4, 6, 32, dtype=torch.float64)
    pos = torch.arange(6)
    scores = rotary(q, pos) @ rotary(k, pos).transpose(-2, -1)  # (B, h, T, T)
    shifted = rotary(q, pos + shift) @ rotary(k, pos + shift).transpose(-2, -1)
    torch.testing.assert_close(shifted, scores)


def test_rotary_rejects_impossible_inputs() -> None:
    with pytest.raises(ValueError, match="d_k=7 is odd"):
        rotary(torch.randn(1, 2, 3, 7), torch.arange(3))
    with pytest.raises(ValueError, match="must be \\(T,\\) with T=3"):
        rotary(torch.randn(1, 2, 3, 8), torch.arange(4))
    with pytest.raises(ValueError, match="x must have shape"):
        rotary(torch.randn(8), torch.arange(1))
    with pytest.raises(ValueError, match="base=1.0"):
        rotary(torch.randn(3, 8), torch.arange(3), base=1.0)
    with pytest.raises(ValueError, match="head_dim=0"):
        rotary_angles(torch.arange(3), 0)


def rotary_causal(mha: MultiHeadAttention, x: torch.Tensor) -> torch.Tensor:
    """Reference: a full causal pass with RoPE, all positions at once, through PyTorch's kernel."""
    pos = torch.arange(x.shape[1])
    q = rotary(split_heads(mha.W_q(x), mha.num_heads), pos)  # (B, h, T, d_k)
    k = rotary(split_heads(mha.W_k(x), mha.num_kv_heads), pos)  # (B, h_kv, T, d_k)
    v = split_heads(mha.W_v(x), mha.num_kv_heads)
    heads = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=mha.num_kv_heads != mha.num_heads)
    return mha.W_o(merge_heads(heads))  # (B, T, d_model)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("static", [False, True])
def test_cached_decoding_with_rope_equals_a_full_pass(num_kv_heads: int, static: bool) -> None:
    torch.manual_seed(1)
    mha = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads).eval()
    x = torch.randn(2, 9, 32)
    cache = StaticKVCache.for_module(mha, batch_size=2, max_len=9) if static else KVCache()
    with torch.no_grad():
        want = rotary_causal(mha, x)
        prompt = attend_with_rotary_cache(mha, x[:, :4], cache)
        steps = [attend_with_rotary_cache(mha, x[:, t : t + 1], cache) for t in range(4, 9)]
        torch.testing.assert_close(torch.cat([prompt, *steps], dim=1), want)
        rotated = rotary(split_heads(mha.W_k(x), num_kv_heads), torch.arange(9))  # (B, h_kv, T, d_k)
        torch.testing.assert_close(cache.keys[:, :, :9], rotated)  # the cache holds rotated keys


def test_rotary_cache_rejects_a_negative_start() -> None:
    mha = MultiHeadAttention(16, 2).eval()
    with pytest.raises(ValueError, match="start=-1"):
        attend_with_rotary_cache(mha, torch.randn(1, 1, 16), KVCache(), start=-1)


def test_rotary_rejects_integer_input() -> None:
    with pytest.raises(ValueError, match="floating point"):
        rotary(torch.ones(1, 3, 4, dtype=torch.long), torch.arange(3))
