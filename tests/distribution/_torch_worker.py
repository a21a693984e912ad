"""torch: one of 2 gloo processes (torchrun-style environment set by the test), or the
one-process reference with the whole global batch.

Usage: python _torch_worker.py OUT_DIR [--reference]
"""

import atexit
import os
import sys

import _common as c
import keras
import numpy as np

from keras_flexpredict import distribution as kd
from keras_flexpredict.layers import MultiBlockMasker
from keras_flexpredict.layers import StochasticPositionalEmbedding

out = sys.argv[1]
reference = "--reference" in sys.argv
x = c.images()


def probes(model, batch_size):
    """Masks of a fresh masker (seed 7) and StoP noise of a fresh layer (seed 5)."""
    config = dict(model.masker.get_config(), seed=7, name="probe_masker")
    masks = MultiBlockMasker.from_config(config)(batch_size)
    layer = StochasticPositionalEmbedding(sigma=1.0, covariance="isotropic", seed=5)
    psi = np.zeros((2, 3, 8), "float32")
    noise = keras.ops.convert_to_numpy(layer(psi, training=True) - layer.mask_token)
    return {"target_indices": keras.ops.convert_to_numpy(masks["target_indices"]), "noise": noise}


if reference:
    model = c.make_model(sigma=0.0)
    record = c.StepLosses()
    model.fit(x, batch_size=c.GLOBAL_BATCH, shuffle=False, epochs=1, verbose=0,
              callbacks=[record.callback, c.ema_callback()])
    c.save_npz(os.path.join(out, "weights_reference.npz"), c.weights_dict(model))
    c.save_npz(os.path.join(out, "probes_reference.npz"), probes(model, c.GLOBAL_BATCH))
    c.write_json(os.path.join(out, "reference.json"), {"losses": record.losses})
    sys.exit(0)


def _record_group_state_at_exit():
    # Registered before configure(), so it runs after configure's own exit hook.
    import torch.distributed as dist

    c.write_json(os.path.join(out, f"exit_{rank}.json"), {"initialized": dist.is_initialized()})


atexit.register(_record_group_state_at_exit)
context = kd.configure("ddp")
rank = context.process_index
# Rank 1 starts from DIFFERENT weights: the broadcast from rank 0 at the start of fit
# must make the replicas identical.
model = c.make_model(sigma=0.0, seed=0 if rank == 0 else 1)
rows = kd.local_batch_rows(len(x), c.GLOBAL_BATCH, context.num_processes, rank)
record = c.StepLosses()
model.fit(x[rows], batch_size=c.GLOBAL_BATCH // context.num_processes, shuffle=False, epochs=1,
          verbose=0, callbacks=[record.callback, c.ema_callback()])
c.save_npz(os.path.join(out, f"weights_{rank}.npz"), c.weights_dict(model))
c.save_npz(os.path.join(out, f"probes_{rank}.npz"), probes(model, c.GLOBAL_BATCH // context.num_processes))
results = {
    "num_replicas": context.num_replicas,
    "local_losses": record.losses,
    "steps": [int(model.train_steps.numpy()), int(model.optimizer.iterations.numpy())],
}

# The trap, for contrast: Keras's own fit (without TorchDataParallel) never averages
# gradients; after one step the replicas differ and the check notices.
keras.Model.fit(model, x[rows][: c.GLOBAL_BATCH // 2], batch_size=c.GLOBAL_BATCH // 2, epochs=1, verbose=0)
c.save_npz(os.path.join(out, f"weights_plain_{rank}.npz"), c.weights_dict(model))
check = kd.TorchDataParallel()
check.set_model(model)
try:
    check.check_replicas_identical()
    results["drift_detected"] = False
except RuntimeError:
    results["drift_detected"] = True
c.write_json(os.path.join(out, f"done_{rank}.json"), results)
# Neither rank starts tearing the group down (configure's exit hook) while the other
# still communicates.
kd.barrier()
print("worker done", flush=True)
