"""Per-process input sharding with one convention for every backend.

Global batch `k` holds examples `[k G, (k + 1) G)` of the input stream (`G` the global
batch size). With `P` processes, process `p` trains on the contiguous chunk
`[k G + p G / P, k G + (p + 1) G / P)` of it. This is what Keras's JAX
`DataParallel.distribute_dataset` does for `tf.data` (`rebatch` then `shard`) and how
`tf.distribute` splits a global batch over replicas, so a run sees the same global
batches on any process count (and, with the masker's global mask draw, the same masks).
"""

import numbers

import numpy as np


def _check_shards(num_shards, index):
    for name, value, low in (("num_shards", num_shards, 1), ("index", index, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}. Received: {name}={value}")
    if index >= num_shards:
        raise ValueError(f"`index` must be < num_shards={num_shards}. Received: index={index}")


def shard_global_batches(dataset, num_shards, index):
    """Process `index`'s share of a `tf.data` dataset batched at the global batch size.

    Each global batch is cut into `num_shards` contiguous chunks and the process keeps
    chunk `index` (Keras's JAX `DataParallel` does the same to `tf.data` input inside
    `fit`; use this for the torch data-parallel path). Build the dataset identically on
    every process (same files, same shuffle seed), batched at the global batch size
    with `drop_remainder=True`, so that every process runs the same number of steps.

    Args:
        dataset: a batched `tf.data.Dataset` (global batch size known statically).
        num_shards: int. Number of processes.
        index: int. This process's index.

    Returns:
        A `tf.data.Dataset` of local batches of `global_batch_size // num_shards`.

    Example:
    >>> import tensorflow as tf
    >>> ds = tf.data.Dataset.range(8).batch(4, drop_remainder=True)
    >>> [b.tolist() for b in shard_global_batches(ds, 2, 1).as_numpy_iterator()]
    [[2, 3], [6, 7]]
    """
    import tensorflow as tf

    _check_shards(num_shards, index)
    if num_shards == 1:
        return dataset
    sizes = {
        spec.shape[0] for spec in tf.nest.flatten(dataset.element_spec) if spec.shape.rank
    }
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "`dataset` must be batched with a static global batch size "
            "(`dataset.batch(global_batch_size, drop_remainder=True)`). "
            f"Received: element_spec={dataset.element_spec}"
        )
    global_batch_size = sizes.pop()
    if global_batch_size % num_shards:
        raise ValueError(
            f"The global batch size must be divisible by the number of processes "
            f"({num_shards}). Received: global_batch_size={global_batch_size}"
        )
    local = dataset.rebatch(global_batch_size // num_shards)
    return local.shard(num_shards, index)


def local_batch_rows(num_examples, global_batch_size, num_shards, index):
    """Indices of the examples process `index` trains on, in order.

    For in-memory arrays: `model.fit(x[rows], batch_size=global_batch_size // num_shards,
    shuffle=False)` on every process reproduces the global batches of
    `model.fit(x, batch_size=global_batch_size, shuffle=False)` on one process. The
    incomplete last global batch is dropped.

    Args:
        num_examples: int. Number of examples.
        global_batch_size: int. Divisible by `num_shards`.
        num_shards: int. Number of processes.
        index: int. This process's index.

    Returns:
        int64 NumPy array of row indices.

    Example:
    >>> local_batch_rows(8, 4, 2, 1).tolist()
    [2, 3, 6, 7]
    """
    _check_shards(num_shards, index)
    for name, value in (("num_examples", num_examples), ("global_batch_size", global_batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value}")
    if global_batch_size % num_shards:
        raise ValueError(
            f"`global_batch_size` must be divisible by num_shards={num_shards}. "
            f"Received: global_batch_size={global_batch_size}"
        )
    local = global_batch_size // num_shards
    steps = num_examples // global_batch_size
    starts = np.arange(steps, dtype=np.int64) * global_batch_size + index * local
    return (starts[:, None] + np.arange(local, dtype=np.int64)[None, :]).reshape(-1)
