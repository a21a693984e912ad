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

import types

import keras
from keras import ops

from keras_flexpredict.utils import keras_internals
from keras_flexpredict.utils.backend_adapter import replica_context
from keras_flexpredict.utils.backend_adapter import scale_loss_for_replicas

__all__ = ["fold_seed", "replica_context", "replica_seed", "scale_loss_for_replicas"]

# A Weyl increment (2^32 / golden ratio): replica r adds r * _GOLDEN (mod 2^32) to the
# seed half of the [seed, counter] pair, so replicas get far-apart seeds. On torch, whose
# generator is seeded with seed + counter, replica streams could only meet after more
# than 10^9 steps (two replicas) or ~2^32 / (golden-ratio spacing) steps (many replicas).
_GOLDEN = 0x9E3779B1


# The backend entry points `fold_seed` uses, through public `keras.ops` for the current
# backend (a `DynamicBackend` of another backend has the same ones).
_KERAS_OPS = types.SimpleNamespace(convert_to_tensor=ops.convert_to_tensor, cast=ops.cast, numpy=ops)


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
    b = backend if backend is not None else _KERAS_OPS
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


class _ReplicaSeedGenerator(keras.random.SeedGenerator):
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
        self._initial_seed = keras_internals.seed_generator_initial_seed(generator)

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
