"""The multi-head attention modules and their conversions (chapters 2 and 5).

`MultiHeadAttention` is the fused module: one (d_model x d_model) projection each for Q, K
and V, cut into heads. `PerHeadAttention` is the same computation written as h small heads,
each with its own (d_model x d_k) projections. `to_per_head`/`from_per_head` and
`to_torch`/`from_torch` copy weights exactly between the three forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import scaled_dot_product_attention
from .heads import head_dim, is_positive_int, merge_heads, split_heads
from .masks import check_mask, guard_empty_rows


def _check_inputs(
    x: torch.Tensor,
    context: torch.Tensor | None,
    mask: torch.Tensor | None,
    d_model: int,
    num_heads: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate x (B, T_q, d_model), context (B, T_k, d_model) and mask; return (context, mask (B, h, T_q, T_k))."""
    context = x if context is None else context
    for name, t in (("x", x), ("context", context)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (B, T, d_model={d_model}), got {type(t).__name__}")
        if t.dtype != dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but the module's weights are {dtype}: convert one of them")
        if t.dim() != 3 or t.shape[-1] != d_model:
            raise ValueError(f"{name} must have shape (B, T, d_model={d_model}), got {tuple(t.shape)}")
    if context.shape[0] != x.shape[0]:
        raise ValueError(f"x and context need the same batch size, got {x.shape[0]} and {context.shape[0]}")
    if mask is not None:
        shape = (x.shape[0], num_heads, x.shape[1], context.shape[1])  # (B, h, T_q, T_k)
        mask = check_mask(mask, shape).expand(shape)
    return context, mask


def _check_dropout(dropout: float) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r} must be a number in [0, 1)")


class MultiHeadAttention(nn.Module):
    """Multi-head attention with fused projections W_q, W_k, W_v, W_o. Introduced in chapter 5.

    `num_kv_heads` (chapter 10) gives keys and values fewer heads than queries, each shared by a
    group of num_heads / num_kv_heads query heads: 1 is multi-query attention, num_heads (the
    default) is classic multi-head attention, anything between is grouped-query attention.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        *,
        bias: bool = True,
        dropout: float = 0.0,
        num_kv_heads: int | None = None,
    ) -> None:
        super().__init__()
        self.head_dim = head_dim(d_model, num_heads)
        _check_dropout(dropout)
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if not (is_positive_int(num_kv_heads) and num_heads % num_kv_heads == 0):
            raise ValueError(f"num_kv_heads={num_kv_heads!r} must be a positive divisor of num_heads={num_heads}")
        self.d_model, self.num_heads, self.num_kv_heads, self.dropout = d_model, num_heads, num_kv_heads, dropout
        kv_width = num_kv_heads * self.head_dim
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, kv_width, bias=bias)
        self.W_v = nn.Linear(d_model, kv_width, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_attention: bool = False,
        head_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x (B, T_q, d_model), context (B, T_k, d_model) or None for self-attention -> (B, T_q, d_model).

        `head_mask` (h,) scales each head's output before the merge: 0 switches a head off
        (chapter 6's ablations).
        """
        context, mask = _check_inputs(x, context, mask, self.d_model, self.num_heads, self.W_q.weight.dtype)
        if head_mask is not None and head_mask.shape != (self.num_heads,):
            raise ValueError(f"head_mask must have shape (num_heads={self.num_heads},), got {tuple(head_mask.shape)}")
        dropout = self.dropout if self.training else 0.0
        # 1) project
        q, k, v = self.W_q(x), self.W_k(context), self.W_v(context)  # (B, T_q, d_model), (B, T_k, d_model) x 2
        # 2) split heads
        q = split_heads(q, self.num_heads)  # (B, h, T_q, d_k)
        k, v = (split_heads(t, self.num_kv_heads) for t in (k, v))  # (B, h_kv, T_k, d_k)
        # 3) attend: explicit when the weights are wanted, else PyTorch's fused kernel
        if return_attention:
            k, v = (repeat_kv(t, self.num_heads) for t in (k, v))  # (B, h, T_k, d_k)
            heads, attn = scaled_dot_product_attention(q, k, v, mask, dropout=dropout)  # (B, h, T_q, d_k)
        else:
            heads = _fused_attention(q, k, v, mask, dropout)  # (B, h, T_q, d_k)
        if head_mask is not None:
            heads = heads * head_mask[:, None, None]  # (B, h, T_q, d_k) * (h, 1, 1)
        # 4) merge heads
        out = merge_heads(heads)  # (B, T_q, d_model)
        # 5) mix with W_o
        out = self.W_o(out)  # (B, T_q, d_model)
        return (out, attn) if return_attention else out


