import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from multihead import head_dim, merge_heads, split_heads


@st.composite
def batches(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    num_heads = draw(st.integers(1, 8))
    d_k = draw(st.integers(1, 8))
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    return torch.randn(B, T, num_heads * d_k), num_heads


@given(batches())
def test_merge_inverts_split(case: tuple[torch.Tensor, int]) -> None:
    x, num_heads = case
    torch.testing.assert_close(merge_heads(split_heads(x, num_heads)), x, rtol=0, atol=0)


@given(batches())
def test_split_inverts_merge(case: tuple[torch.Tensor, int]) -> None:
    x, num_heads = case
    heads = split_heads(x, num_heads)
    torch.testing.assert_close(split_heads(merge_heads(heads), num_heads), heads, rtol=0, atol=0)


@given(batches())
def test_head_i_holds_feature_block_i(case: tuple[torch.Tensor, int]) -> None:
    x, num_heads = case
    d_k = x.shape[-1] // num_heads
    heads = split_heads(x, num_heads)  # (B, h, T, d_k)
    assert heads.shape == (x.shape[0], num_heads, x.shape[1], d_k)
    for i in range(num_heads):
        torch.testing.assert_close(heads[:, i], x[..., i * d_k : (i + 1) * d_k], rtol=0, atol=0)


def test_split_is_a_view_and_merge_copies() -> None:
    x = torch.randn(4, 16, 512)
    heads = split_heads(x, 4)
    assert heads.data_ptr() == x.data_ptr() and not heads.is_contiguous()
    assert heads.stride() == (16 * 512, 128, 512, 1)
    assert merge_heads(heads).is_contiguous()


def test_split_accepts_non_contiguous_input() -> None:
    x = torch.randn(16, 4, 512).transpose(0, 1)  # (4, 16, 512), not contiguous
    torch.testing.assert_close(merge_heads(split_heads(x, 4)), x)


def test_view_without_transpose_differs() -> None:
    x = torch.randn(2, 8, 16)
    assert not torch.equal(x.view(2, 4, 8, 4), split_heads(x, 4))


@pytest.mark.parametrize(
    ("d_model", "num_heads", "message"),
    [
        (512, 3, "d_model=512 is not divisible by num_heads=3"),
        (512, 0, "num_heads=0"),
        (0, 4, "d_model=0"),
        (-8, 2, "d_model=-8"),
        (8, -2, "num_heads=-2"),
    ],
)
def test_head_dim_rejects(d_model: int, num_heads: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        head_dim(d_model, num_heads)


def test_split_rejects_wrong_rank_and_width() -> None:
    with pytest.raises(ValueError, match=r"\(B, T, d_model\), got shape \(16, 512\)"):
        split_heads(torch.randn(16, 512), 4)
    with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=4"):
        split_heads(torch.randn(2, 3, 10), 4)
    with pytest.raises(ValueError, match=r"\(B, h, T, d_k\), got shape \(2, 3, 10\)"):
        merge_heads(torch.randn(2, 3, 10))


@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_split_heads_copies_nothing(layout: str) -> None:
    """Cutting the last axis is a view for any strides, so the heads share the input's memory."""
    x = torch.randn(2, 6, 8) if layout == "contiguous" else torch.randn(2, 8, 6).transpose(1, 2)  # (B, T, d_model)
    heads = split_heads(x, 4)  # (B, h, T, d_k)
    assert heads.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    torch.testing.assert_close(merge_heads(heads), x, rtol=0, atol=0)
