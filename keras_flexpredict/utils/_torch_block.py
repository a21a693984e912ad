"""A `TransformerBlock`'s forward pass as plain torch functions (eager torch only).

`backend_adapter.run_eager_torch_block` uses this on the torch backend when the tokens
are a concrete tensor: the same math as the block's Keras layers and ops (LayerNorm in
at least float32, the Dense layers as one matmul with the bias added by it (oneDNN's
on AMD CPUs, `_torch_onednn_linear`; `F.linear` elsewhere),
`scaled_dot_product_attention` with the padding mask, exact GELU; on float32 CPUs the
LayerNorms' and the GELU's outputs are recomputed in the backward pass rather than
kept: `_torch_recomputing_dense`), without Keras's
per-layer `__call__` and per-op conversion and dtype checks, which on a 2-core CPU cost
about 9% of a ViT-Tiny train step. The weights are the block's own variables, so
gradients, the optimiser and the EMA see no difference.
"""

import torch
import torch.nn.functional as F

from keras_flexpredict.utils import _torch_onednn_linear
from keras_flexpredict.utils import _torch_recomputing_dense


def _weight(variable, dtype):
    value = variable.value
    return value if value.dtype == dtype else value.to(dtype)


def _layer_norm(layer, x):
    # As keras.ops.layer_normalization: computed in at least float32.
    dtype = torch.promote_types(x.dtype, torch.float32)
    y = F.layer_norm(
        x.to(dtype), (x.shape[-1],), _weight(layer.gamma, dtype), _weight(layer.beta, dtype), layer.epsilon
    )
    return y.to(x.dtype)


def _kernel_and_bias(layer, dtype):
    bias = _weight(layer.bias, dtype) if layer.use_bias else None
    return _weight(layer.kernel, dtype), bias


def _dense(layer, x):
    return _torch_onednn_linear.linear(x, *_kernel_and_bias(layer, x.dtype))


def _normed_dense(norm, layer, x):
    """`_dense(layer, _layer_norm(norm, x))`, on float32 CPUs without keeping the
    LayerNorm's output for the backward pass (`_torch_recomputing_dense`)."""
    if not _torch_recomputing_dense.runs_for(x) or norm.gamma is None or norm.beta is None:
        return _dense(layer, _layer_norm(norm, x))
    gamma, beta = _weight(norm.gamma, x.dtype), _weight(norm.beta, x.dtype)
    return _torch_recomputing_dense.layer_norm_dense(x, gamma, beta, norm.epsilon, *_kernel_and_bias(layer, x.dtype))


def _queries_keys_values(block, tokens, outputs_from):
    """q `(b, heads, n - outputs_from, head_dim)`, k and v `(b, heads, n, head_dim)` of
    the first LayerNorm's output: with `outputs_from`, the queries of the other tokens
    are never computed (the kernel's query columns on the kept tokens, its key and
    value columns on all)."""
    b, n, d = tokens.shape
    heads = block.num_heads
    if outputs_from is None:
        qkv = _normed_dense(block.norm1, block.qkv, tokens)
        return qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
    normed = _layer_norm(block.norm1, tokens)
    kernel, bias = _kernel_and_bias(block.qkv, normed.dtype)
    kept = normed[:, outputs_from:]
    q = _torch_onednn_linear.linear(kept, kernel[:, :d], None if bias is None else bias[:d])
    kv = _torch_onednn_linear.linear(normed, kernel[:, d:], None if bias is None else bias[d:])
    k, v = kv.view(b, n, 2, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
    return q.view(b, kept.shape[1], heads, d // heads).transpose(1, 2), k, v


def forward(block, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
    """`block.call(tokens, padding_mask, zero_padding, outputs_from)` in plain torch."""
    d = tokens.shape[-1]
    q, k, v = _queries_keys_values(block, tokens, outputs_from)
    keep = None if padding_mask is None else padding_mask.to(torch.bool)
    mask = None if keep is None else keep[:, None, None, :]
    if outputs_from is not None:
        tokens = tokens[:, outputs_from:]
        keep = None if keep is None else keep[:, outputs_from:]
    b, n = tokens.shape[:2]
    attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    x = tokens + _dense(block.attention_output, attended.transpose(1, 2).reshape(b, n, d))
    hidden = _normed_dense(block.norm2, block.mlp_hidden, x)
    x = x + _torch_recomputing_dense.gelu_dense(hidden, *_kernel_and_bias(block.mlp_output, hidden.dtype))
    if keep is not None and zero_padding:
        x = torch.where(keep[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x
