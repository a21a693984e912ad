"""Test helpers: a Python port of the reference schedules, and a jit wrapper.

`WarmupCosineSchedule` and `CosineWDSchedule` as in facebookresearch/ijepa
`src/utils/schedulers.py`, with StoP's `fix_*_thres` / `'const'` extension
(amirbar/StoP `src/utils.py`), without the torch optimiser. Each `step()`
advances the counter first and returns the value the *coming* optimiser
update uses, exactly like the reference train loop, which calls
`scheduler.step()` before `optimizer.step()`.
"""

import math

import keras
import numpy as np


class ReferenceWarmupCosineSchedule:
    def __init__(self, warmup_steps, start_lr, ref_lr, T_max, final_lr=0.0, fix_lr_thres=-1):
        self.start_lr = start_lr
        self.ref_lr = ref_lr
        self.final_lr = final_lr
        self.warmup_steps = warmup_steps
        self.T_max = T_max - warmup_steps
        self._step = 0.0
        self.fix_lr_thres = fix_lr_thres

    def step(self):
        self._step += 1
        if self._step < self.warmup_steps:
            progress = float(self._step) / float(max(1, self.warmup_steps))
            new_lr = self.start_lr + progress * (self.ref_lr - self.start_lr)
        elif self._step < self.fix_lr_thres or self.fix_lr_thres < 0:
            progress = float(self._step - self.warmup_steps) / float(max(1, self.T_max))
            new_lr = max(
                self.final_lr,
                self.final_lr + (self.ref_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)),
            )
        else:  # StoP, fix_strategy='const'
            progress = float(self.fix_lr_thres - self.warmup_steps) / float(max(1, self.T_max))
            new_lr = max(
                self.final_lr,
                self.final_lr + (self.ref_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)),
            )
        return new_lr


class ReferenceCosineWDSchedule:
    def __init__(self, ref_wd, T_max, final_wd=0.0, fix_wd_thres=-1):
        self.ref_wd = ref_wd
        self.final_wd = final_wd
        self.T_max = T_max
        self._step = 0.0
        self.fix_wd_thres = fix_wd_thres

    def step(self):
        self._step += 1
        if self._step < self.fix_wd_thres or self.fix_wd_thres < 0:
            progress = self._step / self.T_max
        else:  # StoP, fix_strategy='const'
            progress = float(self.fix_wd_thres) / self.T_max
        new_wd = self.final_wd + (self.ref_wd - self.final_wd) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.final_wd <= self.ref_wd:
            new_wd = max(self.final_wd, new_wd)
        else:
            new_wd = min(self.final_wd, new_wd)
        return new_wd


def reference_values(scheduler, num_steps):
    """Values of the first `num_steps` updates (index = Keras step)."""
    return np.array([scheduler.step() for _ in range(num_steps)], dtype=np.float64)


def jit_compile(fn):
    """`fn` compiled by the current backend's compiler (XLA for JAX and TF,
    dynamo for torch), taking and returning backend tensors."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    import torch

    return torch.compile(fn, backend="eager", fullgraph=True)
