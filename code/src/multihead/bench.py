"""Benchmark: the fused module against SDPA, the per-head loop and nn.MultiheadAttention (chapters 2, 8).

Run `python -m multihead.bench`. Ratios are against the reference: the same four projections
written around `F.scaled_dot_product_attention` with nothing else. `--check` exits with status 1
when the fused module's forward+backward exceeds the budget ratio.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from .heads import merge_heads, split_heads
from .module import MultiHeadAttention, to_per_head, to_torch

BUDGET = 1.10  # fused fwd+bwd / reference fwd+bwd, from COURSE.md


@dataclass
class Config:
    """Sizes and timing of one benchmark run; the defaults are COURSE.md's budget case. Introduced in chapter 2."""

    batch_size: int = 4  # B
    seq_len: int = 512  # T
    d_model: int = 768
    num_heads: int = 12  # h
    min_run_time: float = 1.0  # seconds of timing per measurement


@dataclass
class Result:
    """Median milliseconds of one implementation. Introduced in chapter 2."""

    name: str
    forward_ms: float
    train_ms: float  # forward + backward


def sdpa_reference(mha: MultiHeadAttention) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module's own weights, projected and attended with no checks in between. Introduced in chapter 2."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(F.linear(x, W.weight, W.bias), mha.num_heads) for W in (mha.W_q, mha.W_k, mha.W_v))
        heads = F.scaled_dot_product_attention(q, k, v)  # (B, h, T, d_k)
        return F.linear(merge_heads(heads), mha.W_o.weight, mha.W_o.bias)  # (B, T, d_model)

    return forward


def einsum_attention(mha: MultiHeadAttention) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module's weights, with heads and attention written as einsum. Introduced in chapter 8."""
    h, d_k = mha.num_heads, mha.head_dim

    def forward(x: torch.Tensor) -> torch.Tensor:
        B, T, d_model = x.shape
        q, k, v = (W(x).view(B, T, h, d_k) for W in (mha.W_q, mha.W_k, mha.W_v))  # (B, T, h, d_k)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / d_k**0.5  # (B, h, T, T)
        heads = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v)  # (B, T, h, d_k)
        return mha.W_o(heads.reshape(B, T, d_model))  # (B, T, d_model)

    return forward


def implementations(mha: MultiHeadAttention) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Every implementation under test, all holding the same weights. Introduced in chapter 2."""
    per_head = to_per_head(mha)
    torch_mha = to_torch(mha)
    return {
        "SDPA reference": sdpa_reference(mha),
        "fused MultiHeadAttention": mha,
        "fused, weights returned": lambda x: mha(x, return_attention=True)[0],
        "per-head loop": per_head,
        "einsum": einsum_attention(mha),
        "nn.MultiheadAttention": lambda x: torch_mha(x, x, x, need_weights=False)[0],
        "nn.MHA, weights returned": lambda x: torch_mha(x, x, x, need_weights=True)[0],
    }


def _time(statement: Callable[[], object], min_run_time: float) -> float:
    timer = benchmark.Timer(stmt="statement()", globals={"statement": statement}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def run(config: Config) -> list[Result]:
    """Time every implementation, forward and forward+backward, on random input. Introduced in chapter 2."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(config.d_model, config.num_heads)
    x = torch.randn(config.batch_size, config.seq_len, config.d_model, requires_grad=True)
    results = []
    for name, fn in implementations(mha).items():

        def forward(fn: Callable = fn) -> None:
            with torch.no_grad():
                fn(x)

        def train(fn: Callable = fn) -> None:
            fn(x).sum().backward()

        results.append(Result(name, _time(forward, config.min_run_time), _time(train, config.min_run_time)))
    return results


def report(config: Config, results: list[Result]) -> str:
    """A table of times and ratios against the first result. Introduced in chapter 2."""
    ref = results[0]
    lines = [
        f"B={config.batch_size}, T={config.seq_len}, d_model={config.d_model}, h={config.num_heads}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"{'implementation':<26}{'fwd ms':>8}{'ratio':>7}{'fwd+bwd ms':>12}{'ratio':>7}",
    ]
    for r in results:
        lines.append(
            f"{r.name:<26}{r.forward_ms:>8.1f}{r.forward_ms / ref.forward_ms:>7.2f}"
            f"{r.train_ms:>12.1f}{r.train_ms / ref.train_ms:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table; with --check, exit 1 over budget. Introduced in chapter 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in vars(Config()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if fused fwd+bwd > {BUDGET}x the reference")
    args = vars(parser.parse_args(argv))
    check = args.pop("check")
    config = Config(**args)
    results = run(config)
    print(report(config, results))
    fused = next(r for r in results if r.name == "fused MultiHeadAttention")
    ratio = fused.train_ms / results[0].train_ms
    print(f"fused fwd+bwd / reference: {ratio:.3f} (budget {BUDGET})")
    return int(check and ratio > BUDGET)


if __name__ == "__main__":
    raise SystemExit(main())
