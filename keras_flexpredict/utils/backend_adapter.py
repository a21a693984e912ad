"""Every branch on the Keras backend, in one place.

The rest of keras_flexpredict is backend-neutral (`keras.ops`, `keras.random`) and asks
this module for what differs between JAX, TensorFlow and torch: a capability
(`ema_update_`, `multiply_variables_`, `fused_adam_step`, `fused_adam_variable_step`,
`block_stack_mode`, `build_optimizer_before_fit`), a fact about the run
(`replica_context`, `process_index`, `torch_world_size`) or whether a step may
change its shapes (`shapes_may_vary`). A test greps the package for
`keras.backend.backend()` comparisons outside this file.

Example:
>>> replica_context()
(0, 1)
"""

import json
import os
import sys

import keras
from keras import ops

from keras_flexpredict.utils import keras_internals


def _backend():
    return keras.backend.backend()


def runs_on(backend):
    """True when the Keras backend is `backend` (`"jax"`, `"tensorflow"`, `"torch"`)."""
    return _backend() == backend


# ------------------------------------------------------------------ shapes
def shapes_may_vary(tensor):
    """True where `tensor` is concrete and ops run one by one (the torch backend
    outside `torch.compile`, not a symbolic or meta-device trace): there a step may
    take the shapes of its own masks, at the cost of one host read per step. Compiled
    programs (JAX jit, XLA, torch.compile) keep static shapes, so they compile once;
    TensorFlow graphs without XLA are `graph_shapes_may_vary`."""
    if _backend() != "torch":
        return False
    import torch

    return (
        isinstance(tensor, torch.Tensor)
        and tensor.device.type != "meta"
        and not torch.compiler.is_compiling()
    )


def eager_slots_stay_static(tensor, compute_dtype):
    """True where `tensor` is an eager torch tensor (`shapes_may_vary`) and a model
    computing in `compute_dtype` runs its Dense layers as oneDNN matmuls
    (`_torch_onednn_linear`, float32 on an AMD CPU by default): oneDNN keeps a compiled
    primitive for every matmul shape it sees, so the step keeps its static slots
    instead of cutting them to each batch's masks (or, asked for length buckets, cuts
    them to one of those few sizes: `utils.padding.trim_padding`)."""
    if not shapes_may_vary(tensor):
        return False
    from keras_flexpredict.utils import _torch_onednn_linear

    return _torch_onednn_linear.runs_for(tensor.device.type, keras.backend.standardize_dtype(compute_dtype))


def graph_shapes_may_vary(tensor):
    """True where `tensor` is a TensorFlow tensor outside XLA (eager, or a `tf.function`
    without `jit_compile`, as Keras runs TF steps on CPU): TF's kernels take any shape,
    so a step may slice to lengths it computes itself, with no host read and no
    retracing. False under XLA (`jit_compile=True`, TPUs), where shapes must be static,
    and on the other backends."""
    if _backend() != "tensorflow" or isinstance(tensor, keras.KerasTensor):
        return False
    import tensorflow as tf

    if not tf.is_tensor(tensor):
        return False
    if tf.executing_eagerly():
        return True
    # TensorFlow's own test of "inside an XLA cluster" (what tf.function(jit_compile=True)
    # and TPU replication set); it has no public equivalent.
    from tensorflow.python.ops import control_flow_util

    return not control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def jax_runs_on_cpu():
    """True when the backend is JAX and its default devices are CPUs."""
    if _backend() != "jax":
        return False
    import jax

    return jax.default_backend() == "cpu"


