"""Keras-hub style preset folders (`config.json`, `model.weights.h5`,
`metadata.json`) for the library's models, written atomically."""

import datetime
import json
import os

import keras

from keras_flexpredict.utils.atomic_write import atomic_directory
from keras_flexpredict.utils.atomic_write import atomic_write_json

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"


def is_preset_directory(path):
    """Whether `path` is a folder written by `save_to_preset`."""
    path = os.fspath(path)
    return all(os.path.isfile(os.path.join(path, f)) for f in (CONFIG_FILE, WEIGHTS_FILE, METADATA_FILE))


def save_preset(model, directory):
    """Writes `model` as a preset folder: `config.json` (the Keras serialisation of
    the model), `model.weights.h5` and `metadata.json` (versions, parameter count,
    date). The folder is written next to `directory` and renamed into place, so a
    reader sees the old preset or the complete new one; an existing folder is
    replaced only if it is a preset folder or empty."""
    from keras_flexpredict.version import __version__

    directory = os.path.abspath(os.fspath(directory))
    if os.path.exists(directory):
        if not os.path.isdir(directory):
            raise ValueError(f"`directory` exists and is not a folder. Received: directory={directory}")
        if os.listdir(directory) and not os.path.isfile(os.path.join(directory, CONFIG_FILE)):
            raise ValueError(
                "`directory` holds files that are not a preset; refusing to replace it. "
                f"Received: directory={directory}"
            )
    if not model.built:
        raise ValueError(f"Build the model (call it once) before saving it. Received: {model.name} unbuilt")
    config = keras.saving.serialize_keras_object(model)
    metadata = {
        "keras_version": keras.version(),
        "keras_flexpredict_version": __version__,
        "class_name": model.__class__.__name__,
        "parameter_count": int(model.count_params()),
        "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
    }
    with atomic_directory(directory) as tmp:
        atomic_write_json(os.path.join(tmp, CONFIG_FILE), config)
        atomic_write_json(os.path.join(tmp, METADATA_FILE), metadata)
        model.save_weights(os.path.join(tmp, WEIGHTS_FILE))
    return directory


def read_preset_config(directory):
    with open(os.path.join(os.fspath(directory), CONFIG_FILE)) as f:
        return json.load(f)


def load_preset(directory, **overrides):
    """The model of a preset folder, weights loaded. `overrides` replace entries of
    its config (e.g. `dtype`, `name`); `image_size` of a `ViTEncoder` rebuilds it at
    that resolution (sin-cos table recomputed, another table resampled)."""
    import keras_flexpredict  # noqa: F401  (registers the classes)

    directory = os.fspath(directory)
    if not is_preset_directory(directory):
        raise ValueError(
            f"Not a preset folder (needs {CONFIG_FILE}, {WEIGHTS_FILE}, {METADATA_FILE}). "
            f"Received: {directory}"
        )
    config = read_preset_config(directory)
    image_size = overrides.pop("image_size", None) if config.get("class_name") == "ViTEncoder" else None
    if overrides:
        config = dict(config, config=dict(config["config"], **overrides))
    model = keras.saving.deserialize_keras_object(config)
    if not model.built:
        build_for_loading(model)
    model.load_weights(os.path.join(directory, WEIGHTS_FILE))
    if image_size is not None:
        model = model.with_image_size(image_size)
    return model


def build_for_loading(model):
    """Builds a model deserialised from its config so that its weights can load."""
    if hasattr(model, "image_size") and hasattr(model, "num_channels"):
        model.build((None, *model.image_size, model.num_channels))
    else:
        raise ValueError(f"Cannot build {model.__class__.__name__} before loading its weights.")
