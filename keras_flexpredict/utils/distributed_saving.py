"""Saving from distributed runs: gather to the host, write once, atomically.

- JAX multi-process: a variable sharded across processes (`ModelParallel` over hosts)
  has no host copy on any single process and `np.asarray` fails on it; every process
  takes part in an all-gather of such variables, then process 0 writes. Replicated
  variables (`DataParallel`) are read from the local copy, with no communication.
- torch DDP, TF multi-worker: every replica holds the full model; only the chief writes.

Files are written to a temporary name in the target folder and moved into place with
`os.replace`, so a crash never leaves a half-written checkpoint; the other processes
wait at a barrier until the file exists. A `.keras` file holds plain host arrays, so it
loads under any other device layout or process count (load it inside the new
distribution's scope).
"""

import contextlib
import os
import tempfile

import keras
import numpy as np

from keras_flexpredict.utils import backend_adapter
from keras_flexpredict.utils import keras_internals


_jax_process_count = backend_adapter.jax_process_count
_torch_group = backend_adapter.torch_process_group
tf_config = backend_adapter.tf_config
process_index = backend_adapter.process_index


def is_chief():
    """True on the one process that writes checkpoints, logs and exports.

    JAX: process 0. torch: rank 0. TF multi-worker: the `chief` task, or worker 0 when
    the cluster has no chief. True in single-process runs.

    Example:
    >>> is_chief()
    True
    """
    return process_index() == 0


def barrier(name="keras_flexpredict_barrier"):
    """Waits until every training process reaches this point (no-op with one process)."""
    if _jax_process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
        return
    dist = _torch_group()
    if dist is not None:
        dist.barrier()


def _needs_gather(value):
    return not value.is_fully_addressable and not value.is_fully_replicated


def _all_variables(obj):
    seen, variables = set(), []
    groups = [getattr(obj, "variables", [])]
    optimizer = getattr(obj, "optimizer", None)
    if optimizer is not None:
        groups.append(optimizer.variables)
    groups.append(getattr(obj, "metrics_variables", []))
    for group in groups:
        for variable in group:
            if id(variable) not in seen:
                seen.add(id(variable))
                variables.append(variable)
    return variables


@contextlib.contextmanager
def host_state(obj):
    """Within the block, every variable of `obj` (a layer or model, with its optimiser
    and metrics) that is sharded across processes reads as a full host copy, so Keras's
    saving code can write it. Collective under JAX multi-process: every process must
    enter it, with the same model, at the same point. A no-op elsewhere (replicated and
    single-process arrays are readable as they are)."""
    if _jax_process_count() == 1:
        yield
        return
    import jax
    from jax.experimental import multihost_utils

    swapped = []
    try:
        for variable in _all_variables(obj):
            value = variable.value
            if not _needs_gather(value):
                continue
            full = np.asarray(multihost_utils.process_allgather(value, tiled=True))
            # On the host CPU: a full copy of a model that only fits sharded must not
            # land on one accelerator. The swap bypasses `assign` (which would re-shard);
            # the sharded array is put back when the block ends.
            host = jax.device_put(full, jax.local_devices(backend="cpu")[0])
            swapped.append((variable, value))
            keras_internals.swap_variable_value(variable, host)
        yield
    finally:
        for variable, value in swapped:
            keras_internals.swap_variable_value(variable, value)


def _write_atomically(filepath, write):
    directory = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    suffix = ".weights.h5" if str(filepath).endswith(".weights.h5") else os.path.splitext(filepath)[1]
    # `.partial.` names what a killed writer leaves behind (the pretraining CLI
    # removes such files when it starts again).
    fd, tmp = tempfile.mkstemp(prefix=f".partial.{os.path.basename(filepath)}.", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _save(obj, filepath, write, suffixes):
    filepath = os.fspath(filepath)
    if not filepath.endswith(suffixes):
        raise ValueError(f"`filepath` must end in {' or '.join(suffixes)}. Received: filepath={filepath}")
    with host_state(obj):
        if is_chief():
            with _local_only():
                _write_atomically(filepath, write)
    barrier(f"keras_flexpredict_save:{os.path.basename(filepath)}")


@contextlib.contextmanager
def _local_only():
    """No Keras distribution while one process writes: Keras's saving code creates
    throw-away variables (e.g. a reference optimiser), which under a multi-process
    distribution would be global arrays that every process must create together."""
    if _jax_process_count() == 1:
        yield
        return
    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def save_model(model, filepath):
    """Saves `model` (any Keras layer or model) to a `.keras` file from a distributed run.

    Call it on EVERY process (under JAX multi-process it gathers sharded variables
    collectively); process 0 / the chief writes the file atomically, the others wait.
    The file loads under any device layout: `keras.saving.load_model(path)` inside the
    new distribution's scope (or none).

    Args:
        model: a Keras layer or model.
        filepath: str or path ending in `.keras`.

    Example:
    >>> import tempfile, os
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_model(model, path)
    >>> keras.saving.load_model(path).output_shape
    (None, 2)
    """
    # Any layer, not only models (keras_internals_test checks that this still holds).
    _save(model, filepath, lambda path: keras.saving.save_model(model, path), (".keras",))


def save_weights(model, filepath):
    """Saves the weights of `model` to a `.weights.h5` file from a distributed run
    (same rules as `save_model`); reload with `model.load_weights(path)`.

    Args:
        model: a Keras layer or model.
        filepath: str or path ending in `.weights.h5`.
    """
    _save(model, filepath, model.save_weights, (".weights.h5",))
