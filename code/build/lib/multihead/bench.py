"""Benchmark: the fused module against SDPA, the per-head loop and nn.MultiheadAttention (chapters 2, 9).

Run `python -m multihead.bench`. Every implementation is timed once per round, in an order that
rotates from round to round, so a slow moment of a shared machine hits all of them alike. A
ratio compares an implementation with the reference *in the same round*: the same four
projections written around `F.scaled_dot_product_attention` with nothing else. The report gives
the median ratio over the rounds and its range. `--check` exits with status 1 when the fused
module's median forward+backward ratio exceeds the budget.
"""

from __future__ import annotations

import argparse
import math
import statistics
import timeit
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from .heads import merge_heads, split_heads
from .module import MultiHeadAttention, to_per_head, to_torch

BUDGET = 1.10  # fused fwd+bwd / reference fwd+bwd, from COURSE.md
REFERENCE = "SDPA reference"
KINDS = ("forward", "train")  # forward alone (no grad), forward + backward
K = TypeVar("K", bound=Hashable)


@dataclass
class Config:
    """Sizes and timing of one benchmark run; the defaults are COURSE.md's budget case. Introduced in chapter 2."""

    batch_size: int = 4  # B
    seq_len: int = 512  # T
    d_model: int = 768
    num_heads: int = 12  # h
    rounds: int = 7  # every implementation is timed once per round
    min_run_time: float = 0.3  # seconds per timed block

    def __post_init__(self) -> None:
        if min(self.batch_size, self.seq_len, self.d_model, self.num_heads, self.rounds) < 1:
            raise ValueError(f"sizes and rounds must be positive, got {self}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if self.min_run_time <= 0:
            raise ValueError(f"min_run_time={self.min_run_time} must be positive")


@dataclass
class Result:
    """One implementation's times in milliseconds, one per round; NaN where not timed. Introduced in chapter 2."""

    name: str
    forward_ms: list[float]
    train_ms: list[float]  # forward + backward

    def median_ms(self, kind: str) -> float:
        """The median time of `kind` ("forward" or "train") over the rounds."""
        return statistics.median(self._times(kind))

    def ratios(self, kind: str, reference: Result) -> list[float]:
        """Per round: this time over the reference's time in the same round."""
        return [t / r for t, r in zip(self._times(kind), reference._times(kind))]

    def _times(self, kind: str) -> list[float]:
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not one of {KINDS}")
        return self.forward_ms if kind == "forward" else self.train_ms


def sdpa_reference(mha: MultiHeadAttention) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module's own weights, projected and attended with no checks in between. Introduced in chapter 2."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        q, k, v = (split_heads(F.linear(x, W.weight, W.bias), mha.num_heads) for W in (mha.W_q, mha.W_k, mha.W_v))
        heads = F.scaled_dot_product_attention(q, k, v)  # (B, h, T, d_k)
        return F.linear(merge_heads(heads), mha.W_o.weight, mha.W_o.bias)  # (B, T, d_model)

    return forward


def einsum_attention(mha: MultiHeadAttention) -> Callable[[torch.Tensor], torch.Tensor]:
    """The module's weights, with heads and attention written as einsum. Introduced in chapter 9."""
    h, d_k = mha.num_heads, mha.head_dim

    def forward(x: torch.Tensor) -> torch.Tensor:
        B, T, d_model = x.shape
        q, k, v = (W(x).view(B, T, h, d_k) for W in (mha.W_q, mha.W_k, mha.W_v))  # (B, T, h, d_k)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / d_k**0.5  # (B, h, T, T)
        heads = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v)  # (B, T, h, d_k)
        return mha.W_o(heads.reshape(B, T, d_model))  # (B, T, d_model)

    return forward


# What each row runs; "train" is skipped where the row exists only for inference.
DESCRIPTIONS = {
    REFERENCE: "four F.linear calls around F.scaled_dot_product_attention",
    "fused MultiHeadAttention": "the course's module: fused kernel, no weights kept",
    "fused, weights returned": "the course's module, softmax(QK^T) kept and returned",
    "per-head loop": "chapter 2's h separate heads, then torch.cat",
    "einsum": "scores and weighted sums written as torch.einsum",
    "nn.MultiheadAttention": "PyTorch's module in training mode, need_weights=False",
    "nn.MHA, weights returned": "PyTorch's module, weights averaged over heads",
    "nn.MHA, eval fast path": "PyTorch's module in eval mode, no grad: forward only",
}
FORWARD_ONLY = {"nn.MHA, eval fast path"}