# ---------------------------------------------------- transformer stacks
def block_stack_mode(blocks, tokens):
    """How `transformer_stack.run_blocks` runs the `TransformerBlock`s `blocks` on
    `tokens` (the math is the same in every mode):

    - `"eager_torch"`: the torch backend on a concrete tensor outside `torch.compile`:
      each block as plain torch functions (`run_eager_torch_block`), without Keras's
      per-layer call and per-op checks (about 9% of a ViT-Tiny CPU train step).
    - `"scan"`: JAX with no distribution or `keras.distribution.DataParallel`: one
      `keras.ops.scan` over the blocks' stacked weights, the body rematerialised
      (`scan_step`) and its matmuls 2-D. Unrolled, XLA:CPU fuses the residual stream's
      gradient (the LayerNorm gradients of every later block) into each copy that feeds
      a weight-gradient matmul and so recomputes it once per consumer; the loop boundary
      stops that, and XLA compiles one block instead of `depth`.
    - `"flat"`: JAX under a distribution that shards weights: the blocks as functions
      of their weights, one after the other, with 2-D matmuls (XLA:CPU ran the MLP's
      3-D matmuls and their gradients 2.3x slower).
    - `"tf_fused"`: TensorFlow in float32: each block's Keras call runs the block as
      two TensorFlow functions (forward; backward recomputing the block from its
      input, or, for blocks created under `keras.RematScope(mode=None)`, from four
      kept tensors) that every block of the same structure shares, with its
      LayerNorms and GELU as small XLA-compiled forward and backward functions
      (`run_tf_rematerialized_block`, `run_tf_fused_block`); Keras runs TF
      steps without XLA on CPU, where TF otherwise runs every elementwise op of their
      gradients as its own kernel. (The 2-D form of `"flat"` measured no faster on TF.)
    - `"layers"`: each block's own Keras call: TensorFlow in other precisions, symbolic
      tensors, `torch.compile`, and blocks that are not plain
      (`TransformerBlock.has_plain_parts`: LoRA, quantisation).

    Blocks under a `keras.RematScope` keep their mode and run rematerialised over their
    tokens (`TransformerBlock.rematerialized_call`; eager torch through the block's
    Keras call). In `"tf_fused"` mode that is also the default outside any scope
    (`TransformerBlock.rematerializes` says why).

    Measured on a 2-core CPU, six predictor blocks (32 x 114 tokens, width 384)
    forward and backward on JAX: 2.75 s and 1.58 GB as layers, 1.68 s and 1.14 GB as a
    rematerialised scan; the whole ViT-Tiny 224/16 batch-8 StoP step went from 3.06 s
    to 1.65 s.
    """
    if isinstance(tokens, keras.KerasTensor) or not all(block.has_plain_parts() for block in blocks):
        return "layers"
    backend = _backend()
    if backend == "torch":
        return "eager_torch" if shapes_may_vary(tokens) else "layers"
    if backend == "tensorflow":
        float32 = keras.backend.standardize_dtype(tokens.dtype) == "float32" and all(
            block.compute_dtype == "float32" and block.variable_dtype == "float32" for block in blocks
        )
        return "tf_fused" if float32 else "layers"
    if backend != "jax":
        return "layers"
    current = keras.distribution.distribution()
    if len(blocks) > 1 and (current is None or isinstance(current, keras.distribution.DataParallel)):
        return "scan"
    return "flat"


