"""Saving a layer's `SeedGenerator` state with its weights.

Keras does not save `SeedGenerator` states (they are not `KerasSaveable`), so a run
restored from a checkpoint would redraw the masks and noise of the first run. Layers
that own a `self.seed_generator` call these from `save_own_variables` /
`load_own_variables`, so `.keras` files, `save_weights` and `BackupAndRestore` carry the
random state and a resumed run continues exactly.
"""

SEED_STATE_KEY = "seed_generator_state"


def save_seed_state(layer, store):
    store[SEED_STATE_KEY] = layer.seed_generator.state


def load_seed_state(layer, store):
    """Restores the seed state if `store` has one; returns the rest of `store` as a
    dict for `Layer.load_own_variables`."""
    keys = list(store.keys())
    if SEED_STATE_KEY in keys:
        layer.seed_generator.state.assign(store[SEED_STATE_KEY])
    return {k: store[k] for k in keys if k != SEED_STATE_KEY}
