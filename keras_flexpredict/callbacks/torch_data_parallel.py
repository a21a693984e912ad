"""Data-parallel `model.fit` on the torch backend across `torch.distributed` processes."""

import keras

from keras_flexpredict.utils import backend_adapter


def _dist():
    import torch.distributed as dist

    return dist


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class TorchDataParallel(keras.callbacks.Callback):
    """Makes `model.fit` data-parallel over `torch.distributed` processes (torchrun).

    Keras's torch trainer computes the gradients of each process's local batch and
    applies them with no communication; wrapping the Keras model in
    `torch.nn.parallel.DistributedDataParallel` does not help, since `fit` calls the
    Keras model, not the wrapper. Replicas then drift apart silently. This callback
    makes `fit` data-parallel the way DDP does:

    - at the start of `fit`, every model and optimiser variable (weights, EMA teacher,
      step counters, seed-generator states, optimiser slots) is broadcast from rank 0;
    - before every optimiser update, the gradients are averaged over the processes
      (`all_reduce` in flat buckets, divided by the world size), so every replica applies
      the gradient of the global batch and stays identical;
    - at the end of every epoch (`verify_replicas=True`) a float64 checksum of every
      variable is compared across processes, and a `RuntimeError` is raised if the
      replicas differ.

    The average equals the global-batch gradient when every process has the same local
    batch size (the multi-block masks give every image the same number of target
    tokens, so the local mean losses weigh equally). `FlexPredict.fit` adds this
    callback by itself when a process group with more than one process is initialised.
    Each process must see its own shard of the data
    (`keras_flexpredict.distribution.shard_global_batches`) and run the same number of
    steps.

    Args:
        bucket_mb: float. Size of the flat buffers gradients are all-reduced in.
            Defaults to `25.0` (DDP's default).
        verify_replicas: bool. Check at every epoch end that the replicas are identical.
            Defaults to `True`.
        tolerance: float. Relative tolerance of that check. Defaults to `1e-6`.

    Example:
    >>> callback = TorchDataParallel(bucket_mb=25.0)
    >>> # torchrun --nproc_per_node=2 train.py, with in train.py:
    >>> # torch.distributed.init_process_group("gloo")  # or kfp.distribution.configure("ddp")
    >>> # model.fit(local_dataset, callbacks=[callback])
    """

    def __init__(self, bucket_mb=25.0, verify_replicas=True, tolerance=1e-6):
        super().__init__()
        if not float(bucket_mb) > 0:
            raise ValueError(f"`bucket_mb` must be positive. Received: bucket_mb={bucket_mb}")
        if not float(tolerance) >= 0:
            raise ValueError(f"`tolerance` must be >= 0. Received: tolerance={tolerance}")
        self.bucket_mb = float(bucket_mb)
        self.verify_replicas = bool(verify_replicas)
        self.tolerance = float(tolerance)
        self._optimizer = None
        self._checked_structure = False

    # ----------------------------------------------------------- lifecycle
    def on_train_begin(self, logs=None):
        if not backend_adapter.runs_on("torch"):
            raise ValueError(
                "TorchDataParallel is for the torch backend; JAX and TensorFlow distribute "
                f"through keras.distribution / tf.distribute. Received: backend={keras.backend.backend()!r}"
            )
        dist = _dist()
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "TorchDataParallel needs an initialised torch.distributed process group "
                "(launch with torchrun and call keras_flexpredict.distribution.configure('ddp')). "
                "Received: torch.distributed.is_initialized()=False"
            )
        if dist.get_world_size() == 1:
            return
        optimizer = self.model.optimizer
        if optimizer is None:
            raise ValueError("TorchDataParallel needs a compiled model. Received: model.optimizer=None")
        self._broadcast(self._variables())
        self._wrap(optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if self._optimizer is not None and self.verify_replicas:
            self.check_replicas_identical()

    def on_train_end(self, logs=None):
        self._unwrap()

    # ------------------------------------------------------------- helpers
    def _variables(self):
        seen, out = set(), []
        for v in list(self.model.variables) + list(self.model.optimizer.variables):
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @staticmethod
    def _broadcast(variables):
        import torch

        dist = _dist()
        with torch.no_grad():
            for v in variables:
                dist.broadcast(v.value.data, src=0)

    def _wrap(self, optimizer):
        if getattr(optimizer.apply, "_kfp_all_reduce", False):
            self._optimizer = optimizer
            return
        original = optimizer.apply

        def apply(grads, trainable_variables=None):
            return original(self.all_reduce_gradients(grads), trainable_variables)

        apply._kfp_all_reduce = True
        optimizer.apply = apply  # an instance attribute, removed again in on_train_end
        self._optimizer = optimizer

    def _unwrap(self):
        if self._optimizer is not None and "apply" in vars(self._optimizer):
            del self._optimizer.apply
        self._optimizer = None

    def all_reduce_gradients(self, grads):
        """The mean of `grads` (a list of torch tensors or None) over all processes."""
        import torch

        dist = _dist()
        world_size = dist.get_world_size()
        present = [i for i, g in enumerate(grads) if g is not None]
        if not present:
            return list(grads)
        if not self._checked_structure:
            # Every process must all-reduce the same tensors in the same order, or the
            # collectives pair up wrongly / hang: check the gradient structure once.
            count = torch.tensor([len(present)], dtype=torch.int64, device=grads[present[0]].device)
            low, high = count.clone(), count.clone()
            dist.all_reduce(low, op=dist.ReduceOp.MIN)
            dist.all_reduce(high, op=dist.ReduceOp.MAX)
            if int(low) != int(high):
                raise RuntimeError(
                    "Processes have different numbers of gradients "
                    f"({int(low)} to {int(high)}): the data-parallel replicas diverged in structure."
                )
            self._checked_structure = True
        out = list(grads)
        cap = int(self.bucket_mb * (1 << 20))
        buckets, current, size, key = [], [], 0, None
        for i in present:
            g = grads[i]
            k = (g.dtype, g.device)
            nbytes = g.numel() * g.element_size()
            if current and (k != key or size + nbytes > cap):
                buckets.append(current)
                current, size = [], 0
            current.append(i)
            size += nbytes
            key = k
        if current:
            buckets.append(current)
        with torch.no_grad():
            for bucket in buckets:
                flat = torch.cat([grads[i].reshape(-1) for i in bucket])
                dist.all_reduce(flat)
                flat.div_(world_size)
                offset = 0
                for i in bucket:
                    n = grads[i].numel()
                    out[i] = flat[offset : offset + n].view_as(grads[i])
                    offset += n
        return out

    def check_replicas_identical(self):
        """Raises `RuntimeError` if any variable differs across the processes."""
        import torch

        dist = _dist()
        variables = [v for v in self.model.variables if "float" in str(v.dtype)]
        with torch.no_grad():
            local = torch.stack([v.value.detach().double().sum() for v in variables]).cpu()
        gathered = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
        if dist.get_backend() == "nccl":
            local = local.cuda()
            gathered = [g.cuda() for g in gathered]
        dist.all_gather(gathered, local)
        reference = gathered[0].cpu()
        for rank, other in enumerate(gathered):
            diff = (other.cpu() - reference).abs()
            bad = diff > self.tolerance * (1.0 + reference.abs())
            if bool(bad.any()):
                name = variables[int(bad.nonzero()[0, 0])].path
                raise RuntimeError(
                    f"Data-parallel replicas differ: rank {rank} disagrees with rank 0 on "
                    f"{int(bad.sum())} variables (first: {name}). Gradients were not averaged."
                )

    def get_config(self):
        return {"bucket_mb": self.bucket_mb, "verify_replicas": self.verify_replicas, "tolerance": self.tolerance}
