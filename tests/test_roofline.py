import pytest
import torch

from multihead.roofline import (
    DecodeStack,
    Step,
    last_level_cache_bytes,
    main,
    matmul_rate,
    grouped_scores_rate,
    measure,
    prefill_flops,
    prefill_rate,
    projection_bandwidth,
    read_bandwidth,
    report,
)


def test_bytes_and_flops_of_a_step() -> None:
    mha = Step(d_model=1024, num_heads=16, num_kv_heads=16, cache_len=8192)
    mqa = Step(d_model=1024, num_heads=16, num_kv_heads=1, cache_len=8192)
    assert mha.cache_numbers() * 4 == 64 * 2**20  # keys and values of 8192 tokens, 16 heads of 64, float32
    assert mqa.cache_numbers() * 16 == mha.cache_numbers()
    assert mha.weight_numbers() == 4 * 1024 * 1024 + 4 * 1024  # four square weights and their biases
    # one multiply-add per weight, and per cached number for every query head that reads it
    assert mha.flops() == 2 * mha.weight_numbers() + 2 * mha.cache_numbers()
    assert mqa.flops() == 2 * mqa.weight_numbers() + 2 * 16 * mqa.cache_numbers()
    floor, bound = mha.floor_seconds(bandwidth=50e9, rate=100e9)
    assert bound == "memory" and floor == pytest.approx(mha.bytes_read() / 50e9)
    assert mha.floor_seconds(bandwidth=50e9, rate=1e6)[1] == "compute"


@pytest.mark.parametrize("change, message", [(dict(num_kv_heads=3), "num_kv_heads=3"), (dict(cache_len=0), "cache_len=0")])
def test_step_rejects_impossible_settings(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        Step(**{**dict(d_model=64, num_heads=4, num_kv_heads=2, cache_len=8), **change})


@pytest.mark.parametrize("static", [True, False])
def test_a_timed_step_leaves_the_caches_as_it_found_them(static: bool) -> None:
    stack = DecodeStack(Step(32, 4, 2, 10), static=static, min_bytes=1)
    first, second = stack.step(), stack.step()
    torch.testing.assert_close(first, second)  # the same cache length both times
    assert all(len(c) == 10 for c in stack.caches) if static else all(c.keys.shape[2] == 10 for c in stack.caches)
    assert stack.num_layers == 2


def test_the_static_and_the_growing_cache_give_the_same_step() -> None:
    torch.manual_seed(0)
    static = DecodeStack(Step(32, 4, 1, 6), min_bytes=1)
    torch.manual_seed(0)
    growing = DecodeStack(Step(32, 4, 1, 6), static=False, min_bytes=1)
    torch.testing.assert_close(static.step(), growing.step())


def test_machine_rates_and_report() -> None:
    assert read_bandwidth(2**20, repeats=1) > 0 and matmul_rate(64, repeats=1) > 0
    assert last_level_cache_bytes() >= 2**20
    steps = [Step(32, 4, h_kv, 8) for h_kv in (4, 1)]
    rows, bandwidth, rate = measure(steps, rounds=2, min_run_time=1e-4, bandwidth=1e10, rate=1e11, min_bytes=1)
    assert [r.step for r in rows] == steps and all(len(r.times_ms) == 2 for r in rows)
    assert all(r.fraction == pytest.approx(r.floor_ms / r.median_ms) for r in rows)
    lines = report(rows, bandwidth, rate, baseline=rows).splitlines()
    assert len(lines) == 5 and all(len(line) <= 80 for line in lines)
    rates = projection_bandwidth(32, 64, rounds=1, min_run_time=1e-4, min_bytes=1)
    assert set(rates) == {"linear", "decode_linear"} and min(rates.values()) > 0
    assert grouped_scores_rate(4, 8, 16, repeats=1, min_bytes=1) > 0
    with pytest.raises(ValueError, match="cache_len=0"):
        grouped_scores_rate(4, 8, 0)
    assert prefill_rate(32, 4, 8, repeats=1) > 0


def test_prefill_flops_count_projections_and_the_causal_pairs() -> None:
    one = Step(d_model=64, num_heads=4, num_kv_heads=4, cache_len=1)  # a decoding step with one key cached
    # one token alone: its projections, and its query against its own key
    assert prefill_flops(64, 4, 1) == 2 * 4 * 64 * 64 + 2 * 2 * 64
    assert prefill_flops(64, 4, 1) == one.flops() - 2 * (2 * 64 + 2 * 64)  # the step counts biases too
    # three tokens: 1 + 2 + 3 = 6 query-key pairs
    assert prefill_flops(64, 4, 3) == 3 * 2 * 4 * 64 * 64 + 2 * 2 * 6 * 64
    with pytest.raises(ValueError, match="tokens=0"):
        prefill_flops(64, 4, 0)


def test_command_line_prints_the_decode_table(capsys) -> None:
    assert main(["--d-model", "32", "--num-heads", "4", "--kv-heads", "4", "1", "--cache-lens", "8", "--rounds", "3", "--min-mib", "0"]) == 0
    out = capsys.readouterr().out
    assert "read bandwidth" in out and "fraction" in out and "cat ms" in out and "MFLOP" in out
    assert "GB/s with decode_linear" in out and "T=8: the scores of 4 query heads" in out
    assert "a prefill of 512 tokens" in out
