"""multihead: the code of the course "Multi-Head Attention, Step by Step"."""

from .attention import scaled_dot_product_attention
from .counting import attention_memory_bytes, count_parameters, mha_flops, mha_parameters
from .heads import head_dim, merge_heads, split_heads
from .masks import (
    causal_mask,
    check_mask,
    from_additive,
    from_torch_attn_mask,
    from_torch_key_padding_mask,
    padding_mask,
    sliding_window_mask,
    to_additive,
    to_torch_attn_mask,
    to_torch_key_padding_mask,
)
from .module import (
    AttentionHead,
    MultiHeadAttention,
    PerHeadAttention,
    from_per_head,
    from_torch,
    to_per_head,
    to_torch,
)
from .plotting import figure_to_png, plot_attention, plot_heads
from .positions import rotary

__all__ = [
    "AttentionHead",
    "MultiHeadAttention",
    "PerHeadAttention",
    "attention_memory_bytes",
    "causal_mask",
    "check_mask",
    "count_parameters",
    "figure_to_png",
    "from_additive",
    "from_per_head",
    "from_torch",
    "from_torch_attn_mask",
    "from_torch_key_padding_mask",
    "head_dim",
    "merge_heads",
    "mha_flops",
    "mha_parameters",
    "padding_mask",
    "plot_attention",
    "plot_heads",
    "rotary",
    "scaled_dot_product_attention",
    "sliding_window_mask",
    "split_heads",
    "to_additive",
    "to_per_head",
    "to_torch",
    "to_torch_attn_mask",
    "to_torch_key_padding_mask",
]