def run_tf_fused_block(block, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
    """`block.call(tokens, padding_mask, zero_padding, outputs_from)` on TensorFlow
    with each LayerNorm and the GELU as small XLA-compiled forward and backward
    functions, the block's forward and backward passes as two functions that every
    block of the same structure shares (`_tf_block`; see `block_stack_mode` for where
    it applies). The backward pass reads four tensors the forward pass kept: how a
    block created under `keras.RematScope(mode=None)` runs."""
    from keras_flexpredict.utils import _tf_block

    return _tf_block.forward(block, tokens, padding_mask, zero_padding, outputs_from)


def run_tf_rematerialized_block(block, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
    """`run_tf_fused_block` rematerialised: the backward pass keeps the block's inputs
    only and computes its activations again (`_tf_block.rematerialized_forward`). How a
    block in `"tf_fused"` mode runs by default and under a `keras.RematScope` that
    covers it (`TransformerBlock.rematerializes`)."""
    from keras_flexpredict.utils import _tf_block

    return _tf_block.rematerialized_forward(block, tokens, padding_mask, zero_padding, outputs_from)


def scan_step(step, rematerialize_all=False):
    """`step` (a `keras.ops.scan` body over transformer blocks) rematerialised on JAX:
    its backward pass keeps only the outputs of the matmuls that have no batch
    dimension (the Dense layers) and recomputes the rest (LayerNorm, GELU, attention),
    `jax.checkpoint` with `dots_with_no_batch_dims_saveable`; with `rematerialize_all`
    (blocks under a `keras.RematScope`) it keeps nothing but each block's input. A scan
    would otherwise store every intermediate of every block for the backward pass.
    Forward-only calls (the target encoder) are unaffected. Elsewhere `step` itself."""
    if _backend() != "jax":
        return step
    import jax

    if rematerialize_all:
        return jax.checkpoint(step)
    return jax.checkpoint(step, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)


def run_eager_torch_block(block, tokens, padding_mask=None, zero_padding=True, outputs_from=None):
    """`block.call(tokens, padding_mask, zero_padding, outputs_from)` as plain torch
    functions (see `block_stack_mode` for where it applies)."""
    from keras_flexpredict.utils import _torch_block

    return _torch_block.forward(block, tokens, padding_mask, zero_padding, outputs_from)


# ------------------------------------------------------------- arithmetic
def _torch_ema_(pairs, momentum):
    """`teacher <- m teacher + (1 - m) student` with torch's multi-tensor kernels: one
    launch per op for all weights instead of one per weight (the eager per-variable
    loop cost 27% of a ViT-S step on an H100)."""
    import torch

    with torch.no_grad():
        teachers = [t.value for t, _ in pairs]
        students = [s.value for _, s in pairs]
        m = momentum.to(teachers[0].dtype)
        torch._foreach_mul_(teachers, m)
        torch._foreach_add_(teachers, torch._foreach_mul(students, 1.0 - m))


def ema_update_(pairs, momentum):
    """In place, for every `(teacher, student)` variable pair:
    `teacher <- m teacher + (1 - m) student`, no gradient through `student`.

    Traceable (JAX jit, tf.function); on torch one multi-tensor kernel per op.

    Args:
        pairs: list of `(teacher, student)` `keras.Variable`s of equal shapes.
        momentum: float32 scalar tensor `m`.
    """
    if not pairs:
        return
    if _backend() == "torch":
        _torch_ema_(pairs, momentum)
        return
    for teacher, student in pairs:
        m = ops.cast(momentum, teacher.dtype)
        student_value = ops.stop_gradient(ops.cast(student.value, teacher.dtype))
        teacher.assign(m * teacher.value + (1.0 - m) * student_value)


def multiply_variables_(variables, factor_fn, optimizer=None):
    """`v <- v * factor_fn()` for every variable, as an optimiser's decoupled weight
    decay does, inside the compiled step.

    `factor_fn()` (a float32 scalar) is evaluated once. On TensorFlow it is evaluated in
    the replica context and applied once per replica through the distribution strategy
    of `optimizer` (the pattern of Keras's TF optimiser), so `tf.distribute` strategies
    work; on torch with one multi-tensor kernel per dtype.

    Args:
        variables: list of `keras.Variable`.
        factor_fn: callable returning the factor.
        optimizer: the optimiser applying it (needed on TensorFlow).
    """
    backend = _backend()
    if backend == "tensorflow":
        _tf_multiply_variables_(variables, factor_fn(), keras_internals.optimizer_distribution_strategy(optimizer))
    elif backend == "torch":
        import torch

        with torch.no_grad():
            factor = factor_fn()
            by_dtype = {}
            for variable in variables:
                by_dtype.setdefault(variable.value.dtype, []).append(variable.value)
            for dtype, tensors in by_dtype.items():
                torch._foreach_mul_(tensors, factor.to(dtype))
    else:
        factor = factor_fn()
        for variable in variables:
            variable.assign(ops.multiply(variable, ops.cast(factor, variable.dtype)))


def _tf_multiply_variables_(variables, factor, strategy):
    import tensorflow as tf

    def distributed_multiply(distribution, variables, factor, **kwargs):
        def multiply_fn(variable, factor):
            variable.assign(variable * tf.cast(factor, variable.dtype))

        for variable in variables:
            if isinstance(variable, keras.Variable):
                variable = variable.value
            distribution.extended.update(variable, multiply_fn, args=(factor,), group=False)

    tf.__internal__.distribute.interim.maybe_merge_call(distributed_multiply, strategy, variables, factor)


def fused_adam_step(optimizer, grads, variables, learning_rate):
    """Applies the Adam step of `optimizer` (an Adam or AdamW subclass, which Keras
    would update variable by variable) with torch's multi-tensor kernels and returns
    True; returns False (nothing done) on other backends or where this Keras has no
    such step.

    On CPU, torch's `_foreach_*` ops are a loop of one-tensor ops, so Keras's
    multi-tensor step reads and writes every weight ~10 times (70 ms a step for the 16 M
    weights of ViT-Tiny plus its predictor on a 2-core CPU); there the step is torch's
    fused CPU Adam kernel (one pass, 11 ms) with the same math: Keras adds `epsilon` to
    `sqrt(v)` before the bias correction, torch after it, so the kernel gets
    `epsilon / sqrt(1 - beta_2 ** t)`. Elsewhere (CUDA) Keras's step runs as is.
    """
    if _backend() != "torch":
        return False
    import torch

    with torch.no_grad():
        if _torch_fused_cpu_adam_step(optimizer, grads, variables, learning_rate):
            return True
        parallel_step = keras_internals.torch_parallel_adam_step()
        if parallel_step is None:
            return False
        parallel_step(optimizer, grads, variables, learning_rate)
    return True


def _torch_fused_cpu_adam_step(optimizer, grads, variables, learning_rate):
    import torch

    fused = getattr(torch, "_fused_adam_", None)
    params = [v.value for v in variables]
    if (
        fused is None
        or optimizer.amsgrad
        or not params
        or any(p.device.type != "cpu" or p.dtype not in (torch.float32, torch.float64) for p in params)
        or any(g is None or g.dtype != p.dtype for g, p in zip(grads, params))
    ):
        return False
    momentums, velocities = keras_internals.adam_slots(optimizer, variables)
    step = float(keras.ops.convert_to_numpy(optimizer.iterations)) + 1.0
    bias_correction_2 = 1.0 - float(optimizer.beta_2) ** step
    by_dtype = {}
    for p, g, m, v in zip(params, grads, momentums, velocities):
        group = by_dtype.setdefault(p.dtype, ([], [], [], []))
        for items, tensor in zip(group, (p, g.contiguous(), m, v)):
            items.append(tensor)
    for dtype, (p, g, m, v) in by_dtype.items():
        steps = [torch.tensor(step, dtype=torch.float32)] * len(p)
        fused(
            p, g, m, v, [], steps,
            lr=float(learning_rate), beta1=float(optimizer.beta_1), beta2=float(optimizer.beta_2),
            weight_decay=0.0, eps=float(optimizer.epsilon) / bias_correction_2**0.5,
            amsgrad=False, maximize=False,
        )
    return True


def build_optimizer_before_fit(model):
    """TensorFlow: builds `model.optimizer`'s variables before `fit` traces the step.

    Without a `tf.distribute` strategy Keras defers the optimiser's build to the first
    trace of the train step; `tf.function` then sees variables created while tracing
    and traces the whole step a second time (ViT-Tiny 224/16 on 2 CPU cores: first
    step 24 s, 14 s with the build done first). This is the build Keras itself does
    before tracing under a strategy and on the other backends, so nothing else changes.
    """
    optimizer = getattr(model, "optimizer", None)
    if _backend() != "tensorflow" or optimizer is None or optimizer.built:
        return
    if not keras_internals.all_layers_built(model):
        return  # Keras builds the model (then the optimiser) from the first batch.
    with model.distribute_strategy.scope():
        optimizer.build(model.trainable_variables)


def fused_adam_variable_step(optimizer, gradient, variable, learning_rate):
    """Applies `optimizer`'s Adam step to one weight as TensorFlow's fused kernel
    (`ResourceApplyAdam`) and returns True; returns False (nothing done) on other
    backends, for amsgrad, sparse gradients or non-float weights.

    Keras's TF step builds ~12 graph ops per weight, each a pass over it; the kernel
    is one op and one pass, with Keras's math (`epsilon` added to `sqrt(v)`, then
    `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)`). Its graph is also traced ~3x faster,
    which shortens the first step. `variable` is the `tf.Variable` (or the replica's
    component under `tf.distribute`) that Keras's TF optimiser hands to `update_step`.
    """
    if _backend() != "tensorflow" or optimizer.amsgrad:
        return False
    import tensorflow as tf

    dtype = tf.as_dtype(variable.dtype)
    if isinstance(gradient, tf.IndexedSlices) or dtype not in (tf.float32, tf.float64):
        return False
    (m,), (v,) = keras_internals.adam_slots(optimizer, [variable])
    step = tf.cast(optimizer.iterations + 1, dtype)
    beta_1 = tf.cast(optimizer.beta_1, dtype)
    beta_2 = tf.cast(optimizer.beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.handle, v=v.handle,
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(optimizer.epsilon, dtype), grad=tf.cast(gradient, dtype),
        use_locking=False,
    )
    return True


# ---------------------------------------------------------------- replicas
def replica_context(backend=None):
    """`(replica_id, num_replicas)` of the data-parallel replica running this code.

    `(0, 1)` outside any data parallelism, on JAX (one global program), in a TF
    cross-replica context and in a `tf.data` function. Under a `tf.distribute` strategy
    inside the replicated step, `replica_id` is the replica's index in the sync group (a
    Python int where TF knows it statically, else an int32 tensor, e.g. on TPU) and
    `num_replicas` the strategy's `num_replicas_in_sync`. On torch with an initialised
    `torch.distributed` process group: `(rank, world_size)`.

    Args:
        backend: str or None. The backend whose runtime to ask (a `DataLayer` running in
            `tf.data` passes `"tensorflow"`). Defaults to `keras.backend.backend()`.

    Returns:
        `(replica_id, num_replicas)`.

    Example:
    >>> replica_context()
    (0, 1)
    """
    backend = backend or _backend()
    if backend == "tensorflow" and "tensorflow" in sys.modules:
        import tensorflow as tf

        if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
            return 0, 1
        context = tf.distribute.get_replica_context()
        num_replicas = int(context.num_replicas_in_sync)
        if num_replicas == 1:
            return 0, 1
        replica_id = context.replica_id_in_sync_group
        static = tf.get_static_value(replica_id)
        return (int(static) if static is not None else replica_id), num_replicas
    if backend == "torch" and "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            world_size = dist.get_world_size()
            if world_size > 1:
                return dist.get_rank(), world_size
    return 0, 1


def scale_loss_for_replicas(loss):
    """Divides a per-replica loss by the number of replicas in a TF replica context.

    `tf.distribute` strategies SUM the replicas' gradients, so a loss that is a mean
    over the replica's local batch must be divided by `num_replicas_in_sync` to give
    the gradient of the global-batch mean (Keras's own `Loss` objects do this; a
    `compute_loss` built from raw ops must do it itself, else the loss and gradients
    come out N times too large). A no-op everywhere else: JAX computes the global mean
    directly, and the torch data-parallel path averages gradients itself.

    Example:
    >>> float(scale_loss_for_replicas(keras.ops.convert_to_tensor(2.0)))
    2.0
    """
    if _backend() != "tensorflow":
        return loss
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return loss
    num_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    if num_replicas == 1:
        return loss
    return loss * tf.cast(1.0 / num_replicas, loss.dtype)


def torch_process_group():
    """`torch.distributed` when the backend is torch and an initialised process group
    has more than one process, else None."""
    if _backend() != "torch" or "torch" not in sys.modules:
        return None
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def torch_world_size():
    """The number of torch data-parallel processes (1 off torch or without a group of
    several processes): above 1, `fit` needs `TorchDataParallel`."""
    return replica_context("torch")[1] if _backend() == "torch" else 1


def jax_process_count():
    """The number of JAX processes (1 off JAX)."""
    if _backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def tf_config():
    """The parsed `TF_CONFIG` environment variable of TF multi-worker runs ({} if unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON. Received: TF_CONFIG={raw!r}") from error


def process_index():
    """Index of this process among the training processes (0 when there is one)."""
    backend = _backend()
    if backend == "jax":
        import jax

        return jax.process_index()
    if backend == "torch":
        dist = torch_process_group()
        return dist.get_rank() if dist is not None else 0
    if backend == "tensorflow":
        # Multi-worker TF: the position of this task in TF_CONFIG's cluster, chief first.
        config = tf_config()
        task, cluster = config.get("task", {}), config.get("cluster", {})
        index = 0
        for task_type in ("chief", "worker"):
            if task.get("type") == task_type:
                return index + int(task.get("index", 0))
            index += len(cluster.get(task_type, []))
        if task.get("type"):  # an evaluator or parameter server: after the trainers
            return index + int(task.get("index", 0))
    return 0
