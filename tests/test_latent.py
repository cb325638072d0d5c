"""Multi-head latent attention (chapter 10): cached == full, absorbed == up-projected."""

import pytest
import torch
import torch.nn.functional as F

from multihead import merge_heads, split_heads
from multihead.latent import LatentCache, MultiHeadLatentAttention


def reference(mla: MultiHeadLatentAttention, x: torch.Tensor) -> torch.Tensor:
    """Keys and values built explicitly for every head, then PyTorch's causal kernel."""
    c = x @ mla.W_dkv.weight.T  # (B, T, d_c)
    q = split_heads(x @ mla.W_q.weight.T, mla.num_heads)  # (B, h, T, d_k)
    k = split_heads(c @ mla.W_uk.weight.T, mla.num_heads)  # (B, h, T, d_k)
    v = split_heads(c @ mla.W_uv.weight.T, mla.num_heads)
    return merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)) @ mla.W_o.weight.T


@pytest.mark.parametrize(("d_model", "num_heads", "latent_dim"), [(32, 4, 8), (48, 3, 64), (16, 1, 4)])
@pytest.mark.parametrize("absorbed", [False, True])
def test_full_pass_matches_the_reference(d_model: int, num_heads: int, latent_dim: int, absorbed: bool) -> None:
    torch.manual_seed(0)
    mla = MultiHeadLatentAttention(d_model, num_heads, latent_dim).double()
    x = torch.randn(2, 7, d_model, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(mla(x, absorbed=absorbed), reference(mla, x))


@pytest.mark.parametrize("absorbed", [False, True])
def test_cached_decoding_equals_a_full_pass(absorbed: bool) -> None:
    torch.manual_seed(1)
    mla = MultiHeadLatentAttention(32, 4, 8)
    x = torch.randn(2, 10, 32)
    cache = LatentCache()
    with torch.no_grad():
        want = mla(x)
        outs = [mla(x[:, :3], cache, absorbed=absorbed)]
        outs += [mla(x[:, t : t + 1], cache, absorbed=absorbed) for t in range(3, 10)]
    torch.testing.assert_close(torch.cat(outs, dim=1), want)
    assert len(cache) == 10 and cache.latents.shape == (2, 10, 8)
    assert cache.nbytes() == 2 * 10 * 8 * 4


def test_absorbed_scores_equal_up_projected_scores() -> None:
    torch.manual_seed(2)
    mla = MultiHeadLatentAttention(24, 3, 6).double()
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    with torch.no_grad():
        q = split_heads(mla.W_q(x), 3)  # (B, h, T, d_k)
        c = mla.W_dkv(x)  # (B, T, d_c)
        k = split_heads(mla.W_uk(c), 3)  # (B, h, T, d_k)
        q_c = q @ mla.W_uk.weight.view(3, 8, 6)  # (B, h, T, d_c)
        torch.testing.assert_close(q_c @ c[:, None].transpose(-2, -1), q @ k.transpose(-2, -1))


def test_latent_attention_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="latent_dim=0"):
        MultiHeadLatentAttention(16, 2, 0)
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadLatentAttention(15, 2, 4)
    with pytest.raises(ValueError, match="d_model=16"):
        MultiHeadLatentAttention(16, 2, 4)(torch.randn(1, 3, 8))


def test_latent_cache_rejects_a_mismatched_batch() -> None:
    cache = LatentCache()
    cache.append(torch.zeros(2, 3, 8))
    with pytest.raises(ValueError, match=r"\(1, 1, 8\) do not match the cache \(2, 3, 8\)"):
        cache.append(torch.zeros(1, 1, 8))
    with pytest.raises(ValueError, match="B, T_new, d_c"):
        cache.append(torch.zeros(3, 8))
