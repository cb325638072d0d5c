"""Chapter 9's claims about nn.MultiheadAttention's options and F.scaled_dot_product_attention's backends.

Each test rebuilds what PyTorch does from the package's pieces (split_heads, scaled_dot_product_attention,
the mask converters), so a torch upgrade that changes the behaviour the chapter teaches fails here first.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from multihead import (
    MultiHeadAttention,
    causal_mask,
    from_torch,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    split_heads,
    to_torch,
    to_torch_attn_mask,
)
from multihead.bench import implementations

FAST_PATH_OP = "aten::_native_multi_head_attention"


def ops_run(fn: object) -> set[str]:
    """Names of the aten ops that fn() ran, from the (kineto-free) autograd profiler."""
    with torch.autograd.profiler.profile(use_kineto=False) as prof:
        fn()  # type: ignore[operator]
    return {event.name for event in prof.function_events}


@pytest.mark.parametrize("T", [1, 4, 9])
def test_causal_mask_is_torchs_square_subsequent_mask(T: int) -> None:
    blocked = to_torch_attn_mask(causal_mask(T), num_heads=2)  # (T, T): True = blocked
    assert torch.equal(nn.Transformer.generate_square_subsequent_mask(T) == float("-inf"), blocked)


@pytest.mark.parametrize("grad", [True, False], ids=["slow_path", "fast_path"])
@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize(("d_model", "num_heads"), [(32, 4), (24, 2)])
def test_is_causal_hint_with_the_causal_mask_gives_the_package_causal_output(
    grad: bool, need_weights: bool, d_model: int, num_heads: int
) -> None:
    ours = MultiHeadAttention(d_model, num_heads).eval()
    theirs = to_torch(ours).eval()
    x = torch.randn(3, 7, d_model)
    with torch.no_grad():
        want = ours(x, mask=causal_mask(7))
    blocked = to_torch_attn_mask(causal_mask(7), num_heads)
    with torch.set_grad_enabled(grad):
        got, _ = theirs(x, x, x, attn_mask=blocked, is_causal=True, need_weights=need_weights)
    torch.testing.assert_close(got, want)


def test_is_causal_hint_needs_a_mask_and_is_not_checked_against_it() -> None:
    """Without weights (and off the fast path) the hint wins over a wrong mask; with weights the mask wins."""
    ours = MultiHeadAttention(32, 4).eval()
    theirs = to_torch(ours).eval()
    x = torch.randn(2, 6, 32)
    nothing = torch.zeros(6, 6, dtype=torch.bool)  # blocks nothing
    with torch.no_grad():
        causal, unmasked = ours(x, mask=causal_mask(6)), ours(x)
    hinted, _ = theirs(x, x, x, attn_mask=nothing, is_causal=True, need_weights=False)
    weighted, _ = theirs(x, x, x, attn_mask=nothing, is_causal=True, need_weights=True)
    torch.testing.assert_close(hinted, causal)
    torch.testing.assert_close(weighted, unmasked)
    with torch.no_grad():  # the inference fast path uses the mask
        fast, _ = theirs(x, x, x, attn_mask=nothing, is_causal=True, need_weights=False)
    torch.testing.assert_close(fast, unmasked)
    with pytest.raises(RuntimeError, match="Need attn_mask"):
        theirs(x, x, x, is_causal=True)


def project(module: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """nn.MultiheadAttention's input projections of a batch-first x -> q, k, v, each (B, T, d_model)."""
    q, k, v = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
    return q, k, v


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize(("d_model", "num_heads"), [(32, 4), (16, 1)])
def test_add_bias_kv_appends_one_learned_key_and_value(batch_first: bool, d_model: int, num_heads: int) -> None:
    B, T = 3, 5
    module = nn.MultiheadAttention(d_model, num_heads, add_bias_kv=True, batch_first=batch_first)
    x = torch.randn(B, T, d_model)  # (B, T, d_model)
    inputs = x if batch_first else x.transpose(0, 1)
    out, weights = module(inputs, inputs, inputs, average_attn_weights=False)
    q, k, v = project(module, x)
    k = torch.cat([k, module.bias_k.expand(B, 1, d_model)], dim=1)  # (B, T + 1, d_model)
    v = torch.cat([v, module.bias_v.expand(B, 1, d_model)], dim=1)  # (B, T + 1, d_model)
    heads, attn = scaled_dot_product_attention(*(split_heads(t, num_heads) for t in (q, k, v)))  # (B, h, T, d_k)
    want = module.out_proj(merge_heads(heads))  # (B, T, d_model)
    torch.testing.assert_close(out, want if batch_first else want.transpose(0, 1))
    torch.testing.assert_close(weights, attn)  # (B, h, T, T + 1)


