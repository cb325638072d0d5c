"""Multi-head latent attention (MLA): cache one small latent per token, not keys and values (chapter 10).

DeepSeek-V2 projects each token down to a latent c_t = x_t W_DKV of width d_c and caches only
that. Every head's key and value are up-projections of the latent, W_UK and W_UV. Because the
up-projection of the keys is linear, it can be folded into the queries ("absorbed"), and the
attention then reads the latents themselves. This module leaves out DeepSeek-V2's decoupled
rotary part and its low-rank queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .heads import check_positive, head_dim, merge_heads, split_heads
from .masks import causal_mask


@dataclass
class LatentCache:
    """Latents c_t of the tokens seen so far, (B, T, d_c). Introduced in chapter 10."""

    latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.latents is None else self.latents.shape[1]

    def append(self, c: torch.Tensor) -> torch.Tensor:
        """Store new latents (B, T_new, d_c); return all of them (B, T, d_c)."""
        if c.dim() != 3:
            raise ValueError(f"latents must be (B, T_new, d_c), got shape {tuple(c.shape)}")
        if self.latents is not None and (c.shape[0], c.shape[2]) != (self.latents.shape[0], self.latents.shape[2]):
            raise ValueError(
                f"new latents {tuple(c.shape)} do not match the cache {tuple(self.latents.shape)} in B and d_c"
            )
        self.latents = c if self.latents is None else torch.cat([self.latents, c], dim=1)  # (B, T, d_c)
        return self.latents

    def nbytes(self) -> int:
        """Bytes held by the cache."""
        return 0 if self.latents is None else self.latents.numel() * self.latents.element_size()


class MultiHeadLatentAttention(nn.Module):
    """Causal self-attention whose keys and values are up-projected from a cached latent. Introduced in chapter 10.

    W_q (d_model -> h * d_k), W_dkv (d_model -> d_c), W_uk and W_uv (d_c -> h * d_k), W_o; no
    biases, so that W_uk folds into the queries exactly.
    """

    def __init__(self, d_model: int, num_heads: int, latent_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim(d_model, num_heads)
        check_positive(latent_dim=latent_dim)
        self.d_model, self.num_heads, self.latent_dim = d_model, num_heads, latent_dim
        self.W_q = nn.Linear(d_model, d_model, bias=False)
        self.W_dkv = nn.Linear(d_model, latent_dim, bias=False)  # down: one latent per token
        self.W_uk = nn.Linear(latent_dim, d_model, bias=False)  # up: the keys of all heads
        self.W_uv = nn.Linear(latent_dim, d_model, bias=False)  # up: the values of all heads
        self.W_o = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self, x_new: torch.Tensor, cache: LatentCache | None = None, *, absorbed: bool = False
    ) -> torch.Tensor:
        """x_new (B, T_new, d_model), the newest tokens after those in `cache` -> (B, T_new, d_model).

        `absorbed=True` folds W_uk into the queries and W_uv after the weighted sum, so no key
        or value is ever built; the result is the same.
        """
        if x_new.dim() != 3 or x_new.shape[-1] != self.d_model:
            raise ValueError(f"x_new must have shape (B, T_new, d_model={self.d_model}), got {tuple(x_new.shape)}")
        h, T_new = self.num_heads, x_new.shape[1]
        # 1) project: queries per head, one latent per token
        q = split_heads(self.W_q(x_new), h)  # (B, h, T_new, d_k)
        c_new = self.W_dkv(x_new)  # (B, T_new, d_c)
        c = c_new if cache is None else cache.append(c_new)  # (B, T, d_c)
        mask = causal_mask(T_new, c.shape[1], device=x_new.device)  # (T_new, T): the new tokens are last
        # 2) attend, with keys and values up-projected or absorbed
        heads = self._attend_absorbed(q, c, mask) if absorbed else self._attend_up(q, c, mask)  # (B, h, T_new, d_k)
        # 3) merge heads and mix with W_o
        return self.W_o(merge_heads(heads))  # (B, T_new, d_model)

    def _attend_up(self, q: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k = split_heads(self.W_uk(c), self.num_heads)  # (B, h, T, d_k)
        v = split_heads(self.W_uv(c), self.num_heads)  # (B, h, T, d_k)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, T_new, d_k)

    def _attend_absorbed(self, q: torch.Tensor, c: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, d_k, d_c = self.num_heads, self.head_dim, self.latent_dim
        W_uk = self.W_uk.weight.view(h, d_k, d_c)  # (h, d_k, d_c): the rows of head i
        W_uv = self.W_uv.weight.view(h, d_k, d_c)  # (h, d_k, d_c)
        q_c = q @ W_uk  # (B, h, T_new, d_c): q . (W_uk c) = (q W_uk) . c
        B, T = c.shape[0], c.shape[1]
        latents = c[:, None].expand(B, h, T, d_c)  # (B, h, T, d_c): one shared head, no copy
        mixed = F.scaled_dot_product_attention(q_c, latents, latents, attn_mask=mask, scale=d_k**-0.5)
        return mixed @ W_uv.transpose(-2, -1)  # (B, h, T_new, d_c) @ (h, d_c, d_k) -> (B, h, T_new, d_k)
