"""XLA compiler options for the JAX train step on a CPU: XLA's elemental emitters by
default, for ~0.15-0.2 GiB less peak memory; `KFP_XLA_FUSION_EMITTERS=1` for XLA's own
default (often a faster step, at more memory).

XLA:CPU compiles the step's elementwise and reduction fusions (LayerNorm, GELU,
softmax, Adam, the EMA: ~1,200 kernels in a ViT train step) with its MLIR fusion
emitters by default. They hold ~0.7-0.8 GB of compiler memory while a bucket compiles
(the RSS of a ViT-Tiny 224/16 batch-8 run rose from ~0.72 to ~1.5 GiB during the
compilation) and leave a larger executable, and JAX compiles a new length bucket in
the middle of a run, so the JAX step's peak memory is set by a compilation, not by the
step. XLA's older elemental emitters (`xla_cpu_use_fusion_emitters=False`) add
~0.15-0.19 GB per compilation. Session 21's interleaved comparison (BENCHMARKS.md):
peak RSS 1.59 / 1.97 / 1.60 -> 1.41 / 1.83 / 1.40 GiB at ViT-Tiny 224/16 b8 / ViT-Small
224/16 b8 / ViT-Tiny 64/8 b32, below the official StoP step's 1.55 / 1.97 / 1.41 at
each, for a step 1.48 / 1.27 / 1.40x -> 1.28 / 1.17 / 1.46x the official step's speed
(+16% / +9% / -4%; session 18 saw +2-24% slower). Memory at or below the official
step's being one of the project's goals, the elemental emitters are the CPU default
since session 21 (opt-in before).

The option goes to the train step's own `jax.jit` (`compiler_options`) in
`utils.jax_length_buckets`, so it changes no other compiled function of the process;
a user's `XLA_FLAGS` naming `xla_cpu_use_fusion_emitters` wins over it. A model built
with `length_buckets=1` trains through Keras's own train function, which this does not
reach: there, pass `XLA_FLAGS=--xla_cpu_use_fusion_emitters=false` (the whole process)
for the same memory.
"""

import os

from keras_flexpredict.utils.validation import check_switch

__all__ = ["train_step_compiler_options"]

FUSION_EMITTERS_SWITCH = "KFP_XLA_FUSION_EMITTERS"
_OPTION = "xla_cpu_use_fusion_emitters"


def train_step_compiler_options(platform, environ=None):
    """The `compiler_options` for `jax.jit` of the train step compiled for
    `platform` (`jax.default_backend()`: "cpu", "gpu", "tpu"), or None (XLA's
    defaults): `{"xla_cpu_use_fusion_emitters": False}` on "cpu" unless `environ`
    (default `os.environ`) sets `KFP_XLA_FUSION_EMITTERS=1` or its `XLA_FLAGS` already
    choose that option. Any other value of the switch is an error.

    >>> train_step_compiler_options("cpu", {})
    {'xla_cpu_use_fusion_emitters': False}
    >>> train_step_compiler_options("cpu", {"KFP_XLA_FUSION_EMITTERS": "1"}) is None
    True
    >>> train_step_compiler_options("gpu", {}) is None
    True
    """
    environ = os.environ if environ is None else environ
    if check_switch(environ, FUSION_EMITTERS_SWITCH) or platform != "cpu":
        return None
    if _OPTION in environ.get("XLA_FLAGS", ""):
        return None
    return {_OPTION: False}
