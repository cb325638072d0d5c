import pytest
import torch
import torch.nn.functional as F

from multihead import MultiHeadAttention, causal_mask, count_parameters, mha_parameters, padding_mask, to_torch
from multihead.counting import kv_cache_bytes
from multihead.decoding import (
    KVCache,
    StaticKVCache,
    attend_with_cache,
    attend_with_static_cache,
    decode_linear,
    grouped_attention,
)
from multihead.module import repeat_kv


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4, 8])
def test_fast_and_explicit_paths_agree(num_kv_heads: int) -> None:
    mha = MultiHeadAttention(64, 8, num_kv_heads=num_kv_heads).eval()
    x, context = torch.randn(2, 5, 64), torch.randn(2, 7, 64)
    mask = padding_mask([7, 4], 7)
    fast = mha(x, context, mask)
    explicit, attn = mha(x, context, mask, return_attention=True)
    torch.testing.assert_close(fast, explicit)
    assert attn.shape == (2, 8, 5, 7)


def test_gqa_with_all_kv_heads_is_classic_mha() -> None:
    gqa = MultiHeadAttention(32, 4, num_kv_heads=4).eval()
    x = torch.randn(2, 6, 32)
    want, _ = to_torch(gqa)(x, x, x)
    torch.testing.assert_close(gqa(x), want)


def test_grouping_matches_sdpa_enable_gqa_and_explicit_reference() -> None:
    mha = MultiHeadAttention(48, 6, num_kv_heads=2).eval()
    x = torch.randn(3, 5, 48)
    with torch.no_grad():
        q = mha.W_q(x).view(3, 5, 6, 8).transpose(1, 2)  # (B, h, T, d_k)
        k = mha.W_k(x).view(3, 5, 2, 8).transpose(1, 2)  # (B, h_kv, T, d_k)
        v = mha.W_v(x).view(3, 5, 2, 8).transpose(1, 2)
        groups = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        # explicit: query head i uses key/value head i // 3
        for i in range(6):
            one = F.scaled_dot_product_attention(q[:, i], k[:, i // 3], v[:, i // 3])
            torch.testing.assert_close(groups[:, i], one)
        want = mha.W_o(groups.transpose(1, 2).reshape(3, 5, 48))
    torch.testing.assert_close(mha(x), want)


def test_repeat_kv_groups_consecutive_query_heads() -> None:
    kv = torch.arange(2.0).view(1, 2, 1, 1)  # two KV heads holding 0 and 1
    assert repeat_kv(kv, 6).flatten().tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize(("num_kv_heads", "bias"), [(8, True), (2, True), (1, False)])
def test_parameter_count_with_shared_kv_heads(num_kv_heads: int, bias: bool) -> None:
    mha = MultiHeadAttention(64, 8, num_kv_heads=num_kv_heads, bias=bias)
    assert count_parameters(mha) == mha_parameters(64, 8, num_kv_heads=num_kv_heads, bias=bias)


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
def test_cached_decoding_equals_full_recomputation(num_kv_heads: int) -> None:
    mha = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads).eval()
    x = torch.randn(2, 9, 32)
    full = mha(x, mask=causal_mask(9))
    cache = KVCache()
    with torch.no_grad():
        prefix = attend_with_cache(mha, x[:, :4], cache)  # a prompt of 4 tokens at once
        steps = [attend_with_cache(mha, x[:, t : t + 1], cache) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat([prefix, *steps], dim=1), full)
    assert len(cache) == 9
    assert cache.nbytes() == 2 * 2 * num_kv_heads * 9 * 8 * 4  # keys and values, float32


def test_kv_cache_bytes_formula_and_rejections() -> None:
    assert kv_cache_bytes(32, 32, 128, 1) == 524_288  # LLaMA-2 7B, one token, float16: 512 KiB
    assert kv_cache_bytes(80, 8, 128, 1) == 327_680  # LLaMA-2 70B with 8 KV heads
    with pytest.raises(ValueError, match="num_kv_heads=0"):
        kv_cache_bytes(1, 0, 64, 1)
    with pytest.raises(ValueError, match="num_kv_heads=3 must be a positive divisor of num_heads=8"):
        MultiHeadAttention(64, 8, num_kv_heads=3)
    with pytest.raises(ValueError, match="to_torch needs num_kv_heads == num_heads"):
        to_torch(MultiHeadAttention(64, 8, num_kv_heads=2))


@pytest.mark.parametrize("num_kv_heads", [8, 2, 1])  # MHA, GQA, MQA
@pytest.mark.parametrize("prompt", [0, 1, 4])  # tokens given at once before the one-by-one steps; 0 = empty cache
def test_static_cache_equals_full_recomputation(num_kv_heads: int, prompt: int) -> None:
    mha = MultiHeadAttention(64, 8, num_kv_heads=num_kv_heads).eval()
    x = torch.randn(2, 9, 64)
    full = mha(x, mask=causal_mask(9))
    cache = StaticKVCache.for_module(mha, batch_size=2, max_len=12)
    with torch.no_grad():
        parts = [attend_with_static_cache(mha, x[:, :prompt], cache)] if prompt else []
        parts += [attend_with_static_cache(mha, x[:, t : t + 1], cache) for t in range(prompt, 9)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full)
    assert len(cache) == 9
    assert cache.nbytes() == 2 * 2 * num_kv_heads * 12 * 8 * 4  # keys and values, all 12 positions, float32


def test_static_cache_writes_in_place_and_refuses_overflow() -> None:
    cache = StaticKVCache(1, 2, 4, 3)
    buffer = cache.keys.data_ptr()
    k, v = cache.append(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3))
    assert k.shape == (1, 2, 3, 3) and k.data_ptr() == buffer and v.data_ptr() == cache.values.data_ptr()
    with pytest.raises(ValueError, match="max_len=4 tokens: 3 stored \\+ 2 new = 5"):
        cache.append(torch.ones(1, 2, 2, 3), torch.ones(1, 2, 2, 3))
    with pytest.raises(ValueError, match="h_kv=2"):
        cache.append(torch.ones(1, 3, 1, 3), torch.ones(1, 3, 1, 3))
    cache.truncate(1)
    k, _ = cache.append(2 * torch.ones(1, 2, 1, 3), torch.ones(1, 2, 1, 3))
    assert k[0, 0, :, 0].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="length=5"):
        cache.truncate(5)
    with pytest.raises(ValueError, match="max_len=0"):
        StaticKVCache(1, 2, 0, 3)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_grouped_attention_equals_repeated_keys(num_kv_heads: int) -> None:
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, num_kv_heads, 6, 8), torch.randn(2, num_kv_heads, 6, 8)
    mask = causal_mask(3, 6)
    want = F.scaled_dot_product_attention(q, repeat_kv(k, 4), repeat_kv(v, 4), attn_mask=mask)
    torch.testing.assert_close(grouped_attention(q, k, v, mask), want)
    unmasked = F.scaled_dot_product_attention(q, repeat_kv(k, 4), repeat_kv(v, 4))
    torch.testing.assert_close(grouped_attention(q, k, v), unmasked)
    with pytest.raises(ValueError, match="h=4 divisible by h_kv=3"):
        grouped_attention(q, torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8))


