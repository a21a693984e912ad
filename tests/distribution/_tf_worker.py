"""TensorFlow MirroredStrategy over 2 logical CPUs vs no strategy, on the same global
batches; per-replica masks and StoP noise.

Usage: python _tf_worker.py OUT_DIR
"""

import contextlib
import os
import sys

import tensorflow as tf

# Before anything initialises TF's devices.
_cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import _common as c  # noqa: E402
import numpy as np  # noqa: E402

from keras_flexpredict import distribution as kd  # noqa: E402
from keras_flexpredict.layers import MultiBlockMasker  # noqa: E402
from keras_flexpredict.layers import StochasticPositionalEmbedding  # noqa: E402

out = sys.argv[1]
x = c.images()
dataset = tf.data.Dataset.from_tensor_slices(x).batch(c.GLOBAL_BATCH, drop_remainder=True)


def train(spec):
    context = kd.configure(spec)
    with context.scope():
        # sigma=0: the comparison is exact (see the test's docstring).
        model = c.make_model(sigma=0.0)
    record = c.StepLosses()
    model.fit(dataset, epochs=1, verbose=0, callbacks=[record.callback, c.ema_callback()])
    return context, model, record.losses


def replica_spread(variables):
    spread = 0.0
    for v in variables:
        copies = [t.numpy() for t in v.value.values]
        spread = max(spread, max(float(np.max(np.abs(a - copies[0]))) for a in copies))
    return spread


results = {}
_, reference, results["reference_losses"] = train("none")
context, mirrored, results["mirrored_losses"] = train("mirrored")
strategy = context.strategy
results["num_replicas"] = context.num_replicas
ref_weights, mir_weights = c.weights_dict(reference), c.weights_dict(mirrored)
results["weight_diff"] = max(float(np.max(np.abs(mir_weights[k] - ref_weights[k]))) for k in ref_weights)
results["variable_class"] = type(mirrored.target_encoder.weights[0].value).__name__
results["teacher_replica_spread"] = replica_spread(mirrored.target_encoder.weights)
results["student_replica_spread"] = replica_spread(mirrored.encoder.weights)
results["steps"] = [int(mirrored.train_steps.numpy()), int(mirrored.optimizer.iterations.numpy())]

# Masks: each replica keeps its rows of one global draw from the shared seed state.
masker_config = mirrored.masker.get_config()
masker_config.update(seed=7, name="masker_under_strategy")
with strategy.scope():
    masker = MultiBlockMasker.from_config(masker_config)
local = strategy.experimental_local_results(strategy.run(lambda: masker(4)))
single = MultiBlockMasker.from_config(dict(masker_config, name="masker_single"))(8)
results["masks_are_rows_of_global_draw"] = all(
    bool(np.array_equal(np.concatenate([np.asarray(m[k]) for m in local]), np.asarray(single[k])))
    for k in single
)
results["masks_differ_across_replicas"] = not np.array_equal(
    np.asarray(local[0]["target_indices"]), np.asarray(local[1]["target_indices"])
)


# StoP noise: folded with the replica id; replica 0 draws what one device draws.
def stop_noise(distributed):
    psi = np.zeros((2, 3, 8), "float32")
    with strategy.scope() if distributed else contextlib.nullcontext():
        layer = StochasticPositionalEmbedding(sigma=1.0, covariance="isotropic", seed=5)
        layer.build(psi.shape)

    def draw():
        return layer(psi, training=True) - layer.mask_token

    if distributed:
        return [np.asarray(t) for t in strategy.experimental_local_results(strategy.run(draw))]
    return [np.asarray(draw())]


first, again, one_device = stop_noise(True), stop_noise(True), stop_noise(False)
results["noise_differs_across_replicas"] = float(np.max(np.abs(first[0] - first[1]))) > 1e-3
results["noise_reproducible"] = all(bool(np.allclose(a, b, atol=1e-6)) for a, b in zip(first, again))
results["noise_replica0_equals_one_device"] = bool(np.allclose(first[0], one_device[0], atol=1e-6))
c.write_json(os.path.join(out, "results.json"), results)
print("worker done", flush=True)
