import torch

from multihead.bench import Config, implementations, main, report, run
from multihead.module import MultiHeadAttention


def test_implementations_agree() -> None:
    mha = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 9, 32)
    outputs = {name: fn(x) for name, fn in implementations(mha).items()}
    reference = outputs.pop("SDPA reference")
    for name, out in outputs.items():
        torch.testing.assert_close(out, reference, msg=name)


def test_benchmark_runs_and_reports_ratios(capsys) -> None:
    config = Config(batch_size=1, seq_len=8, d_model=16, num_heads=2, min_run_time=0.01)
    results = run(config)
    assert [r.name for r in results][0] == "SDPA reference" and len(results) == 7
    assert all(r.forward_ms > 0 and r.train_ms > 0 for r in results)
    assert report(config, results).splitlines()[2].split()[-1] == "1.00"
    assert main(["--batch-size", "1", "--seq-len", "8", "--d-model", "16", "--num-heads", "2", "--min-run-time", "0.01"]) == 0
    assert "fused fwd+bwd / reference" in capsys.readouterr().out
