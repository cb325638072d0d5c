"""Checkers for the chapters' coding exercises: run the reader's function, say what is wrong.

Each checker compares the reader's function with the package's reference on several shapes and
returns a `CheckReport`; its text is what the notebook shows. Introduced in chapter 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .data import IGNORE, first_minus_previous, generator
from .heads import merge_heads, split_heads
from .masks import causal_mask, padding_mask, to_torch_key_padding_mask
from .module import MultiHeadAttention

SPLIT_CASES = [(4, 16, 512, 4), (2, 5, 12, 3), (1, 7, 8, 8), (3, 1, 6, 1)]  # (B, T, d_model, h)


@dataclass
class CheckReport:
    """The outcome of one checker: how many cases passed and what went wrong. Introduced in chapter 2."""

    name: str
    passed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, problem: str) -> None:
        self.problems.append(problem)

    def __repr__(self) -> str:
        if self.ok:
            return f"{self.name}: all {self.passed} checks passed."
        return f"{self.name}: not yet.\n" + "\n".join(f"  - {problem}" for problem in self.problems)


def _call(report: CheckReport, fn: Callable, *args) -> torch.Tensor | None:
    try:
        return fn(*args)
    except NotImplementedError:
        report.fail("the function still raises NotImplementedError: fill in its body")
    except Exception as error:  # the reader's code may fail in any way; report it, never crash
        report.fail(f"calling it raised {type(error).__name__}: {error}")
    return None


def _compare(
    report: CheckReport,
    label: str,
    got: object,
    want: torch.Tensor,
    hint: Callable[[torch.Tensor], str],
    atol: float | None = None,
) -> None:
    """Record a pass, or what is wrong: not a tensor, the wrong shape, or other values (exact, or within atol)."""
    if not isinstance(got, torch.Tensor):
        report.fail(f"{label}: expected a tensor, got {type(got).__name__}")
    elif got.shape != want.shape:
        report.fail(f"{label}: expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
    elif not (torch.equal(got, want) if atol is None else torch.allclose(got, want, atol=atol)):
        report.fail(f"{label}: the shape is right but the values differ. {hint(got)}")
    else:
        report.passed += 1


def check_split_heads(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's split_heads(x, num_heads) -> (B, h, T, d_k). Introduced in chapter 2."""
    report = CheckReport("split_heads")
    for B, T, d_model, h in SPLIT_CASES:
        x = torch.arange(B * T * d_model, dtype=torch.float32).view(B, T, d_model)  # (B, T, d_model)
        want = split_heads(x, h)  # (B, h, T, d_k)
        got = _call(report, fn, x, h)
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x) -> str:
            if torch.equal(got, x.view(got.shape)):
                return "It looks like a view to (B, h, T, d_k) without the transpose: view first to (B, T, h, d_k)."
            return "Check which axis you split and which two you swap."

        _compare(report, f"x {tuple(x.shape)}, h={h}", got, want, hint)
    return report


def check_merge_heads(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check a reader's merge_heads(x) -> (B, T, d_model). Introduced in chapter 2."""
    report = CheckReport("merge_heads")
    for B, T, d_model, h in SPLIT_CASES:
        x = split_heads(torch.randn(B, T, d_model), h)  # (B, h, T, d_k)
        want = merge_heads(x)  # (B, T, d_model)
        got = _call(report, fn, x)
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x) -> str:
            if torch.equal(got, x.reshape(got.shape)):
                return "It looks like a reshape without transposing back: transpose(1, 2) first."
            return "Transpose back to (B, T, h, d_k) before joining the last two axes."

        _compare(report, f"heads {tuple(x.shape)}", got, want, hint)
    return report


