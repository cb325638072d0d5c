import pytest
import torch

from multihead import (
    causal_mask,
    from_additive,
    from_torch_attn_mask,
    from_torch_key_padding_mask,
    padding_mask,
    to_additive,
    to_torch_attn_mask,
    to_torch_key_padding_mask,
)


def test_causal_mask_matches_torch_convention() -> None:
    mask = causal_mask(4)
    assert mask.dtype == torch.bool and mask.shape == (4, 4)
    assert torch.equal(mask, torch.ones(4, 4, dtype=torch.bool).tril())
    # Queries are the last positions when the keys are longer (a cache of earlier tokens).
    assert torch.equal(causal_mask(2, 4), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool))


def test_padding_mask_shape_and_values() -> None:
    mask = padding_mask([3, 1], 4)
    assert mask.shape == (2, 1, 1, 4)
    assert mask[:, 0, 0].tolist() == [[True, True, True, False], [True, False, False, False]]


@pytest.mark.parametrize("shape", [(5, 5), (2, 1, 5, 5), (2, 3, 5, 7)])
def test_additive_round_trip(shape: tuple[int, ...]) -> None:
    mask = torch.rand(shape) > 0.5
    additive = to_additive(mask)
    assert set(additive.unique().tolist()) <= {0.0, float("-inf")}
    assert torch.equal(from_additive(additive), mask)


def test_torch_conventions_round_trip() -> None:
    padding = padding_mask([3, 5], 5)
    assert torch.equal(from_torch_key_padding_mask(to_torch_key_padding_mask(padding)), padding)
    causal = causal_mask(5)
    assert torch.equal(from_torch_attn_mask(to_torch_attn_mask(causal, 2), 2), causal)
    per_head = torch.rand(2, 3, 4, 4) > 0.5
    assert to_torch_attn_mask(per_head, 3).shape == (6, 4, 4)
    assert torch.equal(from_torch_attn_mask(to_torch_attn_mask(per_head, 3), 3), per_head)
    assert torch.equal(from_torch_attn_mask(to_additive(~causal), 2), ~causal)


def test_converters_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, 1, T_k\), got \(2, 3, 1, 4\)"):
        to_torch_key_padding_mask(torch.ones(2, 3, 1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B, T_k\), got \(4,\)"):
        from_torch_key_padding_mask(torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_heads=4"):
        from_torch_attn_mask(torch.ones(6, 3, 3, dtype=torch.bool), 4)
    with pytest.raises(ValueError, match=r"got \(3,\)"):
        to_torch_attn_mask(torch.ones(3, dtype=torch.bool), 2)
    with pytest.raises(ValueError, match="floating point"):
        from_additive(torch.ones(2, 2, dtype=torch.bool))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: causal_mask(0), "T_q=0"),
        (lambda: causal_mask(5, 3), "T_k >= T_q, got T_q=5, T_k=3"),
        (lambda: padding_mask([3, 9], 4), r"\[0, T_k=4\], got \[3, 9\]"),
        (lambda: padding_mask([3], 0), "T_k=0"),
    ],
)
def test_mask_builders_reject(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_is_causal_aligns_top_left_unlike_the_cache_mask() -> None:
    """SDPA's is_causal=True hides keys that a cached step must see; causal_mask(T_new, T) does not."""
    import torch.nn.functional as F

    q, k, v = torch.randn(1, 2, 2, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    top_left = torch.ones(2, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(
        F.scaled_dot_product_attention(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, attn_mask=top_left)
    )
    bottom_right = causal_mask(2, 5)
    assert bottom_right[-1].all() and not top_left[-1].all()
    assert not torch.allclose(
        F.scaled_dot_product_attention(q, k, v, is_causal=True), F.scaled_dot_product_attention(q, k, v, attn_mask=bottom_right)
    )
