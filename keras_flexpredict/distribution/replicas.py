"""Which data-parallel replica is running, per-replica seeds and loss scaling.

Two kinds of data parallelism run the training step differently:

- JAX (`keras.distribution`): ONE program over the global batch, sharded by XLA. Random
  draws are global: the masker draws the masks of every image of the global batch and
  the StoP noise of every token, whatever the device count. Nothing to fold here;
  `replica_context()` returns `(0, 1)`.
- TensorFlow strategies (`MirroredStrategy`, `MultiWorkerMirroredStrategy`,
  `TPUStrategy`) and torch DDP run the step ONCE PER REPLICA on its local batch, with
  the same seed-generator state everywhere (the states are replicated and advance in
  lock step). Without care every replica would draw the same masks and noise for
  different images. `replica_context()` tells such code which replica it is.
"""

import sys

import keras
from keras.src import backend as keras_backend
from keras.src.random.seed_generator import SeedGenerator

# A Weyl increment (2^32 / golden ratio): replica r adds r * _GOLDEN (mod 2^32) to the
# seed half of the [seed, counter] pair, so replicas get far-apart seeds. On torch, whose
# generator is seeded with seed + counter, replica streams could only meet after more
# than 10^9 steps (two replicas) or ~2^32 / (golden-ratio spacing) steps (many replicas).
_GOLDEN = 0x9E3779B1


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
    backend = backend or keras.backend.backend()
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


def fold_seed(seed, replica_id, backend=None):
    """A `[seed, counter]` pair turned into replica `replica_id`'s own seed.

    Replica 0 keeps the seed unchanged (so a single-replica run draws what it always
    drew); replica `r` adds `r * 0x9E3779B1 (mod 2^32)` to the seed half.

    Args:
        seed: a backend int tensor of shape `(2,)`, e.g. from `SeedGenerator.next()`.
        replica_id: int or int tensor.
        backend: the backend module or `DynamicBackend` that made `seed`. Defaults to
            the current Keras backend.

    Returns:
        An int tensor like `seed`.
    """
    b = backend if backend is not None else keras_backend
    dtype = keras.backend.standardize_dtype(seed.dtype)
    if isinstance(replica_id, int):
        offset = (replica_id * _GOLDEN) & 0xFFFFFFFF
        if dtype == "int32":  # torch: reinterpret the uint32 bits as int32
            offset = offset - (1 << 32) if offset >= (1 << 31) else offset
        delta = b.convert_to_tensor([offset, 0], dtype=dtype)
    else:  # a traced replica id (TF on TPU): int64 arithmetic, then the seed dtype
        rid = b.cast(replica_id, "int64")
        offset = b.numpy.mod(rid * _GOLDEN, 1 << 32)
        delta = b.cast(b.numpy.stack([offset, b.numpy.zeros_like(offset)]), dtype)
    return seed + delta


class _ReplicaSeedGenerator(SeedGenerator):
    """A view of a `SeedGenerator` whose draws are folded with a replica id.

    It has no state of its own: `next()` advances the wrapped generator (whose state is
    replicated and saved as usual) and folds the result, so `keras.random.*` ops, which
    accept only a `SeedGenerator` or an int, draw replica-specific numbers.
    """

    def __init__(self, generator, replica_id):  # no super().__init__: no new state
        self._generator = generator
        self._replica_id = replica_id
        self.backend = generator.backend
        self.name = f"{generator.name}_replica"
        self._initial_seed = generator._initial_seed

    @property
    def state(self):
        return self._generator.state

    def next(self, ordered=True):
        return fold_seed(self._generator.next(ordered=ordered), self._replica_id, self.backend)


def replica_seed(seed_generator, backend=None):
    """The seed to pass to `keras.random.*` so that every replica draws its own numbers.

    Returns `seed_generator` itself when there is one replica (single device, JAX), else
    a view of it folded with the replica id (see `fold_seed`): the numbers differ across
    replicas, are reproducible from the seed, and replica 0 draws what a single device
    would draw.

    Args:
        seed_generator: a `keras.random.SeedGenerator`.
        backend: str or None, as for `replica_context`.

    Example:
    >>> generator = keras.random.SeedGenerator(0)
    >>> replica_seed(generator) is generator
    True
    """
    replica_id, num_replicas = replica_context(backend)
    if num_replicas == 1:
        return seed_generator
    return _ReplicaSeedGenerator(seed_generator, replica_id)


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
    if keras.backend.backend() != "tensorflow":
        return loss
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return loss
    num_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
    if num_replicas == 1:
        return loss
    return loss * tf.cast(1.0 / num_replicas, loss.dtype)
