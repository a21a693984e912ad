"""XLA compiler options for the JAX train step on a CPU: a switch that trades a few
percent of step time for ~0.15-0.2 GiB less peak memory.

XLA:CPU compiles the step's elementwise and reduction fusions (LayerNorm, GELU,
softmax, Adam, the EMA: ~1,200 kernels in a ViT train step) with its MLIR fusion
emitters by default. They hold ~0.7-0.8 GB of compiler memory while a bucket compiles
(the RSS of a ViT-Tiny 224/16 batch-8 run rose from ~0.72 to ~1.5 GiB during the
compilation) and leave a larger executable, and JAX compiles a new length bucket in
the middle of a run, so the JAX step's peak memory is set by a compilation, not by the
step. XLA's older elemental emitters (`xla_cpu_use_fusion_emitters=False`) add
~0.15-0.19 GB per compilation: peak RSS 1.66-1.71 -> 1.49-1.53 GiB, below the official
step's. Their code ran the step slower in 8 of 10 interleaved rounds of session 18
(BENCHMARKS.md: +2-6% at ViT-Tiny 224/16, +0-24% at ViT-Tiny 64/8, -3 / +5% at
ViT-Small 224/16), so they are opt-in: `KFP_XLA_FUSION_EMITTERS=0`.

The option goes to the train step's own `jax.jit` (`compiler_options`) in
`utils.jax_length_buckets`, so it changes no other compiled function of the process;
a user's `XLA_FLAGS` naming `xla_cpu_use_fusion_emitters` wins over it. A model built
with `length_buckets=1` trains through Keras's own train function, which this switch
does not reach: there, pass `XLA_FLAGS=--xla_cpu_use_fusion_emitters=false` (the
whole process).
"""

import os

__all__ = ["train_step_compiler_options"]

FUSION_EMITTERS_SWITCH = "KFP_XLA_FUSION_EMITTERS"
_OPTION = "xla_cpu_use_fusion_emitters"


def train_step_compiler_options(platform, environ=None):
    """The `compiler_options` for `jax.jit` of the train step compiled for
    `platform` (`jax.default_backend()`: "cpu", "gpu", "tpu"), or None (XLA's
    defaults): `{"xla_cpu_use_fusion_emitters": False}` on "cpu" when `environ`
    (default `os.environ`) sets `KFP_XLA_FUSION_EMITTERS=0` and its `XLA_FLAGS` do not
    already choose that option.

    >>> train_step_compiler_options("cpu", {"KFP_XLA_FUSION_EMITTERS": "0"})
    {'xla_cpu_use_fusion_emitters': False}
    >>> train_step_compiler_options("cpu", {}) is None
    True
    >>> train_step_compiler_options("gpu", {"KFP_XLA_FUSION_EMITTERS": "0"}) is None
    True
    """
    environ = os.environ if environ is None else environ
    if platform != "cpu":
        return None
    if environ.get(FUSION_EMITTERS_SWITCH, "").strip().lower() not in ("0", "false", "no", "off"):
        return None
    if _OPTION in environ.get("XLA_FLAGS", ""):
        return None
    return {_OPTION: False}
