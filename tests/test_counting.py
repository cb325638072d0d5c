import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from multihead import MultiHeadAttention, attention_memory_bytes, count_parameters, mha_flops, mha_parameters


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("d_model", "num_heads"), [(512, 4), (768, 12), (64, 1)])
def test_parameter_formula_matches_module(d_model: int, num_heads: int, bias: bool) -> None:
    assert mha_parameters(d_model, num_heads, bias=bias) == count_parameters(MultiHeadAttention(d_model, num_heads, bias=bias))


def test_gpt2_small_layer() -> None:
    assert mha_parameters(768, 12) == 2_362_368


@pytest.mark.parametrize(("num_heads", "kv_len"), [(1, None), (4, None), (8, 24)])
def test_matmul_flops_match_torch_flop_counter(num_heads: int, kv_len: int | None) -> None:
    B, T, d_model = 2, 16, 64
    mha = MultiHeadAttention(d_model, num_heads).eval()
    x = torch.randn(B, T, d_model)
    context = None if kv_len is None else torch.randn(B, kv_len, d_model)
    with FlopCounterMode(display=False) as counter:
        mha(x, context, return_attention=True)
    counted = mha_flops(B, T, d_model, num_heads, kv_len)
    assert counter.get_total_flops() == counted["total"] - counted["softmax"]


def test_matmul_flops_do_not_depend_on_heads_but_softmax_does() -> None:
    by_heads = [mha_flops(4, 16, 512, h) for h in (1, 2, 4, 8)]
    assert len({f["total"] - f["softmax"] for f in by_heads}) == 1
    assert by_heads[0]["scores"] == 2 * 4 * 16 * 16 * 512
    assert [f["softmax"] for f in by_heads] == [4 * 4 * h * 16 * 16 for h in (1, 2, 4, 8)]


def test_attention_memory_grows_with_heads() -> None:
    assert attention_memory_bytes(4, 4, 16) == 4 * 4 * 16 * 16 * 4
    assert attention_memory_bytes(4, 8, 16) == 2 * attention_memory_bytes(4, 4, 16)
    assert attention_memory_bytes(1, 1, 3, 5, dtype=torch.float16) == 30


def test_counting_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="d_model=100 is not divisible by num_heads=3"):
        mha_parameters(100, 3)
    with pytest.raises(ValueError, match="seq_len=0"):
        mha_flops(1, 0, 8, 2)
    with pytest.raises(ValueError, match="num_heads=0"):
        attention_memory_bytes(1, 0, 4)


def test_summary_page_numbers_match_the_package() -> None:
    """book/summary.md quotes the running example's counts; they must be the package's."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "book" / "summary.md").read_text()
    f = mha_flops(4, 16, 512, 4)
    quoted = {
        "parameters": mha_parameters(512, 4),
        "GPT-2 small": mha_parameters(768, 12),
        "scores and weighted sum": f["scores"] + f["weighted_sum"],
        "projections": f["q_proj"] + f["k_proj"] + f["v_proj"] + f["out_proj"],
    }
    for what, value in quoted.items():
        assert f"{value:,}" in page, f"{what}: {value:,} not in the summary"
    assert f"{attention_memory_bytes(4, 4, 16) // 1024} KiB" in page
