"""Parity fixtures of the official I-JEPA / StoP code, stored small.

A fixture `.npz` holds the inputs, the masks and the outputs that the official
PyTorch code computed (see `benchmarks/official_parity_fixtures.py`), the names and
shapes of the official state dicts, and their fixed positional tables. The other
weights are not stored: they are a pure function of (seed, part, key index, name,
shape), `fixture_value`, which the generator loaded into the official model and
`fixture_state_dicts` rebuilds here, so a test can write the official `.pth.tar` again.
"""

import numpy as np

PARTS = ("encoder", "predictor", "target_encoder")
FIXED = ("pos_embed", "predictor_pos_embed")


def fixture_value(seed, part_index, index, name, shape):
    """The weight `name` of a fixture: N(0, 0.05) kernels and mask token, biases
    N(0, 0.1), LayerNorm scales 1 + N(0, 0.1), so that every parameter matters."""
    rng = np.random.default_rng([int(seed), int(part_index), int(index)])
    x = rng.standard_normal(tuple(shape))
    if name.endswith("bias"):
        x = 0.1 * x
    elif "norm" in name:
        x = 1.0 + 0.1 * x
    else:
        x = 0.05 * x
    return x.astype(np.float32)


def fixture_state_dicts(fixture):
    """`{part: {key: float32 array}}` of a fixture (an `np.load`ed `.npz`)."""
    seed = int(fixture["seed"])
    states = {}
    for p, part in enumerate(PARTS):
        names = [str(n) for n in fixture[f"{part}_names"]]
        shapes = [tuple(int(s) for s in str(t).split(",") if s) for t in fixture[f"{part}_shapes"]]
        state = {}
        for i, (name, shape) in enumerate(zip(names, shapes)):
            if name in FIXED:
                state[name] = np.asarray(fixture[f"{part}/{name}"], np.float32)
            else:
                state[name] = fixture_value(seed, p, i, name, shape)
        states[part] = state
    return states


def write_official_checkpoint(path, states, prefix="module."):
    """Writes `{part: {key: array}}` as an official `.pth.tar` (needs torch)."""
    import torch

    checkpoint = {
        part: {prefix + k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
        for part, state in states.items()
    }
    checkpoint.update(epoch=1, opt=None, scaler=None, loss=0.0, batch_size=2, world_size=1, lr=0.0)
    torch.save(checkpoint, path)


def official_masks(fixture):
    """The fixture's masks in the layout of `JEPAPredictor` (all slots real)."""
    context = np.asarray(fixture["masks_enc"], np.int32)
    targets = np.transpose(np.asarray(fixture["masks_pred"], np.int32), (1, 0, 2))  # (B, M, Kt)
    return {
        "context_indices": context,
        "context_mask": np.ones(context.shape, bool),
        "target_indices": targets,
        "target_mask": np.ones(targets.shape, bool),
    }


def block_major(predictions):
    """`(B, M, Kt, D)` predictions in the official `(M * B, Kt, D)` order."""
    predictions = np.asarray(predictions)
    b, m = predictions.shape[:2]
    return np.transpose(predictions, (1, 0, 2, 3)).reshape(m * b, *predictions.shape[2:])
