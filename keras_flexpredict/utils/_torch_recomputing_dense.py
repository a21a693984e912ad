"""Dense layers that recompute the op before them in the backward pass instead of
keeping its output (eager torch on CPUs only).

- `layer_norm_dense(x, gamma, beta, epsilon, kernel, bias)`: `layer_norm(x) @ kernel +
  bias` (a transformer block's qkv and first MLP layer).
- `gelu_dense(hidden, kernel, bias)`: `gelu(hidden) @ kernel + bias` (exact GELU; the
  MLP's second layer).

Run as two autograd ops, the backward pass keeps both the op's input (for its own
gradient) and its output (for the kernel's gradient). Here only the input is kept and
the output is computed again in the backward pass by the same kernel (the same float32
values).
Per token and block that drops the MLP's hidden activation after the GELU (4x the
model's width) and both LayerNorm outputs (1x each) from the activations a train step
holds. Saved-tensor hooks over one ViT-Tiny 64/8 batch 32 step (predictor width 384):
422 MiB kept for the backward pass, against 485 with the LayerNorms' outputs kept too;
peak RSS ~0.15 GiB lower at ViT-Tiny 224/16 batch 8 and 64/8 batch 32. The
recomputation costs a LayerNorm or a GELU per layer (a GELU over the predictor's 3584 x
1536 hidden values: ~2 ms on 2 cores); one predictor block's forward and backward ran
as fast either way (benchmarks/results/cpu_findings.md, session 20).

Kernels are Keras Dense kernels `(in, out)`; the matmuls are those of
`_torch_onednn_linear` (oneDNN where it runs, else torch's). Outside a CPU, under
`torch.compile` or for inputs not float32, both functions run the plain ops.

Example:

>>> import torch
>>> hidden, kernel, bias = torch.zeros(2, 3), torch.ones(3, 1), torch.ones(1)
>>> gelu_dense(hidden, kernel, bias).tolist()
[[1.0], [1.0]]
"""

import torch
import torch.nn.functional as F

from keras_flexpredict.utils import _torch_onednn_linear


def runs_for(x):
    """Whether the functions here keep only their input for the backward pass: a
    float32 CPU tensor outside `torch.compile`."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.compiler.is_compiling()


def _times_transposed(x, weight):
    # x @ weight.T for 2-D operands.
    if _torch_onednn_linear.enabled_for(x):
        return _torch_onednn_linear.matmul_transposed(x, weight)
    return torch.mm(x, weight.t())


def _kernel_gradient(inputs, grad):
    # inputs.T @ grad for 2-D operands.
    if _torch_onednn_linear.enabled_for(inputs):
        return _torch_onednn_linear.kernel_gradient(inputs, grad)
    return torch.mm(inputs.t(), grad)


def _dense_backward(ctx, grad, inputs, kernel, inputs_need_grad):
    """Gradients of `inputs @ kernel + bias` for `(inputs, kernel, bias)` (the kernel
    and bias are the function's last two inputs)."""
    grad_inputs = _times_transposed(grad, kernel) if inputs_need_grad else None
    grad_kernel = _kernel_gradient(inputs, grad) if ctx.needs_input_grad[-2] else None
    grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[-1] else None
    return grad_inputs, grad_kernel, grad_bias


class _GeluDense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, kernel, bias):
        ctx.save_for_backward(hidden, kernel)
        ctx.has_bias = bias is not None
        return _torch_onednn_linear.linear(F.gelu(hidden), kernel, bias)

    @staticmethod
    def backward(ctx, grad):
        hidden, kernel = ctx.saved_tensors
        grad_gelu, grad_kernel, grad_bias = _dense_backward(
            ctx, grad, F.gelu(hidden), kernel, ctx.needs_input_grad[0]
        )
        grad_hidden = None if grad_gelu is None else torch.ops.aten.gelu_backward(grad_gelu, hidden)
        return grad_hidden, grad_kernel, grad_bias


class _LayerNormDense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, beta, epsilon, kernel, bias):
        normed, mean, rstd = torch.native_layer_norm(x, (x.shape[-1],), gamma, beta, epsilon)
        ctx.save_for_backward(x, gamma, beta, mean, rstd, kernel)
        ctx.has_bias, ctx.epsilon = bias is not None, epsilon
        return _torch_onednn_linear.linear(normed, kernel, bias)

    @staticmethod
    def backward(ctx, grad):
        x, gamma, beta, mean, rstd, kernel = ctx.saved_tensors
        normed = torch.native_layer_norm(x, (x.shape[-1],), gamma, beta, ctx.epsilon)[0]
        norm_needs_grad = list(ctx.needs_input_grad[:3])  # x, gamma, beta
        grad_normed, grad_kernel, grad_bias = _dense_backward(ctx, grad, normed, kernel, any(norm_needs_grad))
        grad_x = grad_gamma = grad_beta = None
        if grad_normed is not None:
            grad_x, grad_gamma, grad_beta = torch.ops.aten.native_layer_norm_backward(
                grad_normed, x, (x.shape[-1],), mean, rstd, gamma, beta, norm_needs_grad
            )
        return grad_x, grad_gamma, grad_beta, None, grad_kernel, grad_bias


def _flat(x):
    return x.reshape(-1, x.shape[-1])


def gelu_dense(hidden, kernel, bias=None):
    """`gelu(hidden) @ kernel + bias` for `hidden` `(..., in)`, keeping only `hidden`
    for the backward pass where `runs_for(hidden)`."""
    if not runs_for(hidden) or hidden.numel() == 0:
        return _torch_onednn_linear.linear(F.gelu(hidden), kernel, bias)
    y = _GeluDense.apply(_flat(hidden), kernel, bias)
    return y.reshape(*hidden.shape[:-1], kernel.shape[-1])


def layer_norm_dense(x, gamma, beta, epsilon, kernel, bias=None):
    """`layer_norm(x; gamma, beta, epsilon) @ kernel + bias` over the last axis of `x`
    `(..., in)`, keeping only `x` and its statistics for the backward pass where
    `runs_for(x)`."""
    if not runs_for(x) or x.numel() == 0:
        normed = F.layer_norm(x, (x.shape[-1],), gamma, beta, epsilon)
        return _torch_onednn_linear.linear(normed, kernel, bias)
    y = _LayerNormDense.apply(_flat(x), gamma, beta, epsilon, kernel, bias)
    return y.reshape(*x.shape[:-1], kernel.shape[-1])
