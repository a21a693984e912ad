"""Dense layers as oneDNN matmuls on the torch backend's CPU path (eager torch only).

torch's CPU `F.linear` / `torch.mm` call MKL's `sgemm` for float32. On AMD CPUs MKL
runs its AVX2 code, whatever the CPU supports: on a 2-core AMD EPYC Zen 5 VM (full-width
AVX-512) `torch.mm` 4096^3 ran at ~195 GFLOP/s where oneDNN's float32 matmul, which
torch ships too, ran at ~420 (TensorFlow's oneDNN `matmul` ~440, XLA's ~380). The
transformer blocks' Dense layers, forward and backward, ran 1.4-2.1x faster through
oneDNN at ViT-Tiny/Small shapes, with the same float32 arithmetic (outputs and
gradients within 1.4e-6 relative of MKL's; no reduced-precision mode is used).

`linear(x, kernel, bias)` is `x @ kernel + bias` with a Keras Dense kernel `(in, out)`.
It runs through `torch.ops.mkldnn._linear_pointwise` (the op torch's own compiler emits
for CPU linears) with a hand-written backward of two more oneDNN matmuls, when
`enabled_for(x)`: a float32 CPU tensor outside `torch.compile`, the op present, and the
switch `KFP_TORCH_ONEDNN_LINEAR` on. By default the switch is on for AMD CPUs only
(where MKL's code path is the known loss); `KFP_TORCH_ONEDNN_LINEAR=1` turns it on on
any CPU, `=0` off (plain `F.linear`). The switch is read once per process.

oneDNN compiles and keeps (in its primitive cache, up to 1024) one primitive per matmul
shape, ~0.6-0.8 MiB each. Fed eager torch's per-step slot cuts (`utils.padding.
trim_padding`), a ViT-Tiny 224/16 run's peak RSS rose by 0.35-0.46 GiB in 18 steps and
would keep rising. So where this runs, the train step keeps the masker's static slots
(`backend_adapter.eager_slots_stay_static`; or, with `FlexPredict(length_buckets=N)`,
cuts them to one of N length buckets): one shape per layer, the peak memory of
`F.linear` with the cut, and a faster step than with the cut (ViT-Tiny 224/16 b8, the
official masks: 941 ms static, 985 ms cut, 1038 ms cut and rounded up to an eighth of
the slots; MKL with the cut 1482-1520 ms).

Example:

>>> import torch
>>> x, kernel, bias = torch.ones(4, 3), torch.ones(3, 2), torch.zeros(2)
>>> linear(x, kernel, bias).tolist()
[[3.0, 3.0], [3.0, 3.0], [3.0, 3.0], [3.0, 3.0]]
"""

import functools
import os

import torch
import torch.nn.functional as F

from keras_flexpredict.utils.validation import check_switch

SWITCH = "KFP_TORCH_ONEDNN_LINEAR"
_CPUINFO = "/proc/cpuinfo"


def _cpu_vendor(path=_CPUINFO):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def switch_state(environ=None, vendor=None):
    """Whether the switch is on: `KFP_TORCH_ONEDNN_LINEAR` in `environ` (default
    `os.environ`) when set to an on/off word, else on for an AMD CPU (`vendor`, default
    read from `/proc/cpuinfo`).

    >>> switch_state({"KFP_TORCH_ONEDNN_LINEAR": "0"}, vendor="AuthenticAMD")
    False
    >>> switch_state({}, vendor="AuthenticAMD"), switch_state({}, vendor="GenuineIntel")
    (True, False)
    >>> switch_state({"KFP_TORCH_ONEDNN_LINEAR": "1"}, vendor="GenuineIntel")
    True
    """
    state = check_switch(os.environ if environ is None else environ, SWITCH)
    if state is not None:
        return state
    return (_cpu_vendor() if vendor is None else vendor) == "AuthenticAMD"


@functools.lru_cache(maxsize=None)
def _available():
    return switch_state() and torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    )


def runs_for(device_type, dtype):
    """Whether `linear` runs through oneDNN for tensors of `dtype` on `device_type`:
    float32 on a CPU outside `torch.compile`, with the op present and the switch on."""
    return (
        device_type == "cpu"
        and dtype in (torch.float32, "float32")
        and _available()
        and not torch.compiler.is_compiling()
    )


def enabled_for(x):
    """Whether `linear(x, ...)` runs through oneDNN (see the module docstring)."""
    return runs_for(x.device.type, x.dtype)


def _plain(t):
    # oneDNN's fast kernels take row- or column-major operands; any other strides (a
    # column slice of a kernel) fall to its reference kernel, ~1000x slower.
    return t if t.is_contiguous() or t.t().is_contiguous() else t.contiguous()


def matmul_transposed(x, weight):
    """`x @ weight.T` for 2-D `x` `(rows, in)` and `weight` `(out, in)`, in oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(_plain(x), _plain(weight), None, "none", [], "")


def kernel_gradient(inputs, grad):
    """`inputs.T @ grad`, the gradient of a Dense kernel `(in, out)`, for 2-D `inputs`
    `(rows, in)` and `grad` `(rows, out)`, in oneDNN.

    oneDNN's op copies a column-major first operand into row-major order, a transposing
    copy far below memory speed (the predictor MLP's 3072 x 1536 GELU outputs: ~15 ms
    on 2 Zen 4 cores, most of the 19 ms matmul's own time). So the product is taken in
    the orientation that copies the smaller operand: `(grad.T @ inputs).T` where `out <
    in`, returned as that transposed view.

    >>> import torch
    >>> inputs, grad = torch.ones(4, 3), torch.ones(4, 2)
    >>> kernel_gradient(inputs, grad).tolist()
    [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]]
    """
    if grad.shape[1] < inputs.shape[1]:
        return matmul_transposed(grad.t(), inputs.t()).t()
    return matmul_transposed(inputs.t(), grad.t())


class _OneDNNLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, kernel, bias):
        x, kernel = _plain(x), _plain(kernel)
        ctx.save_for_backward(x, kernel)
        ctx.has_bias = bias is not None
        bias = None if bias is None else bias.contiguous()
        return torch.ops.mkldnn._linear_pointwise(x, kernel.t(), bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad):
        x, kernel = ctx.saved_tensors
        grad_x = matmul_transposed(grad, kernel) if ctx.needs_input_grad[0] else None
        grad_kernel = kernel_gradient(x, grad) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_kernel, grad_bias


def linear(x, kernel, bias=None):
    """`x @ kernel + bias` for `x` `(..., in)` and a Dense `kernel` `(in, out)`: oneDNN
    where `enabled_for(x)`, `F.linear` otherwise."""
    if not enabled_for(x) or x.numel() == 0:
        return F.linear(x, kernel.t(), bias)
    leading = x.shape[:-1]
    y = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), kernel, bias)
    return y.reshape(*leading, kernel.shape[-1])
