"""JAX on 8 host devices (XLA_FLAGS set by the test): one device vs DataParallel vs
ModelParallel on the same global batch; shardings; a checkpoint written under
ModelParallel reloaded under DataParallel and on one device.

Usage: python _jax_devices_worker.py OUT_DIR
"""

import os
import sys

import _common as c
import jax
import keras
import numpy as np

from keras_flexpredict import distribution as kd

out = sys.argv[1]
if jax.device_count() != 8:
    c.fail(f"expected 8 host devices, got {jax.device_count()}")
x = c.images()


def train(spec):
    context = kd.configure(spec)
    with context.scope():
        model = c.make_model(sigma=0.25)
    record = c.StepLosses()
    model.fit(
        x, batch_size=c.GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0,
        callbacks=[record.callback, c.ema_callback()],
    )
    return model, record.losses


def replica_spread(model):
    """Largest difference between copies of the same slice of a variable on different
    devices (replicas), over every variable: 0 when replicas are identical."""
    spread = 0.0
    for v in model.weights:
        groups = {}
        for shard in v.value.addressable_shards:
            groups.setdefault(str(shard.index), []).append(np.asarray(shard.data))
        for copies in groups.values():
            for other in copies[1:]:
                spread = max(spread, float(np.max(np.abs(other.astype(np.float64) - copies[0]))))
    return spread


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a)


results = {}
reference, results["reference_losses"] = train("none")
ref_weights = c.weights_dict(reference)

data_parallel, results["data_parallel_losses"] = train("data_parallel")
results["data_parallel_mesh"] = dict(data_parallel.encoder.blocks[0].qkv.kernel.value.sharding.mesh.shape)
results["data_parallel_replica_spread"] = replica_spread(data_parallel)
results["data_parallel_teacher_devices"] = len(data_parallel.target_encoder.weights[0].value.addressable_shards)
results["data_parallel_weight_diff"] = max_diff(c.weights_dict(data_parallel), ref_weights)
results["data_parallel_steps"] = [
    int(data_parallel.train_steps.numpy()), int(data_parallel.optimizer.iterations.numpy())
]

model_parallel, results["model_parallel_losses"] = train("model_parallel:2x4")
results["model_parallel_mesh"] = dict(model_parallel.encoder.blocks[0].qkv.kernel.value.sharding.mesh.shape)
results["model_parallel_specs"] = {
    v.path: [None if a is None else str(a) for a in v.value.sharding.spec] + [None] * (len(v.shape) - len(v.value.sharding.spec))
    for v in model_parallel.weights
}
results["model_parallel_replica_spread"] = replica_spread(model_parallel)
mp_weights = c.weights_dict(model_parallel)
results["model_parallel_weight_diff"] = max_diff(mp_weights, ref_weights)

# A checkpoint written under ModelParallel loads under DataParallel and on one device.
path = os.path.join(out, "model_parallel.keras")
kd.save_model(model_parallel, path)
encoder_path = os.path.join(out, "encoder.keras")
model_parallel.export_target_encoder(encoder_path)
for spec in ("data_parallel", "none"):
    context = kd.configure(spec)
    with context.scope():
        loaded = keras.saving.load_model(path)
    results[f"reload_{spec}_diff"] = max_diff(c.weights_dict(loaded), mp_weights)
    results[f"reload_{spec}_devices"] = len(loaded.encoder.blocks[0].qkv.kernel.value.sharding.device_set)
    results[f"reload_{spec}_spec"] = [
        None if a is None else str(a) for a in getattr(loaded.encoder.blocks[0].qkv.kernel.value.sharding, "spec", ())
    ]
encoder = keras.saving.load_model(encoder_path)
results["encoder_reload_diff"] = max(
    float(np.max(np.abs(c.to_numpy(a) - c.to_numpy(b)))) for a, b in zip(encoder.weights, model_parallel.target_encoder.weights)
)
c.write_json(os.path.join(out, "results.json"), results)
print("worker done", flush=True)
