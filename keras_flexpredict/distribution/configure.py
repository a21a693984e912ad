"""`configure(spec)`: one string picks the backend's own distribution engine."""

import atexit
import os
import re

import keras

from keras_flexpredict.distribution import saving
from keras_flexpredict.distribution.distribution_context import DistributionContext
from keras_flexpredict.distribution.layout_map import vit_layout_map

# spec name -> backends that run it
SPECS = {
    "none": ("jax", "tensorflow", "torch"),
    "data_parallel": ("jax", "tensorflow", "torch"),
    "model_parallel": ("jax",),
    "mirrored": ("tensorflow",),
    "multi_worker_mirrored": ("tensorflow",),
    "tpu": ("jax", "tensorflow"),
    "ddp": ("torch",),
}
_JAX_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")
_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def configure(spec="none"):
    """Sets up multi-device / multi-host training with the backend's own engine.

    Call it first thing in the training script, before any model, dataset or backend
    computation exists (JAX and torch initialise their multi-process runtimes here, TF
    multi-worker strategies must be created before other TF ops). Specs:

    | spec | backend | what it sets up |
    |---|---|---|
    | `"none"` | all | one device |
    | `"data_parallel"` | JAX | `keras.distribution.DataParallel` over every device of every process |
    | | TF | `MirroredStrategy` (local GPUs, else logical CPUs), or `MultiWorkerMirroredStrategy` when `TF_CONFIG` names several workers |
    | | torch | as `"ddp"` |
    | `"model_parallel:DxM"` (or `:M`) | JAX | `ModelParallel` on a `(batch=D, model=M)` mesh with `vit_layout_map` (ViT-H/G) |
    | `"mirrored"` | TF | `MirroredStrategy` |
    | `"multi_worker_mirrored"` | TF | `MultiWorkerMirroredStrategy` (cluster from `TF_CONFIG`) |
    | `"tpu"` | TF | `TPUStrategy` (TPU from `TPU_NAME`, default `"local"`) |
    | | JAX | `DataParallel` over the TPU cores of the slice |
    | `"ddp"` | torch | a `torch.distributed` process group from torchrun's environment (NCCL on GPUs, else gloo); `FlexPredict.fit` then averages gradients with `TorchDataParallel` |

    JAX multi-process: when `KERAS_DISTRIBUTION_JOB_ADDRESSES` /
    `KERAS_DISTRIBUTION_NUM_PROCESSES` / `KERAS_DISTRIBUTION_PROCESS_ID` are set (or
    `"tpu"` runs on a multi-host slice), `keras.distribution.initialize()` connects the
    processes first; every process then runs the same script.

    Args:
        spec: str. One of the specs above. Defaults to `"none"`.

    Returns:
        A `DistributionContext`.

    Example:
    >>> context = configure("none")
    >>> context.num_replicas
    1
    """
    if not isinstance(spec, str):
        raise ValueError(f"`spec` must be a string such as 'data_parallel'. Received: spec={spec!r}")
    normalised = spec.strip().lower()
    name, _, argument = normalised.partition(":")
    if name not in SPECS:
        raise ValueError(
            f"Unknown distribution. Choose one of {sorted(SPECS)} (model_parallel as "
            f"'model_parallel:DxM'). Received: spec={spec!r}"
        )
    if argument and name != "model_parallel":
        raise ValueError(f"Only 'model_parallel' takes a ':' argument. Received: spec={spec!r}")
    backend = keras.backend.backend()
    if backend not in SPECS[name]:
        usable = sorted(n for n, backends in SPECS.items() if backend in backends)
        raise ValueError(
            f"'{name}' runs on the {' / '.join(SPECS[name])} backend; with KERAS_BACKEND={backend} "
            f"use one of {usable}. Received: spec={spec!r}"
        )
    if backend == "jax":
        return _configure_jax(normalised, name, argument, spec)
    if backend == "tensorflow":
        return _configure_tensorflow(normalised, name)
    return _configure_torch(normalised, name)