def repeat_kv(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, h_kv, T, d_k) -> (B, h, T, d_k): each key/value head serves a group of consecutive query heads.

    Query head i reads key/value head i // (h / h_kv), as in grouped-query attention. Introduced in chapter 10.
    """
    return x.repeat_interleave(num_heads // x.shape[1], dim=1)  # (B, h, T, d_k)


def _fused_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float
) -> torch.Tensor:
    """F.scaled_dot_product_attention with the package's rule for fully masked rows (zero output).

    Key/value heads fewer than query heads are shared by groups (enable_gqa), without copying them.
    """
    gqa = k.shape[1] != q.shape[1]
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, enable_gqa=gqa)  # (B, h, T_q, d_k)
    safe_mask, has_key = guard_empty_rows(mask)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe_mask, dropout_p=dropout, enable_gqa=gqa)
    return out.masked_fill(~has_key, 0.0)  # (B, h, T_q, d_k)


class AttentionHead(nn.Module):
    """One head with its own (d_model -> d_k) projections W_q, W_k, W_v. Introduced in chapter 2."""

    def __init__(self, d_model: int, d_k: int, *, bias: bool = True) -> None:
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=bias)
        self.W_k = nn.Linear(d_model, d_k, bias=bias)
        self.W_v = nn.Linear(d_model, d_k, bias=bias)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None, dropout: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T_q, d_model), context (B, T_k, d_model), mask (B, 1, T_q, T_k) -> (B, T_q, d_k), (B, T_q, T_k)."""
        q = self.W_q(x)[:, None]  # (B, 1, T_q, d_k)
        k = self.W_k(context)[:, None]  # (B, 1, T_k, d_k)
        v = self.W_v(context)[:, None]  # (B, 1, T_k, d_k)
        out, attn = scaled_dot_product_attention(q, k, v, mask, dropout=dropout)  # (B, 1, T_q, d_k)
        return out[:, 0], attn[:, 0]  # (B, T_q, d_k), (B, T_q, T_k)


