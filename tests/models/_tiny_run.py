"""A fixed tiny training run whose numbers lock the training path's behaviour.

`python tests/models/_tiny_run.py` (with KERAS_BACKEND set) prints the run's numbers;
`--write` stores them in fixtures/tiny_run_<backend>.json. They were recorded before the
issue 13 refactor; `behaviour_lock_test.py` checks that the refactored code gives the same.
"""

import json
import os
import sys

import keras
import numpy as np

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def tiny_run(steps=6):
    """Trains the tiny StoP model for `steps` steps of batch 8 with the library defaults
    (JEPA AdamW, EMA teacher) and returns every step's loss and weight checksums."""
    from keras_flexpredict.testing.test_case import to_numpy
    from keras_flexpredict.testing.tiny_models import structured_images
    from keras_flexpredict.testing.tiny_models import tiny_flexpredict

    keras.utils.set_random_seed(0)
    model = tiny_flexpredict()
    model.compile()
    losses = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))

    model.fit(structured_images(8 * steps), batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[Record()])

    def checksum(layer):
        return float(sum(np.abs(to_numpy(w)).astype(np.float64).sum() for w in layer.weights))

    return {
        "backend": keras.backend.backend(),
        "losses": losses,
        "encoder_abs_sum": checksum(model.encoder),
        "target_encoder_abs_sum": checksum(model.target_encoder),
        "predictor_abs_sum": checksum(model.predictor),
    }


def fixture_path(backend):
    return os.path.join(FIXTURE_DIR, f"tiny_run_{backend}.json")


if __name__ == "__main__":
    result = tiny_run()
    print(json.dumps(result, indent=1))
    if "--write" in sys.argv:
        path = fixture_path(result["backend"])
        with open(path + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(path + ".tmp", path)
