import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from multihead import MultiHeadAttention, attention_memory_bytes, count_parameters, mha_flops, mha_parameters
from multihead.counting import allreduce_bytes_per_rank, tensor_parallel_ratio


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
    assert f"{allreduce_bytes_per_rank(4 * 16 * 512, 2, bytes_per_number=4) / 1024:.0f} KiB with $p = 2$" in page


def test_ring_all_reduce_bytes() -> None:
    assert allreduce_bytes_per_rank(8, 1) == 0  # one rank sends nothing
    assert allreduce_bytes_per_rank(8, 2) == 16  # half of 8 numbers twice, 2 bytes each
    assert allreduce_bytes_per_rank(4096 * 8192, 8) == 112 * 2**20
    with pytest.raises(ValueError, match="world_size=0"):
        allreduce_bytes_per_rank(8, 0)


def test_tensor_parallel_ratio_is_the_two_times_divided() -> None:
    d, p, link, rate, B, T = 4096, 4, 100e9, 500e12, 3, 7
    compute = 24 * B * T * d * d / p / rate
    comm = 2 * allreduce_bytes_per_rank(B * T * d, p) / link
    assert tensor_parallel_ratio(d, p, link, rate) == pytest.approx(comm / compute)
    assert tensor_parallel_ratio(d, 1, link, rate) == 0
    with pytest.raises(ValueError, match="link_bytes_per_s=0"):
        tensor_parallel_ratio(d, p, 0, rate)
