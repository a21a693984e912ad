"""A JAX train function that runs each batch at the cheapest of a few static slot sizes
(length buckets) its masks fit, instead of always at the masker's slots.

Why: XLA compiles static shapes, so a jitted step pays for every padding slot, while
eager torch and TensorFlow graphs cut each batch to its own masks. With the official
masks at ViT-Tiny 224/16 batch 8 the full slots (77 context, 36 target) cost 285
GFLOP a step against 247 on the real tokens (docs/flexpredict_step.md).

How: before each step a small jitted function draws the batch's masks statelessly
(from the seed state the step will use, so the masks are the same) and returns the
longest real context and target mask; the host reads these two numbers and calls
Keras's own `train_step`, jitted once per bucket, inside
`utils.padding.cut_to_slots(kc, kt)` for the first (cheapest) bucket of
`FlexPredict.train_length_buckets` that holds them. A bucket compiles the first time
a batch needs it (like TensorFlow's per-length compilations), so buckets no batch
uses cost nothing. It is compiled ahead of its first run and the compiler's freed
working memory is handed back to the OS before the step allocates its buffers
(`utils.memory.release_free_memory`): at ViT-Tiny 224/16 batch 8 that took the peak RSS
from 2.40-2.44 to 1.78 GiB at the same speed. Before its first compilation the function
also empties JAX's caches of compiled programs on a CPU (`drop_compiled_programs`: the
executables of the model's eager initialisers, ~0.1 GiB), and the step compiles with
XLA's elemental emitters there (`utils.xla_cpu_options`).

The host read waits for the previous step to finish (the masks depend on its seed
state), which costs a dispatch's latency per step: nothing measurable against a CPU
step of seconds. Tried first and dropped: one program choosing its bucket with
`jax.lax.switch` (no host read) ran 4-10% slower than the plain step with identical
branches, held 0.5 GiB more memory and compiled every bucket up front
(benchmarks/results/cpu_findings.md).
"""

import keras
import numpy as np
from keras import ops

from keras_flexpredict.utils import keras_internals
from keras_flexpredict.utils.length_buckets import first_fitting_bucket
from keras_flexpredict.utils.memory import release_free_memory
from keras_flexpredict.utils.padding import cut_to_slots
from keras_flexpredict.utils.padding import longest_mask
from keras_flexpredict.utils.xla_cpu_options import train_step_compiler_options

__all__ = [
    "LengthBucketedTrainFunction",
    "drop_compiled_programs",
    "make_length_bucketed_train_function",
]


def _images(data):
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x[0] if isinstance(x, (tuple, list)) else x


class LengthBucketedTrainFunction:
    """`step(state, data)` for Keras's JAX trainer: Keras's `model.train_step`, jitted
    once per length bucket (donating the state, with the distribution's output
    shardings, as Keras's own train function), run at the bucket the batch's masks
    fit. `model` is a `FlexPredict`."""

    def __init__(self, model, out_shardings=None):
        import jax

        self.model = model
        self.out_shardings = out_shardings
        self.steps = {}  # bucket -> jitted train step
        self.compiled = set()  # (bucket, batch shapes) compiled so far
        self.buckets = {}  # batch size -> buckets
        self.lengths = jax.jit(self._longest_masks)
        # XLA:CPU's elemental emitters unless switched off (utils/xla_cpu_options.py);
        # read here so that a bad switch fails before anything compiles.
        self.compiler_options = train_step_compiler_options(jax.default_backend())

    def _longest_masks(self, state, data):
        trainable, non_trainable = state[0], state[1]
        mapping = list(zip(self.model.trainable_variables, trainable)) + list(
            zip(self.model.non_trainable_variables, non_trainable)
        )
        # The seed state and replay counters as the step will read them; their updates
        # are dropped with the scope.
        with keras.StatelessScope(state_mapping=mapping):
            masks = self.model.draw_masks(_images(data))
        return ops.stack([longest_mask(masks["context_mask"]), longest_mask(masks["target_mask"])])

    def _step(self, bucket, state, data):
        import jax

        if bucket not in self.steps:

            def train_step(state, data):
                with cut_to_slots(*bucket):
                    return self.model.train_step(state, data)

            self.steps[bucket] = jax.jit(
                train_step,
                donate_argnums=0,
                out_shardings=self.out_shardings,
                compiler_options=self.compiler_options,
            )
        step = self.steps[bucket]
        # The state's shapes are fixed for this function's life (a new `compile` makes a
        # new one); a batch of another shape (a last partial batch) compiles anew.
        signature = (bucket,) + tuple((x.shape, x.dtype) for x in jax.tree_util.tree_leaves(data))
        if signature not in self.compiled:
            if not self.compiled:
                drop_compiled_programs()
            # Compiled ahead of its first run (into the jit's own cache), and the
            # compiler's freed working memory handed back before the step allocates
            # its buffers: else glibc keeps it in the heap for the rest of the run, and
            # the peak memory is both together.
            release_free_memory()
            step.lower(state, data).compile()
            release_free_memory()
            self.compiled.add(signature)
        return step

    def __call__(self, state, data):
        batch_size = _images(data).shape[0]
        if batch_size not in self.buckets:
            self.buckets[batch_size] = self.model.train_length_buckets(batch_size)
        buckets = self.buckets[batch_size]
        if len(buckets) == 1:
            bucket = buckets[0]
        else:
            context_length, target_length = (int(v) for v in np.asarray(self.lengths(state, data)))
            bucket = first_fitting_bucket(buckets, context_length, target_length)
        return self._step(tuple(bucket), state, data)(state, data)


def drop_compiled_programs():
    """Empties JAX's caches of compiled programs (`jax.clear_caches()`) when JAX runs on
    a CPU; elsewhere (a GPU, a TPU, no JAX installed) does nothing. True if it did.

    Why: building a model runs its initialisers op by op, and JAX keeps an executable
    for every op and shape it ran (~110 of them for FlexPredict, ~0.7 MB each), plus
    the optimiser's zeros at `fit`, in host memory for the rest of the process. The
    train function calls this once, before it compiles its first step, so that memory
    is free before the compilation's own peak: at ViT-Tiny 224/16 batch 8 the process held ~110 MiB
    less from then on (997 against 1107 MiB after `fit`). Any other function the
    process had compiled compiles again at its next call.

    >>> drop_compiled_programs() in (True, False)
    True
    """
    try:
        import jax
    except ImportError:  # a torch- or TensorFlow-only install: nothing compiled by JAX
        return False
    if jax.default_backend() != "cpu":
        return False
    jax.clear_caches()
    return True


def make_length_bucketed_train_function(model):
    """Keras's JAX train function for `model` with length buckets (see the module), or
    None where Keras's own applies: `run_eagerly`, `jit_compile=False`, Flax NNX."""
    if model.run_eagerly or not model.jit_compile or keras.config.is_nnx_enabled():
        return None
    out_shardings = None
    if keras.distribution.distribution() is not None:
        out_shardings = (None, keras_internals.jax_state_sharding_spec(model))
    step = LengthBucketedTrainFunction(model, out_shardings)
    function = keras_internals.make_step_function(model, step)
    function.length_bucketed_step = step  # its `steps` say which buckets ran
    return function