def check_head_rows(fn: Callable[[torch.Tensor, int, int], torch.Tensor]) -> CheckReport:
    """Check a reader's head_rows(W, num_heads, i): the rows of a fused weight that head i uses. Introduced in chapter 2."""
    report = CheckReport("head_rows")
    for d_model, h in [(512, 4), (12, 3), (8, 8)]:
        d_k = d_model // h
        W = torch.randn(d_model, d_model)  # nn.Linear weight: (out = d_model, in = d_model)
        x = torch.randn(2, 5, d_model)  # (B, T, d_model)
        for i in (0, h - 1):
            got = _call(report, fn, W, h, i)
            if not report.ok:
                return report
            want = W[i * d_k : (i + 1) * d_k]  # (d_k, d_model)

            def hint(got: torch.Tensor, W: torch.Tensor = W, d_k: int = d_k, i: int = i) -> str:
                if torch.equal(got, W[:, i * d_k : (i + 1) * d_k].T):
                    return "You took columns; nn.Linear stores (out, in), so head i owns a block of rows."
                return f"Head {i} owns output features {i * d_k} to {(i + 1) * d_k - 1}."

            _compare(report, f"d_model={d_model}, h={h}, head {i}", got, want, hint)
            if report.ok:  # the slice must reproduce head i of the fused projection
                fused = split_heads(x @ W.T, h)[:, i]  # (B, T, d_k)
                torch.testing.assert_close(x @ got.T, fused)
    return report


