import math

import pytest
import torch

from multihead.bench import (
    DESCRIPTIONS,
    REFERENCE,
    Config,
    Result,
    implementations,
    interleave,
    main,
    report,
    run,
    verdict,
)
from multihead.module import MultiHeadAttention

TINY = dict(batch_size=1, seq_len=8, d_model=16, num_heads=2, rounds=3, min_run_time=0.001)


def test_implementations_agree() -> None:
    mha = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    with torch.no_grad():  # no grad: nn.MultiheadAttention in eval mode takes its fast path
        outputs = {name: fn(x) for name, fn in implementations(mha).items()}
    reference = outputs.pop(REFERENCE)
    for name, out in outputs.items():
        torch.testing.assert_close(out, reference, msg=name)
    assert set(DESCRIPTIONS) == set(implementations(mha)) | {REFERENCE}


def test_every_round_times_every_implementation() -> None:
    config = Config(**TINY)
    results = run(config)
    assert results[0].name == REFERENCE and len(results) == len(DESCRIPTIONS)
    for r in results:
        assert len(r.forward_ms) == len(r.train_ms) == config.rounds
        assert all(t > 0 for t in r.forward_ms)
    trained = [r for r in results if not math.isnan(r.train_ms[0])]
    assert all(t > 0 for r in trained for t in r.train_ms)
    assert [r.name for r in results if r not in trained] == ["nn.MHA, eval fast path"]


def test_ratios_are_taken_round_by_round() -> None:
    ref = Result(REFERENCE, [1.0, 2.0, 4.0], [1.0, 1.0, 1.0])
    other = Result("other", [2.0, 2.0, 2.0], [3.0, 3.0, 3.0])
    assert other.ratios("forward", ref) == [2.0, 1.0, 0.5]
    assert other.median_ms("train") == 3.0
    with pytest.raises(ValueError, match="backward"):
        other.ratios("backward", ref)


def test_report_shows_median_ratio_and_range() -> None:
    config = Config(**TINY)
    ref = Result(REFERENCE, [1.0, 2.0, 4.0], [1.0, 1.0, 1.0])
    other = Result("other", [2.0, 2.0, 2.0], [3.0, 3.0, 3.0])
    lines = report(config, [ref, other]).splitlines()
    assert lines[2].split()[-6:] == ["2.0", "1.00", "1.00-1.00", "1.0", "1.00", "1.00-1.00"]
    assert lines[3].split()[-6:] == ["2.0", "1.00", "0.50-2.00", "3.0", "3.00", "3.00-3.00"]
    assert all(len(line) <= 80 for line in lines)


def test_verdict_needs_every_round_to_agree() -> None:
    assert verdict([1.1, 1.2, 1.05]) == "slower"
    assert verdict([0.9, 0.8]) == "faster"
    assert verdict([0.9, 1.1, 1.3]) == "within noise"


@pytest.mark.parametrize(
    "change, message",
    [(dict(rounds=0), "rounds"), (dict(num_heads=3), "num_heads=3"), (dict(min_run_time=0.0), "min_run_time=0.0")],
)
def test_config_rejects_impossible_settings(change, message) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**{**TINY, **change})


def test_command_line_prints_table_and_checks_budget(capsys) -> None:
    args = ["--batch-size", "1", "--seq-len", "8", "--d-model", "16", "--num-heads", "2", "--rounds", "2"]
    assert main([*args, "--min-run-time", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "fused fwd+bwd / reference: median" in out and DESCRIPTIONS[REFERENCE] in out


def test_interleave_rotates_the_order_and_rejects_bad_settings() -> None:
    seen = []
    statements = {key: (lambda key=key: seen.append(key)) for key in "abc"}
    times = interleave(statements, rounds=3, min_run_time=1e-9)
    assert {key: len(t) for key, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    timed = seen[6:]  # after two calls each to size the blocks (one warm-up, one timed)
    assert timed == list("abc" + "bca" + "cab")
    with pytest.raises(ValueError, match="rounds=0"):
        interleave(statements, rounds=0, min_run_time=0.1)
