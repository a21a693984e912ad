"""JAX with two processes on 127.0.0.1 (one CPU device each), or the one-device reference.

Worker (KERAS_DISTRIBUTION_* set by the test): `configure("data_parallel")` connects the
processes; `fit` on a tf.data dataset batched at the global batch size (Keras shards it
per process); saves the checkpoint (process 0 writes); then reloads it under
`ModelParallel` on a (1, 2) mesh, so the block kernels are sharded ACROSS the processes,
and saves / exports again (gathered to the host).

Reference (`--reference`): the same training on one device of one process; then waits
for the workers' files and loads them on one device.

Usage: python _jax_processes_worker.py OUT_DIR [--reference]
"""

import os
import sys
import time

import _common as c
import numpy as np

out = sys.argv[1]
reference = "--reference" in sys.argv

import keras  # noqa: E402

from keras_flexpredict import distribution as kd  # noqa: E402

x = c.images()


def host_weights(model):
    return {k: v.astype(np.float64) for k, v in c.weights_dict(model).items()}


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


if reference:
    model = c.make_model()
    record = c.StepLosses()
    model.fit(x, batch_size=c.GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0,
              callbacks=[record.callback, c.ema_callback()])
    trained = host_weights(model)
    done = os.path.join(out, "done_0.json")
    deadline = time.time() + 400
    while not os.path.exists(done):
        if time.time() > deadline:
            c.fail("timed out waiting for the workers")
        time.sleep(0.5)
    dp = keras.saving.load_model(os.path.join(out, "data_parallel.keras"))
    mp = keras.saving.load_model(os.path.join(out, "model_parallel.keras"))
    encoder = keras.saving.load_model(os.path.join(out, "encoder.keras"))
    dp_weights = host_weights(dp)
    c.write_json(os.path.join(out, "reference.json"), {
        "losses": record.losses,
        "devices": [len(v.value.sharding.device_set) for v in dp.weights[:3]],
        "checkpoint_vs_reference": max_diff(dp_weights, trained),
        "model_parallel_checkpoint_vs_checkpoint": max_diff(host_weights(mp), dp_weights),
        "encoder_vs_checkpoint": max(
            float(np.max(np.abs(c.to_numpy(a) - c.to_numpy(b))))
            for a, b in zip(encoder.weights, dp.target_encoder.weights)
        ),
        "steps": [int(dp.train_steps.numpy()), int(dp.ema_updates.numpy())],
    })
    sys.exit(0)

context = kd.configure("data_parallel")
data_parallel_replicas = context.num_replicas
import jax  # noqa: E402
import tensorflow as tf  # noqa: E402

if jax.process_count() != 2 or jax.device_count() != 2:
    c.fail(f"expected 2 processes x 1 device, got {jax.process_count()} x {jax.local_device_count()}")
rank = jax.process_index()
with context.scope():
    model = c.make_model()
# The global pipeline; Keras's DataParallel keeps this process's half of every batch.
dataset = tf.data.Dataset.from_tensor_slices(x).batch(c.GLOBAL_BATCH, drop_remainder=True)
record = c.StepLosses()
model.fit(dataset, epochs=1, verbose=0, callbacks=[record.callback, c.ema_callback()])
c.save_npz(os.path.join(out, f"weights_{rank}.npz"), c.weights_dict(model))
kd.save_model(model, os.path.join(out, "data_parallel.keras"))

# Another layout: the checkpoint loads with its block kernels sharded across processes.
context = kd.configure("model_parallel:1x2")
with context.scope():
    sharded = keras.saving.load_model(os.path.join(out, "data_parallel.keras"))
kernel = sharded.encoder.blocks[0].qkv.kernel.value
spec = [None if a is None else str(a) for a in kernel.sharding.spec]
local_shape = list(kernel.addressable_shards[0].data.shape)
fully_addressable = bool(kernel.is_fully_addressable)
# With optimiser slots, sharded like their variables: saving must gather those too.
sharded.compile()
sharded.optimizer.build(sharded.trainable_variables)
optimizer_sharded = any(not v.value.is_fully_addressable for v in sharded.optimizer.variables)
kd.save_model(sharded, os.path.join(out, "model_parallel.keras"))
sharded.export_target_encoder(os.path.join(out, "encoder.keras"))
c.write_json(os.path.join(out, f"done_{rank}.json"), {
    "losses": record.losses,
    "num_replicas": data_parallel_replicas,
    "steps": [int(model.train_steps.numpy()), int(model.optimizer.iterations.numpy())],
    "sharded_spec": spec,
    "sharded_local_shape": local_shape,
    "sharded_fully_addressable": fully_addressable,
    "optimizer_sharded": optimizer_sharded,
    "is_chief": kd.is_chief(),
})
print("worker done", flush=True)
