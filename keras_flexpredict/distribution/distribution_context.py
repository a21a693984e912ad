"""What `keras_flexpredict.distribution.configure` set up, and what a training script needs from it."""

import contextlib

from keras_flexpredict.distribution import data as data_lib
from keras_flexpredict.distribution import saving


class DistributionContext:
    """The distribution a training script runs under (returned by `configure`).

    Not a Keras object (it holds live runtime handles), so it is not serialisable.
    A training script uses it the same way on every backend:

    ```python
    dist = kfp.distribution.configure("data_parallel")      # first, before any model
    dataset = dist.distribute_dataset(make_dataset(global_batch_size))
    with dist.scope():
        model = kfp.models.FlexPredict.from_preset(...)
        model.compile(optimizer=...)
    model.fit(dataset, epochs=..., steps_per_epoch=..., callbacks=[...])
    dist.save_model(model, "checkpoint.keras")               # on every process
    ```

    Args:
        spec: str. The normalised spec given to `configure`.
        backend: str. The Keras backend.
        num_replicas: int. Data-parallel replicas (JAX: size of the mesh's batch axis;
            TF: `num_replicas_in_sync`; torch: world size).
        num_processes: int. Training processes (hosts / torchrun ranks / TF workers).
        process_index: int. This process's index.
        strategy: the `tf.distribute.Strategy` (TensorFlow) or None.
        distribution: the `keras.distribution.Distribution` (JAX) or None.

    Example:
    >>> context = DistributionContext("none", "jax")
    >>> context.num_replicas, context.is_chief
    (1, True)
    """

    def __init__(
        self,
        spec,
        backend,
        num_replicas=1,
        num_processes=1,
        process_index=0,
        strategy=None,
        distribution=None,
    ):
        self.spec = spec
        self.backend = backend
        self.num_replicas = int(num_replicas)
        self.num_processes = int(num_processes)
        self.process_index = int(process_index)
        self.strategy = strategy
        self.distribution = distribution

    @property
    def is_chief(self):
        """True on the process that writes checkpoints, logs and exports."""
        return self.process_index == 0

    def scope(self):
        """Create (and compile) the model inside this scope: the TF strategy's scope,
        the Keras JAX distribution's scope, nothing on torch."""
        if self.strategy is not None:
            return self.strategy.scope()
        if self.distribution is not None:
            return self.distribution.scope()
        return contextlib.nullcontext()

    def distribute_dataset(self, dataset):
        """This process's input from a `tf.data` dataset batched at the GLOBAL batch size.

        JAX (Keras shards `tf.data` input per process inside `fit`) and TensorFlow
        (the strategy splits every global batch over replicas and workers) take the
        global dataset as it is; torch DDP keeps this process's contiguous chunk of every
        global batch (`shard_global_batches`).
        """
        if self.backend == "torch" and self.num_processes > 1:
            return data_lib.shard_global_batches(dataset, self.num_processes, self.process_index)
        return dataset

    def save_model(self, model, filepath):
        """`keras_flexpredict.distribution.save_model`: call it on every process."""
        saving.save_model(model, filepath)

    def save_weights(self, model, filepath):
        """`keras_flexpredict.distribution.save_weights`: call it on every process."""
        saving.save_weights(model, filepath)

    def __repr__(self):
        return (
            f"<DistributionContext spec={self.spec!r} backend={self.backend} replicas={self.num_replicas} "
            f"process={self.process_index}/{self.num_processes}>"
        )