def test_both_caches_forget_alike() -> None:
    for cache in (KVCache(), StaticKVCache(1, 2, 4, 3)):
        cache.append(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3))
        cache.truncate(1)
        assert len(cache) == 1
        with pytest.raises(ValueError, match="length=2"):
            cache.truncate(2)


@pytest.fixture
def threads():
    """Set torch's thread count inside a test, and put the old one back after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("num_threads", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 9)])  # one row, six rows, more rows than FEW_ROWS
@pytest.mark.parametrize("bias", [True, False])
def test_decode_linear_equals_the_linear_layer(threads, num_threads: int, shape: tuple, bias: bool) -> None:
    threads(num_threads)
    linear = torch.nn.Linear(16, 24, bias=bias)  # 24 rows: cut into 1, 2, 3 or 4 blocks
    x = torch.randn(*shape, 16)
    with torch.no_grad():
        torch.testing.assert_close(decode_linear(linear, x), linear(x))


def test_decode_linear_splits_only_what_divides(threads, monkeypatch) -> None:
    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda a, b: calls.append(a.shape) or bmm(a, b))
    threads(2)
    x = torch.randn(1, 1, 16)
    with torch.no_grad():
        decode_linear(torch.nn.Linear(16, 24), x)  # 24 rows in 2 blocks of 12
        assert calls == [(2, 12, 16)]
        threads(5)
        assert decode_linear(torch.nn.Linear(16, 24), x).shape == (1, 1, 24)
        assert len(calls) == 1  # 24 rows do not split into 5 blocks: the plain layer ran