class PerHeadAttention(nn.Module):
    """Multi-head attention as h separate heads, concatenated, then W_o. Introduced in chapter 2."""

    def __init__(self, d_model: int, num_heads: int, *, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.head_dim = head_dim(d_model, num_heads)
        _check_dropout(dropout)
        self.d_model, self.num_heads, self.dropout = d_model, num_heads, dropout
        self.heads = nn.ModuleList(AttentionHead(d_model, self.head_dim, bias=bias) for _ in range(num_heads))
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Same contract as MultiHeadAttention.forward, one head at a time."""
        context, mask = _check_inputs(x, context, mask, self.d_model, self.num_heads, self.W_o.weight.dtype)
        dropout = self.dropout if self.training else 0.0
        results = [
            head(x, context, None if mask is None else mask[:, i : i + 1], dropout)  # (B, T_q, d_k), (B, T_q, T_k)
            for i, head in enumerate(self.heads)
        ]
        concat = torch.cat([out for out, _ in results], dim=-1)  # (B, T_q, h * d_k) = (B, T_q, d_model)
        out = self.W_o(concat)  # (B, T_q, d_model)
        if not return_attention:
            return out
        return out, torch.stack([attn for _, attn in results], dim=1)  # (B, h, T_q, T_k)


_PROJECTIONS = ("W_q", "W_k", "W_v")


def _require_classic(mha: MultiHeadAttention, what: str) -> None:
    if mha.num_kv_heads != mha.num_heads:
        raise ValueError(
            f"{what} needs num_kv_heads == num_heads, got num_kv_heads={mha.num_kv_heads}, num_heads={mha.num_heads}"
        )


def to_per_head(mha: MultiHeadAttention) -> PerHeadAttention:
    """Cut each fused projection into h row blocks, one per head; exact copy. Introduced in chapter 2."""
    _require_classic(mha, "to_per_head")
    bias = mha.W_q.bias is not None
    per_head = PerHeadAttention(mha.d_model, mha.num_heads, bias=bias, dropout=mha.dropout).to(mha.W_q.weight)
    d_k = mha.head_dim
    with torch.no_grad():
        for i, head in enumerate(per_head.heads):
            rows = slice(i * d_k, (i + 1) * d_k)  # output features of head i
            for name in _PROJECTIONS:
                fused, small = getattr(mha, name), getattr(head, name)
                small.weight.copy_(fused.weight[rows])  # (d_k, d_model)
                if bias:
                    small.bias.copy_(fused.bias[rows])  # (d_k,)
        per_head.W_o.load_state_dict(mha.W_o.state_dict())
    return per_head


def from_per_head(per_head: PerHeadAttention) -> MultiHeadAttention:
    """Stack h small projections into fused ones; exact copy. Introduced in chapter 2."""
    bias = per_head.W_o.bias is not None
    mha = MultiHeadAttention(per_head.d_model, per_head.num_heads, bias=bias, dropout=per_head.dropout)
    mha = mha.to(per_head.W_o.weight)
    with torch.no_grad():
        for name in _PROJECTIONS:
            smalls = [getattr(head, name) for head in per_head.heads]
            getattr(mha, name).weight.copy_(torch.cat([s.weight for s in smalls]))  # (d_model, d_model)
            if bias:
                getattr(mha, name).bias.copy_(torch.cat([s.bias for s in smalls]))  # (d_model,)
        mha.W_o.load_state_dict(per_head.W_o.state_dict())
    return mha


def to_torch(mha: MultiHeadAttention) -> nn.MultiheadAttention:
    """An nn.MultiheadAttention (batch_first=True) with the same weights. Introduced in chapter 5."""
    _require_classic(mha, "to_torch")
    bias = mha.W_q.bias is not None
    ref = mha.W_q.weight
    torch_mha = nn.MultiheadAttention(
        mha.d_model, mha.num_heads, dropout=mha.dropout, bias=bias, batch_first=True, device=ref.device, dtype=ref.dtype
    )
    with torch.no_grad():
        torch_mha.in_proj_weight.copy_(torch.cat([getattr(mha, n).weight for n in _PROJECTIONS]))  # (3 d_model, d_model)
        torch_mha.out_proj.weight.copy_(mha.W_o.weight)
        if bias:
            torch_mha.in_proj_bias.copy_(torch.cat([getattr(mha, n).bias for n in _PROJECTIONS]))  # (3 d_model,)
            torch_mha.out_proj.bias.copy_(mha.W_o.bias)
    return torch_mha


def from_torch(module: nn.MultiheadAttention) -> MultiHeadAttention:
    """A MultiHeadAttention with the weights of an nn.MultiheadAttention. Introduced in chapter 5.

    The result is batch-first whatever `module.batch_first` says.
    """
    if not module._qkv_same_embed_dim:
        raise ValueError(f"kdim={module.kdim} and vdim={module.vdim} must equal embed_dim={module.embed_dim}")
    if module.bias_k is not None or module.add_zero_attn:
        raise ValueError("add_bias_kv=True and add_zero_attn=True have no counterpart in MultiHeadAttention")
    bias = module.in_proj_bias is not None
    ref = module.in_proj_weight
    mha = MultiHeadAttention(module.embed_dim, module.num_heads, bias=bias, dropout=module.dropout).to(ref)
    with torch.no_grad():
        for name, weight in zip(_PROJECTIONS, module.in_proj_weight.chunk(3)):
            getattr(mha, name).weight.copy_(weight)  # (d_model, d_model)
        mha.W_o.weight.copy_(module.out_proj.weight)
        if bias:
            for name, b in zip(_PROJECTIONS, module.in_proj_bias.chunk(3)):
                getattr(mha, name).bias.copy_(b)  # (d_model,)
            mha.W_o.bias.copy_(module.out_proj.bias)
    return mha