# ------------------------------------------------------------------------ JAX
def _parse_mesh(argument, num_devices, spec):
    match = re.fullmatch(r"(?:(\d+)x)?(\d+)", argument)
    if not match:
        raise ValueError(
            f"'model_parallel' needs a mesh 'model_parallel:DxM' (data x model) or "
            f"'model_parallel:M'. Received: spec={spec!r}"
        )
    model = int(match.group(2))
    data = int(match.group(1)) if match.group(1) else (num_devices // model if model else 0)
    if model < 1 or data < 1 or data * model != num_devices:
        raise ValueError(
            f"The mesh must use all {num_devices} devices (data x model = {num_devices}). "
            f"Received: spec={spec!r}"
        )
    return data, model


def _multi_host_tpu():
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def _initialize_jax(name):
    if not (any(k in os.environ for k in _JAX_ENV) or (name == "tpu" and _multi_host_tpu())):
        return
    import jax

    is_initialized = getattr(jax.distributed, "is_initialized", None)
    if is_initialized is not None and is_initialized():
        return  # a second `configure` in the same run (e.g. another layout)
    keras.distribution.initialize()


def _configure_jax(normalised, name, argument, spec):
    if name != "none":
        _initialize_jax(name)
    import jax

    processes = dict(num_processes=jax.process_count(), process_index=jax.process_index())
    if name == "none":
        keras.distribution.set_distribution(None)
        return DistributionContext(normalised, "jax", **processes)
    if name == "tpu" and jax.default_backend() != "tpu":
        raise ValueError(
            f"'tpu' found no TPU (JAX runs on {jax.default_backend()}); use 'data_parallel'. "
            f"Received: spec={spec!r}"
        )
    devices = keras.distribution.list_devices()
    if name in ("data_parallel", "tpu"):
        distribution = keras.distribution.DataParallel(devices=devices)
        replicas = len(devices)
    else:
        data, model = _parse_mesh(argument, len(devices), spec)
        mesh = keras.distribution.DeviceMesh((data, model), ("batch", "model"), devices=devices)
        distribution = keras.distribution.ModelParallel(layout_map=vit_layout_map(mesh), batch_dim_name="batch")
        replicas = data
    keras.distribution.set_distribution(distribution)
    return DistributionContext(
        normalised, "jax", num_replicas=replicas, distribution=distribution, **processes
    )


# ----------------------------------------------------------------- TensorFlow
def _tf_config_workers():
    cluster = saving.tf_config().get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _configure_tensorflow(normalised, name):
    import tensorflow as tf

    if name == "none":
        return DistributionContext(normalised, "tensorflow")
    if name == "data_parallel":
        name = "multi_worker_mirrored" if _tf_config_workers() > 1 else "mirrored"
    num_processes, process_index = 1, 0
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
    elif name == "multi_worker_mirrored":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        num_processes = max(_tf_config_workers(), 1)
        process_index = saving.process_index()
    else:  # tpu
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", "local"))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    return DistributionContext(
        normalised,
        "tensorflow",
        num_replicas=strategy.num_replicas_in_sync,
        num_processes=num_processes,
        process_index=process_index,
        strategy=strategy,
    )


# ---------------------------------------------------------------------- torch
def _destroy_process_group_at_exit():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _configure_torch(normalised, name):
    if name == "none":
        return DistributionContext(normalised, "torch")
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        missing = [k for k in _TORCHRUN_ENV if k not in os.environ]
        if missing:
            raise ValueError(
                "'ddp' runs one process per device launched by torchrun "
                "(torchrun --nproc_per_node=N train.py ...), which sets RANK, WORLD_SIZE, "
                f"MASTER_ADDR and MASTER_PORT. Received: missing environment variables {missing}"
            )
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        # The group made here is torn down here: a gloo group left to the interpreter's
        # shutdown can abort the process (SIGABRT) when a peer has already exited.
        atexit.register(_destroy_process_group_at_exit)
    world_size, rank = dist.get_world_size(), dist.get_rank()
    return DistributionContext(
        normalised, "torch", num_replicas=world_size, num_processes=world_size, process_index=rank
    )
