import pytest
import torch
import torch.nn.functional as F

from multihead import causal_mask, padding_mask, scaled_dot_product_attention


def qkv(B: int = 2, h: int = 3, T_q: int = 5, T_k: int = 7, d_k: int = 4) -> tuple[torch.Tensor, ...]:
    return torch.randn(B, h, T_q, d_k), torch.randn(B, h, T_k, d_k), torch.randn(B, h, T_k, d_k)


@pytest.mark.parametrize("mask_kind", ["none", "causal", "padding", "both", "per_head"])
def test_matches_torch_sdpa(mask_kind: str) -> None:
    q, k, v = qkv(T_q=7)
    masks = {
        "none": None,
        "causal": causal_mask(7),
        "padding": padding_mask([7, 4], 7),
        "both": causal_mask(7) & padding_mask([7, 4], 7),
        "per_head": torch.rand(2, 3, 7, 7) > 0.3,
    }
    mask = masks[mask_kind]
    if mask is not None:
        mask = mask | torch.eye(7, dtype=torch.bool)  # keep every row non-empty: torch's rule for those differs
    out, attn = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 7))
    if mask is not None:
        assert (attn.masked_select(~mask.expand_as(attn)) == 0).all()


def test_fully_masked_row_gives_zeros_and_finite_gradients() -> None:
    q, k, v = (t.requires_grad_() for t in qkv(T_q=3, T_k=3))
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, attn = scaled_dot_product_attention(q, k, v, mask)
    assert torch.equal(out[:, :, 1], torch.zeros_like(out[:, :, 1]))
    assert torch.equal(attn[:, :, 1], torch.zeros_like(attn[:, :, 1]))
    assert out.isfinite().all() and attn.isfinite().all()
    out.sum().backward()
    assert all(t.grad.isfinite().all() for t in (q, k, v))


def test_weights_depend_on_scaling_by_sqrt_d_k() -> None:
    q, k, v = qkv(d_k=64)
    _, attn = scaled_dot_product_attention(q, k, v)
    unscaled = (q @ k.transpose(-2, -1)).softmax(-1)
    torch.testing.assert_close(attn, (q @ k.transpose(-2, -1) / 8).softmax(-1))
    assert not torch.allclose(attn, unscaled)


def test_rejects_bad_shapes_and_masks() -> None:
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"q, k, v must be \(B, h, T, d_k\)"):
        scaled_dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="incompatible"):
        scaled_dot_product_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match=r"cannot broadcast to \(B, h, T_q, T_k\)=\(2, 3, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        scaled_dot_product_attention(q, k, v, torch.zeros(5, 7))