def implementations(mha: MultiHeadAttention) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Every implementation under test, all holding the same weights. Introduced in chapter 2."""
    per_head = to_per_head(mha)
    torch_mha = to_torch(mha)
    torch_eval = to_torch(mha).eval()  # with no grad, this takes PyTorch's inference fast path
    return {
        REFERENCE: sdpa_reference(mha),
        "fused MultiHeadAttention": mha,
        "fused, weights returned": lambda x: mha(x, return_attention=True)[0],
        "per-head loop": per_head,
        "einsum": einsum_attention(mha),
        "nn.MultiheadAttention": lambda x: torch_mha(x, x, x, need_weights=False)[0],
        "nn.MHA, weights returned": lambda x: torch_mha(x, x, x, need_weights=True)[0],
        "nn.MHA, eval fast path": lambda x: torch_eval(x, x, x, need_weights=False)[0],
    }


def _statements(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> dict[str, Callable[[], None]]:
    def forward() -> None:
        with torch.no_grad():
            fn(x)

    def train() -> None:
        fn(x).sum().backward()

    return {"forward": forward, "train": train}


def _block_ms(statement: Callable[[], object], calls: int) -> float:
    """Mean milliseconds per call over one block of `calls` calls."""
    return timeit.Timer(statement).timeit(calls) / calls * 1e3


def _calls_per_block(statement: Callable[[], object], min_run_time: float) -> int:
    """How many calls fill one block of min_run_time seconds, judged from one warm call."""
    statement()  # warm-up
    return max(1, math.ceil(min_run_time * 1e3 / _block_ms(statement, 1)))


def interleave(statements: dict[K, Callable[[], object]], *, rounds: int, min_run_time: float) -> dict[K, list[float]]:
    """Milliseconds per call of every statement, one block per round. Introduced in chapter 2.

    The order rotates from round to round, so each statement takes every place in turn and a
    slow moment of the machine falls on all of them alike.
    """
    if rounds < 1 or min_run_time <= 0:
        raise ValueError(f"rounds={rounds} and min_run_time={min_run_time} must be positive")
    calls = {key: _calls_per_block(s, min_run_time) for key, s in statements.items()}
    times: dict[K, list[float]] = {key: [] for key in statements}
    keys = list(statements)
    for round_ in range(rounds):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            times[key].append(_block_ms(statements[key], calls[key]))
    return times


def run(config: Config) -> list[Result]:
    """Time every implementation in `config.rounds` interleaved rounds, on random input. Introduced in chapter 2."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(config.d_model, config.num_heads)
    x = torch.randn(config.batch_size, config.seq_len, config.d_model, requires_grad=True)
    statements = {
        (name, kind): statement
        for name, fn in implementations(mha).items()
        for kind, statement in _statements(fn, x).items()
        if not (kind == "train" and name in FORWARD_ONLY)
    }
    times = interleave(statements, rounds=config.rounds, min_run_time=config.min_run_time)
    nan = [math.nan] * config.rounds
    names = list(dict.fromkeys(name for name, _ in statements))
    return [Result(name, times[name, "forward"], times.get((name, "train"), nan)) for name in names]


def verdict(ratios: list[float]) -> str:
    """'slower' or 'faster' when every round agrees, else 'within noise'. Introduced in chapter 2."""
    if min(ratios) > 1:
        return "slower"
    if max(ratios) < 1:
        return "faster"
    return "within noise"


def report(config: Config, results: list[Result], *, legend: bool = False) -> str:
    """A table of median times, median ratios against the first result and their ranges. Introduced in chapter 2."""
    ref = results[0]
    lines = [
        f"B={config.batch_size}, T={config.seq_len}, d_model={config.d_model}, h={config.num_heads}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {config.rounds} rounds",
        f"{'implementation':<25}{'fwd ms':>7}{'ratio':>6}{'range':>10}{'fwd+bwd':>9}{'ratio':>6}{'range':>10}",
    ]
    for r in results:
        cells = []
        for kind, width in (("forward", 7), ("train", 9)):
            ratios = r.ratios(kind, ref)
            if math.isnan(r.median_ms(kind)):
                cells.append(f"{'-':>{width}}{'-':>6}{'-':>10}")
            else:
                spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
                cells.append(f"{r.median_ms(kind):>{width}.1f}{statistics.median(ratios):>6.2f}{spread:>10}")
        lines.append(f"{r.name:<25}" + "".join(cells))
    if legend:
        lines += ["", *(f"{name}: {text}" for name, text in DESCRIPTIONS.items())]
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
    print(report(config, results, legend=True))
    fused = next(r for r in results if r.name == "fused MultiHeadAttention")
    ratios = fused.ratios("train", results[0])
    ratio = statistics.median(ratios)
    print(f"fused fwd+bwd / reference: median {ratio:.3f}, range {min(ratios):.3f}-{max(ratios):.3f} (budget {BUDGET})")
    return int(check and ratio > BUDGET)


if __name__ == "__main__":
    raise SystemExit(main())