@pytest.mark.parametrize("with_padding", [False, True])
@pytest.mark.parametrize(("d_model", "num_heads"), [(32, 4), (16, 1)])
def test_add_zero_attn_appends_a_zero_key_and_value(with_padding: bool, d_model: int, num_heads: int) -> None:
    B, T = 3, 5
    module = nn.MultiheadAttention(d_model, num_heads, add_zero_attn=True, batch_first=True)
    x = torch.randn(B, T, d_model)
    keep = padding_mask([5, 3, 1], T) if with_padding else None  # (B, 1, 1, T): True = may attend
    kpm = None if keep is None else ~keep[:, 0, 0]  # (B, T): True = blocked
    out, weights = module(x, x, x, key_padding_mask=kpm, average_attn_weights=False)
    q, k, v = (split_heads(t, num_heads) for t in project(module, x))  # (B, h, T, d_k)
    zero = torch.zeros(B, num_heads, 1, d_model // num_heads)  # (B, h, 1, d_k)
    mask0 = None if keep is None else torch.cat([keep, torch.ones(B, 1, 1, 1, dtype=torch.bool)], dim=-1)
    heads, attn = scaled_dot_product_attention(q, torch.cat([k, zero], 2), torch.cat([v, zero], 2), mask0)
    torch.testing.assert_close(out, module.out_proj(merge_heads(heads)))
    torch.testing.assert_close(weights, attn)  # (B, h, T, T + 1)
    plain, _ = scaled_dot_product_attention(q, k, v, keep)  # no zero slot
    torch.testing.assert_close(heads, (1 - attn[..., -1:]) * plain)
    assert bool(attn[..., -1].gt(0).all())


@pytest.mark.parametrize("option", ["add_bias_kv", "add_zero_attn"])
def test_extra_slots_have_no_counterpart_and_leave_the_fast_path(option: str) -> None:
    module = nn.MultiheadAttention(16, 2, batch_first=True, **{option: True}).eval()
    with pytest.raises(ValueError, match="add_bias_kv=True and add_zero_attn=True"):
        from_torch(module)
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        assert FAST_PATH_OP not in ops_run(lambda: module(x, x, x, need_weights=False))


def test_bench_eval_row_is_the_inference_fast_path_and_the_others_are_not() -> None:
    """The benchmark's row named 'eval fast path' really runs PyTorch's native inference function."""
    mha = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():  # as the benchmark's forward timings run
        seen = {name: FAST_PATH_OP in ops_run(lambda fn=fn: fn(x)) for name, fn in implementations(mha).items()}
    assert [name for name, hit in seen.items() if hit] == ["nn.MHA, eval fast path"]


def cpu_backend(out: torch.Tensor) -> str:
    return type(out.grad_fn).__name__


def test_cpu_chooses_the_flash_kernel_and_falls_back_to_math() -> None:
    q = torch.randn(2, 4, 16, 8, requires_grad=True)  # (B, h, T, d_k)
    default = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert cpu_backend(default) == "ScaledDotProductFlashAttentionForCpuBackward0"
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        assert cpu_backend(F.scaled_dot_product_attention(q, q, q, is_causal=True)) == cpu_backend(default)
    assert cpu_backend(F.scaled_dot_product_attention(q, q, q, dropout_p=0.1)) == "UnsafeViewBackward0"
    with sdpa_kernel(SDPBackend.MATH):
        math = F.scaled_dot_product_attention(q, q, q, is_causal=True)
    assert cpu_backend(math) == "UnsafeViewBackward0"
    torch.testing.assert_close(math, default)
    for gpu_only in (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        with sdpa_kernel(gpu_only), pytest.raises(RuntimeError, match="No viable backend"):
            F.scaled_dot_product_attention(q, q, q, is_causal=True)


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding_with_empty_row"])
def test_the_package_module_agrees_on_every_cpu_backend(num_kv_heads: int, mask_kind: str) -> None:
    mha = MultiHeadAttention(32, 4, num_kv_heads=num_kv_heads).eval()
    x = torch.randn(3, 6, 32)
    last_only = torch.zeros(6, 6, dtype=torch.bool)
    last_only[:, -1] = True  # (T, T): every query sees only the last key ...
    mask = {
        "none": None,
        "causal": causal_mask(6),
        "padding_with_empty_row": padding_mask([6, 2, 1], 6) & last_only,  # ... padded away in rows 2 and 3
    }[mask_kind]
    with torch.no_grad():
        default = mha(x, mask=mask)
        with sdpa_kernel(SDPBackend.MATH):
            math = mha(x, mask=mask)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash = mha(x, mask=mask)
    torch.testing.assert_close(math, default)
    torch.testing.assert_close(flash, default)