def check_task_targets(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's targets for chapter 1's task, (x[t-1] - x[0]) mod V. Introduced in chapter 1."""
    report = CheckReport("task_targets")
    for B, T, V in [(2, 10, 12), (3, 2, 5), (1, 7, 3)]:
        x, want = first_minus_previous(B, T, V, generator(B * 100 + T))  # (B, T) each
        got = _call(report, fn, x.clone(), V)
        if not report.ok:
            break

        def hint(got: torch.Tensor, x: torch.Tensor = x, V: int = V, want: torch.Tensor = want) -> str:
            if got[:, 0].ne(IGNORE).any():
                return f"Position 0 has no answer: it should hold IGNORE ({IGNORE})."
            if torch.equal(got[:, 1:], (x[:, :-1] + x[:, :1]) % V):
                return "You added the first token; the task subtracts it."
            if torch.equal(got[:, 1:], (x[:, :1] - x[:, :-1]) % V):
                return "The order is swapped: previous token minus first token."
            return "Compare position t with (x[:, t-1] - x[:, 0]) % vocab_size."

        _compare(report, f"x {tuple(x.shape)}, V={V}", got, want, hint)
    return report


def check_attention_weights(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check a reader's attention_weights(q, k) = softmax(q k^T / sqrt(d_k)) over keys. Introduced in chapter 3."""
    report = CheckReport("attention_weights")
    rng = generator(3)
    for B, h, T_q, T_k, d_k in [(2, 4, 5, 5, 16), (1, 2, 3, 7, 64), (3, 1, 4, 2, 8)]:
        q = torch.randn(B, h, T_q, d_k, generator=rng)  # (B, h, T_q, d_k)
        k = torch.randn(B, h, T_k, d_k, generator=rng)  # (B, h, T_k, d_k)
        got = _call(report, fn, q, k)
        if not report.ok:
            break
        raw = q @ k.transpose(-2, -1)  # (B, h, T_q, T_k)
        want = (raw / d_k**0.5).softmax(dim=-1)

        def hint(got: torch.Tensor, raw: torch.Tensor = raw, d_k: int = d_k) -> str:
            if torch.allclose(got, raw.softmax(dim=-1)):
                return "The scores are not scaled: divide by sqrt(d_k) before the softmax."
            if torch.allclose(got, (raw / d_k).softmax(dim=-1)):
                return "You divided by d_k; divide by its square root."
            if torch.allclose(got, (raw / d_k**0.5).softmax(dim=-2)):
                return "The softmax runs over the query axis; it must run over the keys (dim=-1)."
            if torch.allclose(got, raw / d_k**0.5):
                return "These are the scaled scores; apply the softmax over the keys."
            return "Compute softmax(q @ k.transpose(-2, -1) / sqrt(d_k), dim=-1)."

        _compare(report, f"q {tuple(q.shape)}, k {tuple(k.shape)}", got, want, hint, atol=1e-6)
    return report


def check_causal_mask(fn: Callable[[int], torch.Tensor]) -> CheckReport:
    """Check a reader's causal_mask(T): (T, T) booleans, True = may attend. Introduced in chapter 3."""
    report = CheckReport("causal_mask")
    for T in (1, 4, 9):
        got = _call(report, fn, T)
        if not report.ok:
            break
        want = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
        if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
            report.fail(f"T={T}: expected a boolean mask, got dtype {got.dtype}; the convention is True = may attend")
            break

        def hint(got: torch.Tensor, want: torch.Tensor = want) -> str:
            if torch.equal(got, ~want) or torch.equal(got, want.T):
                return "This mask lets queries see the future. Query i may see keys 0..i: the lower triangle."
            if torch.equal(got, want.tril(-1)):
                return "The diagonal is False: a token may attend to itself."
            return "Entry [i, j] is True when j <= i."

        _compare(report, f"T={T}", got, want, hint)
    return report


def check_head_term(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's head_term(heads, W_o_weight, i): head i's share of the output, bias excluded.

    heads (B, h, T, d_k) and an nn.Linear weight (d_model, d_model); the answer is
    heads[:, i] @ W_o_weight[:, i*d_k:(i+1)*d_k].T, shape (B, T, d_model). Introduced in chapter 4.
    """
    report = CheckReport("head_term")
    rng = generator(4)
    for B, h, T, d_k in [(2, 4, 5, 8), (1, 3, 2, 4)]:
        heads = torch.randn(B, h, T, d_k, generator=rng)  # (B, h, T, d_k)
        W = torch.randn(h * d_k, h * d_k, generator=rng)  # (out, in), as nn.Linear stores it
        for i in (0, h - 1):
            got = _call(report, fn, heads, W, i)
            if not report.ok:
                return report
            block = slice(i * d_k, (i + 1) * d_k)
            want = heads[:, i] @ W[:, block].T  # (B, T, d_k) @ (d_k, d_model) -> (B, T, d_model)

            def hint(got: torch.Tensor, heads: torch.Tensor = heads, W: torch.Tensor = W, i: int = i) -> str:
                if torch.allclose(got, heads[:, i] @ W[i * d_k : (i + 1) * d_k, :]):
                    return "You took rows of the weight; nn.Linear stores (out, in), so head i meets columns."
                return "Multiply head i by the columns of W_o.weight that read its block, transposed."

            _compare(report, f"heads {tuple(heads.shape)}, head {i}", got, want, hint, atol=1e-5)
    return report


# Probes for check_forward: (name, d_model, num_heads, T, zero queries?, causal mask?)
FORWARD_PROBES = [
    ("one head", 16, 1, 5, False, False),
    ("one token", 16, 4, 1, False, False),
    ("4 heads", 16, 4, 5, False, False),
    ("4 heads, zero queries", 16, 4, 5, True, False),
    ("4 heads, causal mask", 16, 4, 5, False, True),
]


def check_forward(fn: Callable[..., torch.Tensor]) -> CheckReport:
    """Compare a forward(mha, x, mask) with MultiHeadAttention on probes that isolate classic bugs.

    The probes: one head (splitting and merging do nothing), one token (the softmax has one
    key), zero queries (every score is 0, so scaling and the softmax axis cannot matter), and a
    causal mask. The report lists, per probe, whether the output matched. Introduced in chapter 5.
    """
    report = CheckReport("forward")
    rng = generator(5)
    for name, d_model, h, T, zero_queries, causal in FORWARD_PROBES:
        torch.manual_seed(0)
        mha = MultiHeadAttention(d_model, h).eval()
        if zero_queries:
            with torch.no_grad():
                mha.W_q.weight.zero_()
                mha.W_q.bias.zero_()
        x = torch.randn(2, T, d_model, generator=rng)  # (B, T, d_model)
        mask = causal_mask(T) if causal else None
        with torch.no_grad():
            want = mha(x, mask=mask)
            try:
                got = fn(mha, x, mask)
            except Exception as error:  # the reader's code may fail in any way; report it
                report.fail(f"{name}: {type(error).__name__}: {str(error)[:28]}...")
                continue
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            report.fail(f"{name}: expected shape {tuple(want.shape)}, got {getattr(got, 'shape', type(got))}")
        elif torch.allclose(got, want, atol=1e-5):
            report.passed += 1
        elif torch.allclose(got - want, x, atol=1e-5):
            report.fail(f"{name}: output = correct output + x")
        else:
            report.fail(f"{name}: wrong values (largest error {(got - want).abs().max():.3f})")
    return report


def check_previous_token_score(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckReport:
    """Check a reader's previous_token_score(attn): mean weight on key t-1 per head, (h,). Introduced in chapter 6."""
    report = CheckReport("previous_token_score")
    rng = generator(6)
    for B, h, T in [(3, 4, 6), (1, 2, 3)]:
        attn = torch.rand(B, h, T, T, generator=rng).tril().softmax(dim=-1)  # (B, h, T, T)
        got = _call(report, fn, attn)
        if not report.ok:
            break
        t = torch.arange(1, T)
        want = attn[:, :, t, t - 1].mean(dim=(0, 2))  # (h,)

        def hint(got: torch.Tensor, attn: torch.Tensor = attn, t: torch.Tensor = t) -> str:
            if torch.allclose(got, attn[:, :, t - 1, t].mean(dim=(0, 2))):
                return "You read above the diagonal: query t, key t-1 is attn[..., t, t-1]."
            return "Average attn[b, i, t, t-1] over b and t >= 1, separately for each head i."

        _compare(report, f"attn {tuple(attn.shape)}", got, want, hint, atol=1e-6)
    return report


def check_favourite_keys(fn: Callable[[torch.Tensor, torch.Tensor], int]) -> CheckReport:
    """Check a reader's count_favourite_keys(q, k): distinct arg-max keys over queries. Introduced in chapter 7."""
    report = CheckReport("count_favourite_keys")
    rng = generator(7)
    for T_q, T_k, d_k in [(16, 16, 1), (8, 12, 4), (5, 3, 2)]:
        q, k = torch.randn(T_q, d_k, generator=rng), torch.randn(T_k, d_k, generator=rng)
        got = _call(report, fn, q, k)
        if not report.ok:
            break
        scores = q @ k.T  # (T_q, T_k)
        want = len(scores.argmax(dim=-1).unique())
        if got == want:
            report.passed += 1
        elif got == len(scores.argmax(dim=0).unique()):
            report.fail(f"q {tuple(q.shape)}, k {tuple(k.shape)}: you took each key's favourite query; "
                        "take the arg-max over keys (dim=-1)")
        else:
            report.fail(f"q {tuple(q.shape)}, k {tuple(k.shape)}: expected {want}, got {got}")
    return report


def check_key_padding_mask(fn: Callable[[list[int], int], torch.Tensor]) -> CheckReport:
    """Check a reader's key_padding_mask_from_lengths(lengths, T): (B, T), True = padding. Introduced in chapter 8."""
    report = CheckReport("key_padding_mask_from_lengths")
    for lengths, T in [([3, 1, 4], 4), ([2], 5), ([0, 6], 6)]:
        got = _call(report, fn, lengths, T)
        if not report.ok:
            break
        want = to_torch_key_padding_mask(padding_mask(lengths, T))  # (B, T)
        if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
            report.fail(f"lengths {lengths}: expected booleans, got dtype {got.dtype}")
            break

        def hint(got: torch.Tensor, want: torch.Tensor = want) -> str:
            if torch.equal(got, ~want):
                return "True marks padding in nn.MultiheadAttention: your mask is inverted."
            return "Position t of sequence b is padding when t >= lengths[b]."

        _compare(report, f"lengths {lengths}, T={T}", got, want, hint)
    return report


def check_repeat_kv(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckReport:
    """Check a reader's repeat_kv(x, num_heads): (B, h_kv, T, d_k) -> (B, h, T, d_k), grouped. Introduced in chapter 9."""
    report = CheckReport("repeat_kv")
    rng = generator(9)
    for B, h_kv, h, T, d_k in [(2, 2, 8, 3, 4), (1, 1, 4, 2, 2), (1, 3, 6, 1, 2)]:
        x = torch.randn(B, h_kv, T, d_k, generator=rng)  # (B, h_kv, T, d_k)
        got = _call(report, fn, x, h)
        if not report.ok:
            break
        want = x.repeat_interleave(h // h_kv, dim=1)  # (B, h, T, d_k)

        def hint(got: torch.Tensor, x: torch.Tensor = x, h: int = h, h_kv: int = h_kv) -> str:
            if torch.equal(got, x.repeat(1, h // h_kv, 1, 1)):
                return "That tiles the KV heads (0, 1, 0, 1, ...); query heads come in groups (0, 0, 1, 1, ...)."
            return "Query head i reads KV head i // (h / h_kv): use repeat_interleave on dim 1."

        _compare(report, f"x {tuple(x.shape)}, h={h}", got, want, hint)
    return report
