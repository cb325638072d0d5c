import pytest
import torch
from torch import nn

from multihead import (
    MultiHeadAttention,
    PerHeadAttention,
    causal_mask,
    from_per_head,
    from_torch,
    padding_mask,
    to_per_head,
    to_torch,
    to_torch_attn_mask,
    to_torch_key_padding_mask,
)

B, T_Q, T_K = 3, 6, 9


def make_mask(kind: str, T_q: int, T_k: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(causal part, padding part), each None when absent; lengths keep key 0 visible to every query."""
    causal = causal_mask(T_q, T_k) if kind in ("causal", "both") else None
    padding = padding_mask([T_k, T_k - 2, 1], T_k) if kind in ("padding", "both") else None
    return causal, padding


def combine(causal: torch.Tensor | None, padding: torch.Tensor | None) -> torch.Tensor | None:
    if causal is None or padding is None:
        return causal if padding is None else padding
    return causal & padding  # (B, 1, T_q, T_k)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "both"])
@pytest.mark.parametrize(("d_model", "num_heads"), [(32, 4), (24, 3), (16, 1)])
def test_matches_nn_multihead_attention(bias: bool, cross: bool, mask_kind: str, d_model: int, num_heads: int) -> None:
    mha = MultiHeadAttention(d_model, num_heads, bias=bias).eval()
    torch_mha = to_torch(mha).eval()
    x = torch.randn(B, T_Q, d_model)
    context = torch.randn(B, T_K, d_model) if cross else None
    T_k = T_K if cross else T_Q
    causal, padding = make_mask(mask_kind, T_Q, T_k)
    mask = combine(causal, padding)

    out, attn = mha(x, context, mask, return_attention=True)
    kv = x if context is None else context
    want, want_attn = torch_mha(
        x,
        kv,
        kv,
        attn_mask=None if causal is None else to_torch_attn_mask(causal, num_heads),
        key_padding_mask=None if padding is None else to_torch_key_padding_mask(padding),
        average_attn_weights=False,
    )
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(attn, want_attn)
    torch.testing.assert_close(mha(x, context, mask), want)  # the fused path, through F.scaled_dot_product_attention


def test_per_head_mask_matches_torch_3d_attn_mask() -> None:
    mha = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    mask = (torch.rand(2, 4, 5, 5) > 0.5) | torch.eye(5, dtype=torch.bool)  # (B, h, T, T), no empty row
    want, _ = to_torch(mha)(x, x, x, attn_mask=to_torch_attn_mask(mask, 4))
    torch.testing.assert_close(mha(x, mask=mask), want)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("d_model", "num_heads"), [(512, 4), (12, 3), (8, 8)])
def test_per_head_conversion_is_exact_both_ways(bias: bool, d_model: int, num_heads: int) -> None:
    mha = MultiHeadAttention(d_model, num_heads, bias=bias)
    x, mask = torch.randn(2, 7, d_model), causal_mask(7)
    per_head = to_per_head(mha)
    assert isinstance(per_head, PerHeadAttention) and len(per_head.heads) == num_heads
    out, attn = mha(x, mask=mask, return_attention=True)
    per_out, per_attn = per_head(x, mask=mask, return_attention=True)
    torch.testing.assert_close(per_out, out)
    torch.testing.assert_close(per_attn, attn)
    back = from_per_head(per_head)
    for name, tensor in mha.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


@pytest.mark.parametrize("bias", [True, False])
def test_torch_round_trip_copies_every_weight(bias: bool) -> None:
    mha = MultiHeadAttention(24, 6, bias=bias)
    back = from_torch(to_torch(mha))
    for name, tensor in mha.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    torch_mha = nn.MultiheadAttention(24, 6, bias=bias, batch_first=False)
    x = torch.randn(5, 2, 24)  # (T, B, d_model): torch's default layout
    want, _ = torch_mha(x, x, x)
    torch.testing.assert_close(from_torch(torch_mha)(x.transpose(0, 1)), want.transpose(0, 1))


def test_from_torch_rejects_what_it_cannot_copy() -> None:
    with pytest.raises(ValueError, match="kdim=8 and vdim=8 must equal embed_dim=16"):
        from_torch(nn.MultiheadAttention(16, 2, kdim=8, vdim=8))
    with pytest.raises(ValueError, match="add_bias_kv"):
        from_torch(nn.MultiheadAttention(16, 2, add_bias_kv=True))


def test_fully_masked_query_row_is_zero_before_w_o() -> None:
    mha = MultiHeadAttention(16, 2, bias=False)
    x = torch.randn(1, 3, 16, requires_grad=True)
    mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    out, attn = mha(x, mask=mask, return_attention=True)
    assert torch.equal(attn[0, :, 1], torch.zeros(2, 3))
    assert torch.equal(out[0, 1], torch.zeros(16))  # zero heads, no bias: zero output
    torch.testing.assert_close(mha(x, mask=mask), out)
    out.sum().backward()
    assert x.grad.isfinite().all()


def test_dropout_only_in_training() -> None:
    mha = MultiHeadAttention(16, 2, dropout=0.5)
    x = torch.randn(2, 4, 16)
    mha.eval()
    torch.testing.assert_close(mha(x), mha(x))
    mha.train()
    assert not torch.allclose(mha(x), mha(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 10, "num_heads": 4}, "d_model=10 is not divisible by num_heads=4"),
        ({"d_model": 0, "num_heads": 4}, "d_model=0"),
        ({"d_model": 8, "num_heads": -1}, "num_heads=-1"),
        ({"d_model": 8, "num_heads": 2, "dropout": 1.0}, "dropout=1.0"),
    ],
)
def test_constructor_rejects(kwargs: dict, message: str) -> None:
    for cls in (MultiHeadAttention, PerHeadAttention):
        with pytest.raises(ValueError, match=message):
            cls(**kwargs)


def test_forward_rejects_bad_inputs() -> None:
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, d_model=16\), got \(2, 5, 12\)"):
        mha(torch.randn(2, 5, 12))
    with pytest.raises(ValueError, match=r"context must have shape \(B, T, d_model=16\), got \(2, 5\)"):
        mha(torch.randn(2, 5, 16), torch.randn(2, 5))
    with pytest.raises(ValueError, match="same batch size, got 2 and 3"):
        mha(torch.randn(2, 5, 16), torch.randn(3, 5, 16))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 4\) cannot broadcast to .*\(2, 4, 5, 5\)"):
        mha(torch.randn(2, 5, 16), mask=torch.ones(4, 4, dtype=torch.bool))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MultiHeadAttention(16, True), "num_heads=True"),
        (lambda: MultiHeadAttention("16", 4), "d_model='16'"),
        (lambda: MultiHeadAttention(16, 4, num_kv_heads=True), "num_kv_heads=True"),
        (lambda: MultiHeadAttention(16, 4, dropout="0.1"), "dropout='0.1'"),
        (lambda: PerHeadAttention(16, 4, dropout=1.0), "dropout=1.0"),
    ],
)
def test_settings_a_learner_might_try_are_named(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("module", [MultiHeadAttention(16, 4), PerHeadAttention(16, 4)])
def test_inputs_a_learner_might_try_are_named(module) -> None:
    with pytest.raises(ValueError, match="x must be a torch.Tensor .* got list"):
        module([[0.0] * 16])
    with pytest.raises(ValueError, match="x has dtype torch.float64 but the module's weights are torch.float32"):
        module(torch.randn(1, 3, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="context has dtype torch.float16"):
        module(torch.randn(1, 3, 16), torch.randn(1, 3, 16).half())
