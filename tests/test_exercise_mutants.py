"""Mutation tests for the exercise checkers: wrong answers of the kinds learners write must be
rejected with the hint written for them, and correct answers written differently must pass.

Each checker has at least six wrong answers (each with the words its report must contain) and at
least four correct ones. A new checker gets its mutants here in the same commit.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from multihead import MultiHeadAttention, bugs, exercises, merge_heads, sliding_window_mask, split_heads
from multihead.data import IGNORE


def _sdpa_weights(q, k):
    """The weights F.scaled_dot_product_attention would use, recovered with an identity value."""
    eye = torch.eye(k.shape[-2]).expand(*k.shape[:-2], -1, -1)  # (..., T_k, T_k)
    return F.scaled_dot_product_attention(q, k, eye)


def _merge_by_loop(x):
    return torch.cat([x[:, i] for i in range(x.shape[1])], dim=-1)  # h x (B, T, d_k) -> (B, T, d_model)


def _targets(x, V):
    y = torch.full_like(x, IGNORE)
    y[:, 1:] = (x[:, :-1] - x[:, :1]) % V
    return y


def _targets_loop(x, V):
    rows = [[IGNORE] + [int((row[t - 1] - row[0]) % V) for t in range(1, len(row))] for row in x.tolist()]
    return torch.tensor(rows)


def _cls_loop(weights, lengths):
    L, B, h = weights.shape[:3]
    out = torch.zeros(L, h)
    for b in range(B):
        out += weights[:, b, :, : lengths[b], 0].sum(dim=-1)
    return out / lengths.sum()


def _kpm_loop(lengths, T):
    return torch.tensor([[t >= n for t in range(T)] for n in lengths])


def _dirty_split(x, h):
    x.add_(1)
    return x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2)


def _scaled_in_place(q, k):
    q /= math.sqrt(q.shape[-1])
    return (q @ k.transpose(-2, -1)).softmax(dim=-1)


def _transposed_in_place(q, k):
    return (q @ k.transpose_(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)


def _overwrite_tokens(x, V):
    x[:, 1:] = (x[:, :-1] - x[:, :1]) % V
    x[:, 0] = IGNORE
    return x


def _sort_lengths(lengths, T):
    lengths.sort()
    return torch.arange(T)[None] >= torch.tensor(lengths)[:, None]


def _raises_in_body(x, h):
    B, T, d = x.shape
    return x.view(B, T, h, d // (h - h))  # ZeroDivisionError, reported with this line


CASES = {
    "check_split_heads": (
        [  # wrong
            (lambda x, h: x.view(x.shape[0], h, x.shape[1], -1), "without the transpose"),
            (lambda x, h: x.view(x.shape[0], x.shape[1], h, -1), "expected shape"),
            (lambda x, h: x.view(x.shape[0], x.shape[1], -1, h).permute(0, 3, 1, 2), "Check which axis"),
            (lambda x, h: x.double().view(x.shape[0], x.shape[1], h, -1).transpose(1, 2), "expected dtype torch.float32"),
            (_dirty_split, "changed its input x"),
            (lambda x, h: x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2).tolist(), "expected a tensor"),
            (_raises_in_body, "ZeroDivisionError"),
            (lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] / h).transpose(1, 2), "use //, as in d_model // num_heads"),
        ],
        [  # correct
            lambda x, h: x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2),
            lambda x, h: x.reshape(*x.shape[:2], h, -1).permute(0, 2, 1, 3),
            lambda x, h: torch.stack(x.chunk(h, dim=-1), dim=1),
            lambda x, h: torch.einsum("bthd->bhtd", x.unflatten(-1, (h, -1))),
        ],
    ),
    "check_merge_heads": (
        [
            (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "without transposing back"),
            (lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), "call .contiguous() first"),
            (lambda x: x.transpose_(1, 2).reshape(x.shape[0], x.shape[1], -1), "changed its input x"),
            (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "Transpose back"),
            (lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1).half(), "expected dtype"),
            (lambda x: x.transpose(1, 2), "expected shape"),
            (lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1) * 1.0001, "values differ"),
        ],
        [
            lambda x: x.transpose(1, 2).contiguous().view(x.shape[0], x.shape[2], -1),
            lambda x: x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1),
            lambda x: x.permute(0, 2, 1, 3).flatten(2),
            _merge_by_loop,
            lambda x: torch.einsum("bhtd->bthd", x).flatten(-2),
        ],
    ),
    "check_head_rows": (
        [
            (lambda W, h, i: W[:, i * (W.shape[0] // h) : (i + 1) * (W.shape[0] // h)].T, "You took columns"),
            (lambda W, h, i: W[i * (W.shape[0] // h) : (i + 1) * (W.shape[0] // h) + 1], "expected shape"),
            (lambda W, h, i: W.view(h, -1, W.shape[1])[0], "Head 1 owns"),  # right for head 0 only
            (lambda W, h, i: W.view(h, -1, W.shape[1])[min(i, 1)], "owns output features"),  # right for heads 0 and 1
            (lambda W, h, i: W.view(-1, h, W.shape[1])[:, i], "owns output features"),  # interleaved rows
            (lambda W, h, i: W.view(h, -1, W.shape[1])[i].double(), "expected dtype"),
            (lambda W, h, i: W[i::h], "owns output features"),
        ],
        [
            lambda W, h, i: W.view(h, -1, W.shape[1])[i],
            lambda W, h, i: W[i * (W.shape[0] // h) : (i + 1) * (W.shape[0] // h)],
            lambda W, h, i: W.chunk(h, dim=0)[i],
            lambda W, h, i: W.split(W.shape[0] // h)[i].clone(),
        ],
    ),
    "check_task_targets": (
        [
            (lambda x, V: torch.cat([torch.full_like(x[:, :1], 0), (x[:, :-1] - x[:, :1]) % V], 1), "Position 0 has no answer"),
            (lambda x, V: torch.cat([torch.full_like(x[:, :1], IGNORE), (x[:, :-1] + x[:, :1]) % V], 1), "You added"),
            (lambda x, V: torch.cat([torch.full_like(x[:, :1], IGNORE), (x[:, :1] - x[:, :-1]) % V], 1), "order is swapped"),
            (lambda x, V: torch.cat([torch.full_like(x[:, :1], IGNORE), x[:, :-1] - x[:, :1]], 1), "modulo vocab_size"),
            (lambda x, V: torch.cat([torch.full_like(x[:, :1], IGNORE), (x[:, 1:] - x[:, :1]) % V], 1), "You used token t"),
            (lambda x, V: _targets(x, V).float(), "expected dtype torch.int64"),
            (_overwrite_tokens, "changed its input x"),
        ],
        [
            _targets,
            _targets_loop,
            lambda x, V: F.pad((x[:, :-1] - x[:, :1]).remainder(V), (1, 0), value=IGNORE),
            lambda x, V: torch.where(torch.arange(x.shape[1]) == 0, IGNORE, (x.roll(1, dims=1) - x[:, :1]) % V),
        ],
    ),
    "check_attention_weights": (
        [
            (lambda q, k: (q @ k.transpose(-2, -1)).softmax(-1), "not scaled"),
            (lambda q, k: (q @ k.transpose(-2, -1) / q.shape[-1]).softmax(-1), "divided by d_k"),
            (lambda q, k: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-2), "query axis"),
            (lambda q, k: q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), "apply the softmax"),
            (_scaled_in_place, "changed its input q"),
            (_transposed_in_place, "changed its input k"),
            (lambda q, k: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).double().softmax(-1), "expected dtype"),
            (lambda q, k: (q @ k.transpose(-2, -1) / math.sqrt(64)).softmax(-1), "Compute softmax"),
        ],
        [
            lambda q, k: (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1),
            lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k).div(q.shape[-1] ** 0.5).softmax(-1),
            lambda q, k: F.softmax(q @ k.mT * q.shape[-1] ** -0.5, dim=-1),
            _sdpa_weights,
        ],
    ),
    "check_causal_mask": (
        [
            (lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1), "The diagonal is False"),
            (lambda T: torch.ones(T, T, dtype=torch.bool).triu(), "see the future"),
            (lambda T: torch.ones(T, T, dtype=torch.bool).triu(1), "True marks the blocked keys"),
            (lambda T: torch.ones(T, T).tril(), "expected a boolean mask"),
            (lambda T: torch.ones(T, T, dtype=torch.bool).tril(1), "j <= i"),
            (lambda T: torch.ones(T, T + 1, dtype=torch.bool).tril(), "expected shape"),
            (lambda T: torch.ones(T, T, dtype=torch.bool), "j <= i"),
        ],
        [
            lambda T: torch.ones(T, T, dtype=torch.bool).tril(),
            lambda T: torch.arange(T)[None, :] <= torch.arange(T)[:, None],
            lambda T: ~torch.ones(T, T, dtype=torch.bool).triu(1),
            lambda T: torch.tril(torch.ones(T, T)).bool(),
        ],
    ),
    "check_head_term": (
        [
            (lambda heads, W, i: heads[:, i] @ W[i * heads.shape[-1] : (i + 1) * heads.shape[-1], :], "You took rows"),
            (lambda heads, W, i: heads[:, 0] @ W[:, : heads.shape[-1]].T, "columns of W_o.weight"),  # head 0 only
            (lambda heads, W, i: heads[:, i] @ W[:, i * heads.shape[-1] : (i + 1) * heads.shape[-1]], "columns of W_o.weight"),
            (lambda heads, W, i: heads[:, i], "expected shape"),
            (lambda heads, W, i: (heads[:, i] @ W[:, i * heads.shape[-1] : (i + 1) * heads.shape[-1]].T).double(), "expected dtype"),
            (lambda heads, W, i: heads[:, i] @ W[:, i :: heads.shape[1]].T, "columns of W_o.weight"),
            (lambda heads, W, i: heads.transpose(1, 2).flatten(2) @ W.T, "columns of W_o.weight"),  # the whole output
        ],
        [
            lambda heads, W, i: heads[:, i] @ W[:, i * heads.shape[-1] : (i + 1) * heads.shape[-1]].T,
            lambda heads, W, i: F.linear(heads[:, i], W.view(W.shape[0], heads.shape[1], -1)[:, i]),
            lambda heads, W, i: torch.einsum("btd,od->bto", heads[:, i], W.chunk(heads.shape[1], dim=1)[i]),
            lambda heads, W, i: (F.pad(heads[:, i], (i * heads.shape[-1], (heads.shape[1] - 1 - i) * heads.shape[-1])) @ W.T),
        ],
    ),
    "check_previous_token_score": (
        [
            (lambda a: a.diagonal(offset=1, dim1=-2, dim2=-1).mean(dim=(0, 2)), "above the diagonal"),
            (lambda a: a.diagonal(offset=-1, dim1=-2, dim2=-1).sum(dim=(0, 2)) / a.shape[0] / a.shape[-1], "divided by T"),
            (lambda a: a.diagonal(dim1=-2, dim2=-1)[..., 1:].mean(dim=(0, 2)), "own position"),
            (lambda a: a.diagonal(offset=-1, dim1=-2, dim2=-1).mean(), "expected shape"),
            (lambda a: a.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=0), "expected shape"),
            (lambda a: a.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2)).tolist(), "expected a tensor"),
            (lambda a: a.diagonal(offset=-1, dim1=-2, dim2=-1).sum(dim=(0, 2)), "Average attn"),
        ],
        [
            lambda a: a.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2)),
            lambda a: torch.stack([a[:, :, t, t - 1] for t in range(1, a.shape[-1])], -1).mean(dim=(0, 2)),
            lambda a: a.double().diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2)),  # float64 is as right
            lambda a: torch.einsum("bhtt->bht", a[..., 1:, :-1]).mean(dim=(0, 2)),
        ],
    ),
    "check_cls_share": (
        [
            (lambda w, n: w[..., 0].mean(dim=(1, 3)), "padded queries too"),
            (lambda w, n: w[..., 0, :].mul(torch.arange(w.shape[-1]) < n[:, None, None]).sum(dim=(1, 3)) / n.sum(), "column 0"),
            (lambda w, n: (w[..., 0] * (torch.arange(w.shape[-1]) < n[:, None])[:, None]).sum(3).div(n[:, None]).mean(1), "each sequence first"),
            (lambda w, n: w[..., 0].mean(dim=3), "expected shape"),
            (lambda w, n: w[..., 1].mul(torch.arange(w.shape[-1]) < n[:, None, None]).sum(dim=(1, 3)) / n.sum(), "Sum weights"),
            (lambda w, n: w[..., 0].sum(dim=(1, 3)) / n.sum(), "Sum weights"),
            (lambda w, n: n.sort().values, "expected shape"),
        ],
        [
            _cls_loop,
            lambda w, n: w[..., 0].mul((torch.arange(w.shape[-1]) < n[:, None])[:, None]).sum(dim=(1, 3)) / n.sum(),
            lambda w, n: torch.einsum("lbht,bt->lh", w[..., 0], (torch.arange(w.shape[-1]) < n[:, None]).float()) / n.sum(),
            lambda w, n: _cls_loop(w.double(), n),  # float64 is as right
        ],
    ),
    "check_favourite_keys": (
        [
            (lambda q, k: (q @ k.T).argmax(dim=-1).unique(), "tensor of shape"),
            (lambda q, k: len((q @ k.T).argmax(dim=0).unique()), "each key's favourite query"),
            (lambda q, k: len((q @ k.T).argmax(dim=-1)), "the number of queries"),
            (lambda q, k: float(len((q @ k.T).argmax(dim=-1).unique())), "expected a whole number, got float"),
            (lambda q, k: (q @ k.T).argmax(dim=-1).unique().numel() > 1, "expected a number, got True"),
            (lambda q, k: torch.tensor(1.0) * len((q @ k.T).argmax(-1).unique()), "whole number"),
            (lambda q, k: len((q @ k.T).argmin(dim=-1).unique()) + 100, "expected"),
        ],
        [
            lambda q, k: len((q @ k.T).argmax(dim=-1).unique()),
            lambda q, k: (q @ k.T).argmax(dim=-1).unique().numel(),
            lambda q, k: len(set((q @ k.T).argmax(dim=-1).tolist())),
            lambda q, k: torch.unique((q @ k.T).argmax(-1)).shape[0],
            lambda q, k: (q @ k.T).argmax(-1).unique().numel() * torch.tensor(1),  # a 0-d integer tensor
            lambda q, k: np.sum(np.bincount((q @ k.T).argmax(-1).numpy()) > 0),  # a NumPy integer
        ],
    ),
    "check_key_padding_mask": (
        [
            (lambda n, T: torch.arange(T)[None] < torch.tensor(n)[:, None], "inverted"),
            (lambda n, T: (torch.arange(T)[None] >= torch.tensor(n)[:, None]).flip(-1), "start of each row"),
            (lambda n, T: (torch.arange(T)[None] >= torch.tensor(n)[:, None]).int(), "expected booleans"),
            (lambda n, T: torch.arange(T)[None] > torch.tensor(n)[:, None], "t >= lengths[b]"),
            (_sort_lengths, "changed its input lengths"),
            (lambda n, T: torch.arange(T + 1)[None] >= torch.tensor(n)[:, None], "expected shape"),
            (lambda n, T: torch.arange(T)[:, None] >= torch.tensor(n)[None], "expected shape"),
        ],
        [
            lambda n, T: torch.arange(T)[None] >= torch.tensor(n)[:, None],
            _kpm_loop,
            lambda n, T: ~(torch.arange(T).expand(len(n), T) < torch.tensor(n).unsqueeze(1)),
            lambda n, T: torch.stack([F.pad(torch.zeros(m, dtype=torch.bool), (0, T - m), value=True) for m in n]),
        ],
    ),
    "check_repeat_kv": (
        [
            (lambda x, h: x.repeat(1, h // x.shape[1], 1, 1), "tiles the KV heads"),
            (lambda x, h: x.repeat_interleave(h // x.shape[1], dim=2), "expected shape"),
            (lambda x, h: x.expand(-1, h, -1, -1), "calling it raised"),
            (lambda x, h: x[:, :1].expand(-1, h, -1, -1), "repeat_interleave on dim 1"),
            (lambda x, h: x.repeat_interleave(h // x.shape[1], dim=1).double(), "expected dtype"),
            (lambda x, h: x.repeat_interleave(h // x.shape[1], dim=1).flip(1), "repeat_interleave on dim 1"),
            (lambda x, h: x, "expected shape"),
        ],
        [
            lambda x, h: x.repeat_interleave(h // x.shape[1], dim=1),
            lambda x, h: x[:, :, None].expand(-1, -1, h // x.shape[1], -1, -1).flatten(1, 2),
            lambda x, h: torch.cat([x[:, [j]].expand(-1, h // x.shape[1], -1, -1) for j in range(x.shape[1])], 1),
            lambda x, h: x[:, torch.arange(h) // (h // x.shape[1])],
        ],
    ),
}

def _forward_sdpa(mha, x, mask=None):
    q, k, v = (split_heads(W(x), mha.num_heads) for W in (mha.W_q, mha.W_k, mha.W_v))  # (B, h, T, d_k)
    return mha.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


def _forward_einsum(mha, x, mask=None):
    q, k, v = (W(x).unflatten(-1, (mha.num_heads, -1)) for W in (mha.W_q, mha.W_k, mha.W_v))  # (B, T, h, d_k)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])  # (B, h, T, T)
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)  # a large negative number instead of -inf
    out = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v)  # (B, T, h, d_k)
    return mha.W_o(out.flatten(2))


def _forward_loop(mha, x, mask=None):
    d_k = mha.head_dim
    heads = []
    for i in range(mha.num_heads):  # one head at a time, from its own rows of the weights
        rows = slice(i * d_k, (i + 1) * d_k)
        q, k, v = (F.linear(x, W.weight[rows], W.bias[rows]) for W in (mha.W_q, mha.W_k, mha.W_v))
        scores = q @ k.mT / math.sqrt(d_k)  # (B, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask.squeeze(1), float("-inf"))
        heads.append(scores.softmax(-1) @ v)  # (B, T, d_k)
    return mha.W_o(torch.cat(heads, dim=-1))


def _forward_scales_x(mha, x, mask=None):
    x *= 2  # changes the caller's tensor
    return mha(x / 2, mask=mask)


def _forward_zeroes_bias(mha, x, mask=None):
    with torch.no_grad():
        mha.W_o.bias.zero_()  # changes the caller's module
    return mha(x, mask=mask)


def _forward_own_triangle(mha, x, mask=None):
    if mask is not None:  # any mask is taken to be causal
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
    return mha(x, mask=mask)


def _forward_masks_queries(mha, x, mask=None):
    q, k, v = (split_heads(W(x), mha.num_heads) for W in (mha.W_q, mha.W_k, mha.W_v))  # (B, h, T, d_k)
    scores = q @ k.mT / math.sqrt(q.shape[-1])  # (B, h, T, T)
    if mask is not None and mask.dim() == 4:  # a padding mask (B, 1, 1, T) turned along the queries
        mask = mask.transpose(-2, -1)  # (B, 1, T, 1)
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)
    return mha.W_o(merge_heads(scores.softmax(-1) @ v))


def _forward_first_mask_only(mha, x, mask=None):
    return mha(x, mask=None if mask is None else mask[:1])  # sequence 0's mask for every sequence


def _forward_four_heads(mha, x, mask=None):
    q, k, v = (split_heads(W(x), 4) for W in (mha.W_q, mha.W_k, mha.W_v))  # h hard-coded
    return mha.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


def _forward_additive_mask(mha, x, mask=None):
    bias = None if mask is None else torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    q, k, v = (split_heads(W(x), mha.num_heads) for W in (mha.W_q, mha.W_k, mha.W_v))  # (B, h, T, d_k)
    return mha.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=bias)))


def _forward_raises(mha, x, mask=None):
    d_k = mha.head_dim
    scale = 1 / (d_k - d_k)  # ZeroDivisionError, reported with this line
    return mha.W_o(merge_heads(split_heads(mha.W_v(x), mha.num_heads) * scale))


def _forward_true_division(mha, x, mask=None):
    B, T, d_model = x.shape
    d_k = d_model / mha.num_heads  # a float
    q, k, v = (W(x).view(B, T, mha.num_heads, d_k).transpose(1, 2) for W in (mha.W_q, mha.W_k, mha.W_v))
    return mha.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


def _forward_scale_when_masked(mha, x, mask=None):
    q, k, v = (split_heads(W(x), mha.num_heads) for W in (mha.W_q, mha.W_k, mha.W_v))  # (B, h, T, d_k)
    if mask is None:
        return mha.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v)))
    scores = q @ k.mT / math.sqrt(mha.d_model)  # bug 3, on the masked path only
    return mha.W_o(merge_heads(scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v))


def _forward_mask_for_one_sequence(mha, x, mask=None):
    if mask is not None and mask.dim() == 2:
        mask = mask.view(x.shape[0], 1, *mask.shape)  # right for one sequence only
    return mha(x, mask=mask)


def _forward_width_four(mha, x, mask=None):
    B, T, _ = x.shape
    q, k, v = (W(x).view(B, T, -1, 4).transpose(1, 2) for W in (mha.W_q, mha.W_k, mha.W_v))  # d_k hard-coded
    return mha.W_o(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


FORWARD_WRONG = [(bug.forward, "") for bug in bugs.ALL] + [
    (_forward_true_division, "Hint: sizes must be whole numbers"),
    (lambda mha, x, mask: mha(x, mask=mask).double(), "expected dtype torch.float32, like x"),
    (_forward_scale_when_masked, "with masks: differs from MultiHeadAttention with h=3, d_k=8 and a causal mask"),
    (_forward_mask_for_one_sequence, "with masks: raised RuntimeError"),
    (_forward_width_four, "with masks: differs from MultiHeadAttention with h=3, d_k=8"),
    (_forward_raises, "raised ZeroDivisionError: division by zero\n    at line"),
    (_forward_scales_x, "changed its input x"),
    (_forward_zeroes_bias, "changed its input mha.W_o.bias"),
    (_forward_own_triangle, "query 0 of sequence 1 reads a token it may not see (padding mask)"),
    (_forward_masks_queries, "query 0 of sequence 0 reads a token it may not see (padding mask)"),
    (_forward_first_mask_only, "query 0 of sequence 1 reads a token it may not see (padding mask)"),
    (_forward_four_heads, "differs from MultiHeadAttention with h=3"),
]
FORWARD_RIGHT = [
    lambda mha, x, mask: mha(x, mask=mask),
    bugs.reference_forward,
    _forward_sdpa,
    _forward_einsum,
    _forward_loop,
    _forward_additive_mask,
]
CASES["check_forward"] = (FORWARD_WRONG, FORWARD_RIGHT)

class _Sublayer(torch.nn.Module):  # chapter 9's pre-norm sublayer
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d_model)
        self.attention = MultiHeadAttention(d_model, num_heads)

    def forward(self, x, context=None, mask=None):
        return x + self.attention(self.norm(x), context=context, mask=mask)


def _post_norm(body):
    """A _Sublayer whose forward is body(self, x, context, mask)."""
    return type("PostNorm", (_Sublayer,), {"forward": lambda self, x, context=None, mask=None: body(self, x, context, mask)})


def _layer_norm_by_hand(self, s):
    mean, var = s.mean(-1, keepdim=True), s.var(-1, keepdim=True, unbiased=False)
    return (s - mean) / torch.sqrt(var + self.norm.eps) * self.norm.weight + self.norm.bias


def _residual_in_place(self, x, context, mask):
    x += self.attention(x, context=context, mask=mask)
    return self.norm(x)


class _NoParts(torch.nn.Module):
    def __init__(self, d_model, num_heads):
        super().__init__()
        self.mha = MultiHeadAttention(d_model, num_heads)

    def forward(self, x, context=None, mask=None):
        return self.mha(x, context=context, mask=mask)


class _TorchAttention(_Sublayer):
    def __init__(self, d_model, num_heads):
        super().__init__(d_model, num_heads)
        self.attention = torch.nn.MultiheadAttention(d_model, num_heads, batch_first=True)


def _resets_norm(self, x, context, mask):
    with torch.no_grad():
        self.norm.weight.fill_(1.0)
    return self.norm(x + self.attention(x, context=context, mask=mask))


class _NoBiasPostNorm(_Sublayer):  # a LayerNorm without a bias is as right
    def __init__(self, d_model, num_heads):
        super().__init__(d_model, num_heads)
        self.norm = torch.nn.LayerNorm(d_model, bias=False)

    def forward(self, x, context=None, mask=None):
        return self.norm(x + self.attention(x, context=context, mask=mask))


CASES["check_post_norm"] = (
    [
        (_Sublayer, "pre-norm order"),
        (_post_norm(lambda self, x, c, m: self.norm(self.attention(x, context=c, mask=m))), "residual is missing"),
        (_post_norm(lambda self, x, c, m: x + self.norm(self.attention(x, context=c, mask=m))), "output alone"),
        (_post_norm(lambda self, x, c, m: F.layer_norm(x + self.attention(x, context=c, mask=m), x.shape[-1:])), "fresh LayerNorm"),
        (_post_norm(lambda self, x, c, m: self.norm(x + self.attention(x, context=c))), "pass mask=mask on"),
        (_post_norm(lambda self, x, c, m: self.norm(x + self.attention(self.norm(x), context=c, mask=m))), "reads x itself"),
        (_post_norm(lambda self, x, c, m: self.norm(x + self.attention(x, mask=m))), "raised ValueError: mask of shape (2, 1, 1, 9)"),  # context dropped
        (_post_norm(_residual_in_place), "changed its input x"),
        (_post_norm(lambda self, x, c, m: self.norm(x + self.attention(x, context=c, mask=m)).double()), "expected dtype"),
        (_NoParts, "self.norm, a LayerNorm, and self.attention"),
        (_TorchAttention, "a multihead.MultiHeadAttention"),
        (_Sublayer(12, 3), "pass the class itself"),
        (_post_norm(_resets_norm), "changed the layer's own self.norm.weight"),
    ],
    [
        _post_norm(lambda self, x, c, m: self.norm(x + self.attention(x, context=c, mask=m))),
        _post_norm(lambda self, x, c, m: self.norm(self.attention(x, c, m) + x)),
        _post_norm(lambda self, x, c, m: F.layer_norm(
            x + self.attention(x, context=c, mask=m), self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps
        )),
        _post_norm(lambda self, x, c, m: _layer_norm_by_hand(self, torch.add(x, self.attention(x, context=c, mask=m)))),
        _NoBiasPostNorm,
    ],
)

def _reach_by_masks(window, layers):
    T = layers * window + 1
    mask = sliding_window_mask(T, window=window).float()  # (T, T)
    reach = mask
    for _ in range(layers - 1):
        reach = (reach @ mask).clamp(max=1)  # one more layer
    return T - 1 - int(reach[-1].nonzero().min())


def _reach_by_loop(window, layers):
    back = 0
    for _ in range(layers):
        back += window - 1
    return back


CASES["check_window_reach"] = (
    [
        (lambda W, L: L * W, "reaches W - 1 back, not W"),
        (lambda W, L: L * (W - 1) + 1, "counts the last token itself"),
        (lambda W, L: W - 1, "one layer's reach"),
        (lambda W, L: (W - 1) ** L, "expected 8, got 16"),
        (lambda W, L: float(L * (W - 1)), "expected a whole number, got float 8.0"),
        (lambda W, L: torch.tensor([L * (W - 1)] * 2), "tensor of shape (2,)"),
        (lambda W, L: W + L - 2, "expected 8, got 5"),
        (lambda W, L: L * (W - 1) if W > 1 else 1, "window=1, layers=3: expected 0, got 1"),
    ],
    [
        lambda W, L: L * (W - 1),
        _reach_by_masks,
        _reach_by_loop,
        lambda W, L: torch.tensor(W - 1) * L,  # a 0-d integer tensor
        lambda W, L: np.sum([W - 1] * L),  # a NumPy integer
    ],
)

WRONG = [(name, fn, words) for name, (wrong, _) in CASES.items() for fn, words in wrong]
RIGHT = [(name, fn) for name, (_, right) in CASES.items() for fn in right]


def test_every_checker_has_its_mutants() -> None:
    checkers = {n for n in dir(exercises) if n.startswith("check_")}
    assert checkers == set(CASES)
    for name, (wrong, right) in CASES.items():
        assert len(wrong) >= 6 and len(right) >= 4, name


@pytest.mark.parametrize(("name", "fn", "words"), WRONG, ids=[f"{n}-wrong-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_wrong_answer_is_rejected_with_its_hint(name: str, fn, words: str) -> None:
    report = getattr(exercises, name)(fn)
    assert not report.ok, f"{name} accepted a wrong answer"
    assert words in repr(report), repr(report)


@pytest.mark.parametrize(("name", "fn"), RIGHT, ids=[f"{n}-right-{i}" for i, (n, _) in enumerate(RIGHT)])
def test_correct_answer_is_accepted(name: str, fn) -> None:
    report = getattr(exercises, name)(fn)
    assert report.ok, repr(report)


def test_a_raising_answer_is_explained_with_its_line() -> None:
    text = repr(exercises.check_split_heads(_raises_in_body))
    assert "calling it raised ZeroDivisionError: integer division or modulo by zero at line" in text
    assert "d // (h - h)" in text


@pytest.mark.parametrize("name", sorted(CASES))
def test_checkers_leave_the_readers_random_state_alone(name: str) -> None:
    def draw_and_fail(*args):
        torch.rand(3)  # the reader's function may draw numbers itself
        raise ValueError("no")

    torch.manual_seed(123)
    state = torch.get_rng_state()
    getattr(exercises, name)(draw_and_fail)
    assert torch.equal(torch.get_rng_state(), state)
