"""Pretraining recipes: loading, command-line overrides and validation.

A recipe is a JSON object with five sections whose keys are constructor arguments:

- `model`: `preset` (a `FlexPredict.from_preset` name), `encoder` / `predictor` /
  `masker` (dicts of `ViTEncoder` / `JEPAPredictor` / `MultiBlockMasker` arguments that
  override the preset) and `loss`.
- `optimizer`: the arguments of `kfp.optimizers.make_jepa_optimizer` (and of
  `JEPAAdamW`), except that its step counts are given in epochs as the paper gives
  them: `warmup_epochs` (-> `warmup_steps`) and `constant_after_epoch`
  (-> `constant_after_step`); `total_steps` is `train.epochs * steps_per_epoch`.
  With `gradient_accumulation_steps: k` the optimiser averages `k` batches of
  `data.batch_size` into one update, so every step count is divided by `k` (the
  schedules and the EMA count real updates).
- `ema`: the arguments of `kfp.callbacks.EMATargetCallback`.
- `data`: `source` (`"procedural"`, `"image_folder"` or `"tfds"`) and the arguments of
  the matching pipeline (`procedural_shapes_dataset`, `image_folder_dataset`,
  `tfds_imagenet_dataset`); `training` is always true.
- `train`: `epochs`, `steps_per_epoch` (None: the data set size // batch size),
  `checkpoint_every` (epochs; 0: none), `seed`, `output_dir`, `dtype_policy`,
  `steps_per_execution`, `verbose`.
- `monitor` (optional): training diagnostics and an online probe, see
  `recipes/monitoring.py` (diagnostics every epoch by default, probe off).

A top-level `description` string is allowed. `--override=section.key=value` (also
`model.encoder.depth=2`) sets one value; values are read as JSON when they parse as
JSON, else as strings. `validate_config` checks every key and value before anything
is built and names the bad key and value in its error.
"""

import copy
import inspect
import json
import math
import numbers
import os
import sys

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
SECTIONS = ("model", "optimizer", "ema", "data", "train")
DATA_SOURCES = ("procedural", "image_folder", "tfds")
_REQUIRED = object()

# Keys the recipe fills itself and a config may not set.
_DATA_RESERVED = ("training", "skipped_counter", "steps_per_epoch", "initial_epoch")
_OPTIMIZER_RESERVED = ("total_steps", "warmup_steps", "constant_after_step", "learning_rate", "weight_decay")

_DEFAULTS = {
    "model": {"preset": _REQUIRED, "encoder": {}, "predictor": {}, "masker": {}, "loss": "smooth_l1"},
    "optimizer": {
        "start_lr": _REQUIRED,
        "peak_lr": _REQUIRED,
        "final_lr": _REQUIRED,
        "warmup_epochs": _REQUIRED,
        "constant_after_epoch": None,
        "start_weight_decay": 0.04,
        "end_weight_decay": 0.4,
    },
    "ema": {"start_momentum": 0.996, "end_momentum": 1.0, "total_steps": None},
    "data": {"source": "procedural", "batch_size": _REQUIRED},
    "train": {
        "epochs": _REQUIRED,
        "steps_per_epoch": None,
        "checkpoint_every": 1,
        "seed": 0,
        "output_dir": None,
        "dtype_policy": None,
        "steps_per_execution": 1,
        "verbose": 1,
    },
}


def list_configs():
    """Names of the built-in recipes (the JSON files in `recipes/configs/`).

    Example:
    >>> "stop_vit_base_patch16_224_imagenet" in list_configs()
    True
    """
    return sorted(f[: -len(".json")] for f in os.listdir(CONFIG_DIR) if f.endswith(".json"))


def load_config(name_or_path):
    """Reads a recipe: a built-in name (see `list_configs`) or a path to a JSON file.

    Args:
        name_or_path: str.

    Returns:
        The recipe as a dict (not yet validated).

    Example:
    >>> load_config("stop_vit_base_patch16_224_imagenet")["train"]["epochs"]
    600
    """
    if not isinstance(name_or_path, (str, os.PathLike)) or not str(name_or_path):
        raise ValueError(f"`config` must be a recipe name or a .json path. Received: config={name_or_path!r}")
    path = os.fspath(name_or_path)
    if not os.path.isfile(path):
        builtin = os.path.join(CONFIG_DIR, f"{path}.json")
        if not os.path.isfile(builtin):
            raise ValueError(
                f"`config` is neither a built-in recipe ({', '.join(list_configs())}) nor an existing "
                f"JSON file. Received: config={name_or_path!r}"
            )
        path = builtin
    with open(path, encoding="utf-8") as f:
        try:
            config = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"Recipe file {path} is not valid JSON ({e}).") from None
    if not isinstance(config, dict):
        raise ValueError(f"A recipe must be a JSON object. Received: {type(config).__name__} in {path}")
    return config


def config_name(name_or_path):
    """A short name for a recipe: the built-in name or the JSON file's stem."""
    base = os.path.basename(os.fspath(name_or_path))
    return base[: -len(".json")] if base.endswith(".json") else base


def parse_value(text):
    """An override value: JSON when it parses (`3`, `1e-3`, `null`, `[0.1, 0.2]`,
    `"x"`), else the string itself (`mixed_bfloat16`, `/data/imagenet`)."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def parse_override(text):
    """`"a.b.c=value"` -> `(["a", "b", "c"], parsed value)`."""
    if not isinstance(text, str) or "=" not in text:
        raise ValueError(f"An override must look like `section.key=value`. Received: override={text!r}")
    key, value = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or any(not p for p in path):
        raise ValueError(
            f"An override key must be `section.key` (or `section.key.subkey`). Received: override={text!r}"
        )
    return path, parse_value(value)


def apply_overrides(config, overrides):
    """Returns a copy of `config` with each `section.key=value` override applied.

    Missing dicts on the way are created (`model.encoder.depth=2` works when the
    recipe has no `encoder` section); the keys themselves are checked by
    `validate_config`. Overriding a key of a value that is not a dict is an error.

    Example:
    >>> config = {"train": {"epochs": 600}}
    >>> apply_overrides(config, ["train.epochs=2", "model.encoder.depth=1"])
    {'train': {'epochs': 2}, 'model': {'encoder': {'depth': 1}}}
    """
    config = copy.deepcopy(config)
    original = config.get("data")
    old_source = original.get("source", "procedural") if isinstance(original, dict) else None
    overridden = set()
    for text in overrides or ():
        path, value = parse_override(text)
        if path[0] == "data" and len(path) == 2:
            overridden.add(path[1])
        node = config
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise ValueError(
                    f"Cannot set `{'.'.join(path)}`: `{where}` is not a section. "
                    f"Received: {where}={child!r}"
                )
            node = child
        node[path[-1]] = value
    _drop_other_source_keys(config, old_source, overridden)
    return config


def _drop_other_source_keys(config, old_source, overridden):
    """When an override changes `data.source`, the recipe's own `data` keys that the
    new source's pipeline does not take are dropped (with a note on stderr); keys
    given by overrides stay, so a wrong one is still reported by `validate_config`."""
    data = config.get("data")
    if not isinstance(data, dict):
        return []
    new_source = data.get("source", "procedural")
    if old_source is None or new_source == old_source or new_source not in DATA_SOURCES:
        return []
    allowed = (_parameters(_data_function(new_source)) - set(_DATA_RESERVED)) | {"source"}
    dropped = sorted(k for k in data if k not in allowed and k not in overridden)
    for key in dropped:
        del data[key]
    if dropped:
        print(
            f"Note: data.source changed from {old_source!r} to {new_source!r}; dropped the recipe's data keys "
            f"that {_data_function(new_source).__name__} does not take: {', '.join(dropped)}.",
            file=sys.stderr,
        )
    return dropped


# ---------------------------------------------------------------- validation
def _parameters(fn, exclude=()):
    params = inspect.signature(fn).parameters
    return {
        n for n, p in params.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in ("self",) + tuple(exclude)
    }


def _data_function(source):
    from keras_flexpredict import data

    return {
        "procedural": data.procedural_shapes_dataset,
        "image_folder": data.image_folder_dataset,
        "tfds": data.tfds_imagenet_dataset,
    }[source]


def _allowed_keys(section, config):
    """The keys a section accepts (constructor arguments)."""
    if section == "model":
        return set(_DEFAULTS["model"])
    if section == "optimizer":
        from keras_flexpredict.optimizers import JEPAAdamW
        from keras_flexpredict.optimizers import make_jepa_optimizer

        keys = _parameters(make_jepa_optimizer) | _parameters(JEPAAdamW.__init__)
        return (keys - set(_OPTIMIZER_RESERVED)) | {"warmup_epochs", "constant_after_epoch"}
    if section == "ema":
        from keras_flexpredict.callbacks import EMATargetCallback

        return _parameters(EMATargetCallback.__init__)
    if section == "data":
        return (_parameters(_data_function(config["data"]["source"])) - set(_DATA_RESERVED)) | {"source"}
    return set(_DEFAULTS["train"])


def _fail(key, value, why):
    raise ValueError(f"Recipe key `{key}` {why}. Received: {key}={value!r}")


def _check_int(key, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        _fail(key, value, f"must be an int >= {low}")
    return int(value)


def _check_number(key, value, low=0.0, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= low:
        _fail(key, value, f"must be a number >= {low}")
    return float(value)


def _size_pair(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value), int(value))
    return tuple(int(v) for v in value)


def preset_model_arguments(model):
    """`(encoder, predictor, masker)` constructor arguments exactly as
    `FlexPredict.from_preset(model["preset"], encoder=..., predictor=..., masker=...)`
    merges them (used to check values without building weights)."""
    from keras_flexpredict.models.flex_predict_presets import FLEXPREDICT_PRESETS
    from keras_flexpredict.models.vit_presets import VIT_PRESETS

    spec = FLEXPREDICT_PRESETS[model["preset"]]
    encoder = dict(VIT_PRESETS[spec["encoder"]], **model["encoder"])
    image_size = _size_pair(encoder["image_size"])
    patch = int(encoder["patch_size"])
    grid = (image_size[0] // patch, image_size[1] // patch)
    predictor = dict(encoder_dim=encoder["hidden_dim"], num_heads=encoder["num_heads"], grid_size=grid)
    predictor.update(spec["predictor"], **model["predictor"])
    masker = dict(spec["masker"], grid_size=grid)
    masker.update(model["masker"])
    return encoder, predictor, masker


def _check_finite(value, key=""):
    """Every number of a recipe must be finite: JSON readers accept NaN and
    Infinity, which no key of a recipe means."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{key}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        _fail(key, value, "must be a finite number")


def _check_model(model):
    from keras_flexpredict.layers import MultiBlockMasker
    from keras_flexpredict.models import FlexPredict
    from keras_flexpredict.models import JEPAPredictor
    from keras_flexpredict.models import ViTEncoder
    from keras_flexpredict.models.flex_predict import LOSSES

    if model["preset"] not in FlexPredict.presets():
        _fail("model.preset", model["preset"], f"must be one of {FlexPredict.presets()}")
    if model["loss"] not in LOSSES:
        _fail("model.loss", model["loss"], f"must be one of {LOSSES}")
    parts = (("encoder", ViTEncoder), ("predictor", JEPAPredictor), ("masker", MultiBlockMasker))
    for part, cls in parts:
        value = model[part]
        if not isinstance(value, dict):
            _fail(f"model.{part}", value, "must be a dict of constructor arguments")
        allowed = _parameters(cls.__init__)
        for key in value:
            if key not in allowed:
                _fail(f"model.{part}.{key}", value[key], f"is not an argument of {cls.__name__} ({sorted(allowed)})")
    # Values: build the (weightless) parts as `from_preset` would, then check that
    # they fit together (widths, patch grid), as the model's constructor will.
    built = []
    for (part, cls), kwargs in zip(parts, preset_model_arguments(model)):
        try:
            built.append(cls(**kwargs))
        except (ValueError, TypeError) as e:
            raise ValueError(f"Recipe section `model.{part}` is invalid: {e}") from None
    try:
        FlexPredict.check_parts(*built)
    except ValueError as e:
        raise ValueError(f"Recipe section `model` is invalid: {e}") from None


def _check_optimizer(optimizer, epochs):
    for key in ("start_lr", "peak_lr", "final_lr", "start_weight_decay", "end_weight_decay"):
        _check_number(f"optimizer.{key}", optimizer[key])
    warmup = _check_number("optimizer.warmup_epochs", optimizer["warmup_epochs"])
    if warmup > epochs:
        _fail("optimizer.warmup_epochs", optimizer["warmup_epochs"], f"must be at most train.epochs ({epochs})")
    constant = _check_number("optimizer.constant_after_epoch", optimizer["constant_after_epoch"], allow_none=True)
    if constant is not None and not 0 < constant <= epochs:
        _fail(
            "optimizer.constant_after_epoch",
            optimizer["constant_after_epoch"],
            f"must be in (0, train.epochs = {epochs}] or null",
        )
    accumulation = optimizer.get("gradient_accumulation_steps")
    if accumulation is not None:
        _check_int("optimizer.gradient_accumulation_steps", accumulation, 2)
    try:
        make_optimizer(optimizer, epochs, steps_per_epoch=1000)
    except (ValueError, TypeError) as e:
        raise ValueError(f"Recipe section `optimizer` is invalid: {e}") from None


def _check_data(data, encoder_image_size):
    batch_size = _check_int("data.batch_size", data["batch_size"], 1)
    source = data["source"]
    height, width = encoder_image_size
    data.setdefault("image_size", height if height == width else [height, width])
    image_key = "output_size" if source == "procedural" and data.get("output_size") is not None else "image_size"
    if data.get(image_key) is not None:
        try:
            size = _size_pair(data[image_key])
        except (TypeError, ValueError):
            size = None
        if size != tuple(encoder_image_size):
            _fail(
                f"data.{image_key}",
                data[image_key],
                f"must equal the encoder's image size {tuple(encoder_image_size)} (or be left out)",
            )
    transform = data.get("transform")
    if transform is not None and transform not in ("stop", "ijepa", "eval"):
        _fail("data.transform", transform, "must be 'stop', 'ijepa', 'eval' or null")
    if source == "procedural":
        num_images = _check_int("data.num_images", data.get("num_images"), 1)
        if num_images < batch_size:
            _fail("data.num_images", num_images, f"must be at least data.batch_size ({batch_size})")
        if data.get("label", None) is not None:
            _fail("data.label", data["label"], "must be null for pretraining (images only)")
        # The generator's own checks (sizes, noise, rotation), without generating.
        from keras_flexpredict.data import procedural_shapes
        from keras_flexpredict.data import procedural_shapes_dataset

        defaults = {k: p.default for k, p in inspect.signature(procedural_shapes_dataset).parameters.items()}
        args = {k: data.get(k, defaults[k]) for k in ("image_size", "max_count", "grid_size", "noise_std", "max_rotation")}
        try:
            procedural_shapes._validate(num_images, **args)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Recipe section `data` is invalid: {e}") from None
    elif source == "image_folder":
        root = data.get("root")
        if not isinstance(root, str) or not os.path.isdir(root):
            _fail("data.root", root, "must be an existing image folder (root/<split>/<class>/<image>); "
                  "pass --override=data.root=/path/to/imagenet")
    for key in ("seed", "shard_index"):
        if key in data:
            _check_int(f"data.{key}", data[key], 0)


def _check_train(train):
    _check_int("train.epochs", train["epochs"], 1)
    if train["steps_per_epoch"] is not None:
        _check_int("train.steps_per_epoch", train["steps_per_epoch"], 1)
    _check_int("train.checkpoint_every", train["checkpoint_every"], 0)
    _check_int("train.seed", train["seed"], 0)
    _check_int("train.steps_per_execution", train["steps_per_execution"], 1)
    if train["verbose"] not in (0, 1, 2):
        _fail("train.verbose", train["verbose"], "must be 0, 1 or 2")
    if train["output_dir"] is not None and (not isinstance(train["output_dir"], str) or not train["output_dir"]):
        _fail("train.output_dir", train["output_dir"], "must be a folder path or null")
    policy = train["dtype_policy"]
    if policy is not None:
        import keras

        try:
            keras.dtype_policies.get(policy)
        except (ValueError, TypeError):
            _fail("train.dtype_policy", policy, "must be a Keras dtype policy name such as 'mixed_bfloat16'")


def validate_config(config, name="recipe"):
    """Checks every key and value of a recipe and fills the defaults.

    Unknown sections or keys, missing required keys and bad values raise a
    `ValueError` naming the key and the value, before anything is built. Keys are
    checked against the constructors they feed (so a new constructor argument is
    accepted without changes here), values by building the weightless parts
    (encoder, predictor, masker, optimizer and schedules).

    Args:
        config: dict, e.g. from `load_config` and `apply_overrides`.
        name: str. The recipe's name; the default `train.output_dir` is
            `runs/<name>`. Defaults to `"recipe"`.

    Returns:
        A new, complete config dict.

    Example:
    >>> config = validate_config(load_config("stop_tiny_procedural"), "stop_tiny_procedural")
    >>> config["train"]["output_dir"]
    'runs/stop_tiny_procedural'
    """
    if not isinstance(config, dict):
        raise ValueError(f"A recipe must be a dict. Received: config={config!r}")
    _check_finite(config)
    for key in config:
        if key not in ("description", "monitor") and key not in SECTIONS:
            _fail(key, config[key], f"is not a recipe section ({', '.join(SECTIONS + ('monitor',))})")
    out = {"description": config.get("description", "")}
    for section in SECTIONS:
        given = config.get(section, {})
        if not isinstance(given, dict):
            _fail(section, given, "must be a dict")
        merged = {k: v if v is _REQUIRED else copy.deepcopy(v) for k, v in _DEFAULTS[section].items()}
        merged.update(copy.deepcopy(given))
        out[section] = merged
    if out["data"]["source"] not in DATA_SOURCES:
        _fail("data.source", out["data"]["source"], f"must be one of {DATA_SOURCES}")
    for section in SECTIONS:
        allowed = _allowed_keys(section, out)
        for key, value in out[section].items():
            if key not in allowed:
                if section == "data":
                    source = out["data"]["source"]
                    _fail(
                        f"data.{key}", value,
                        f"is not an argument of {_data_function(source).__name__} (data.source={source!r}; "
                        f"accepted: {sorted(allowed)})",
                    )
                _fail(f"{section}.{key}", value, f"is not a known key of section `{section}` ({sorted(allowed)})")
            if value is _REQUIRED:
                raise ValueError(f"Recipe key `{section}.{key}` is required. Received: no value")

    model, train = out["model"], out["train"]
    _check_train(train)
    _check_model(model)
    encoder, predictor, masker = preset_model_arguments(model)
    # Seeds of the random layers and of the data default to train.seed.
    model["predictor"].setdefault("seed", train["seed"])
    model["masker"].setdefault("seed", train["seed"])
    out["data"].setdefault("seed", train["seed"])
    _check_data(out["data"], _size_pair(encoder["image_size"]))
    _check_optimizer(out["optimizer"], train["epochs"])
    try:
        from keras_flexpredict.callbacks import EMATargetCallback

        EMATargetCallback(**out["ema"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"Recipe section `ema` is invalid: {e}") from None
    if train["output_dir"] is None:
        train["output_dir"] = os.path.join("runs", name)
    # Diagnostics and online probe (recipes/monitoring.py).
    from recipes import monitoring

    out["monitor"] = monitoring.validate(config.get("monitor", {}), out["data"])
    return out


# ------------------------------------------------------------- resolution
def steps_from_epochs(epochs, steps_per_epoch, accumulation=1):
    """Epochs (possibly fractional) -> optimiser updates: batches rounded to the
    nearest batch, then divided by the gradient accumulation (whole updates)."""
    return int(round(float(epochs) * int(steps_per_epoch))) // int(accumulation or 1)


def optimizer_arguments(optimizer, epochs, steps_per_epoch):
    """`make_jepa_optimizer` keyword arguments of a validated `optimizer` section.

    Example:
    >>> args = optimizer_arguments(
    ...     {"start_lr": 2e-4, "peak_lr": 8e-4, "final_lr": 1e-4, "warmup_epochs": 15,
    ...      "constant_after_epoch": None}, epochs=600, steps_per_epoch=625)
    >>> args["total_steps"], args["warmup_steps"]
    (375000, 9375)
    >>> # Half the batch, accumulated in pairs: twice the batches, the same updates.
    >>> args = optimizer_arguments(
    ...     {"start_lr": 2e-4, "peak_lr": 8e-4, "final_lr": 1e-4, "warmup_epochs": 15,
    ...      "constant_after_epoch": None, "gradient_accumulation_steps": 2},
    ...     epochs=600, steps_per_epoch=1250)
    >>> args["total_steps"], args["warmup_steps"]
    (375000, 9375)
    """
    kwargs = {k: v for k, v in optimizer.items() if k not in ("warmup_epochs", "constant_after_epoch")}
    k = optimizer.get("gradient_accumulation_steps") or 1
    kwargs["total_steps"] = steps_from_epochs(epochs, steps_per_epoch, k)
    kwargs["warmup_steps"] = steps_from_epochs(optimizer["warmup_epochs"], steps_per_epoch, k)
    constant = optimizer.get("constant_after_epoch")
    kwargs["constant_after_step"] = None if constant is None else steps_from_epochs(constant, steps_per_epoch, k)
    return kwargs


def make_optimizer(optimizer, epochs, steps_per_epoch):
    """The recipe's `JEPAAdamW` (see `optimizer_arguments`)."""
    from keras_flexpredict.optimizers import make_jepa_optimizer

    return make_jepa_optimizer(**optimizer_arguments(optimizer, epochs, steps_per_epoch))


def dataset_arguments(data):
    """`(pipeline function, keyword arguments)` of a validated `data` section, for
    pretraining (`training=True`, images only)."""
    kwargs = {k: v for k, v in data.items() if k != "source"}
    kwargs["training"] = True
    if data["source"] == "procedural":
        kwargs["label"] = None
    else:
        kwargs.setdefault("with_labels", False)
    return _data_function(data["source"]), kwargs


def count_examples(data):
    """Number of training images a validated `data` section reads (in this shard)."""
    source = data["source"]
    num_shards = int(data.get("num_shards", 1))
    if source == "procedural":
        return int(data["num_images"])
    from keras_flexpredict import data as kdata

    if source == "image_folder":
        paths, labels, _ = kdata.list_image_folder(data["root"], data.get("split", "train"))
        if data.get("subset_file") is not None:
            paths, labels = kdata.filter_by_subset(paths, labels, kdata.read_subset_file(data["subset_file"]))
        return len(paths[int(data.get("shard_index", 0)) :: num_shards])
    import tensorflow_datasets as tfds

    if data.get("subset_file") is not None:
        total = len(kdata.read_subset_file(data["subset_file"]))
    else:
        builder = tfds.builder(data.get("name", "imagenet2012"), data_dir=data.get("data_dir"))
        if not builder.is_prepared():
            raise FileNotFoundError(
                f"TFDS {builder.name} is not prepared in {builder.data_dir}, so the number of steps per epoch "
                "is unknown: prepare it (see keras_flexpredict.data.tfds_imagenet_dataset) or set "
                "train.steps_per_epoch."
            )
        total = builder.info.splits[data.get("split", "train")].num_examples
    return total // num_shards


def resolve_steps_per_epoch(config):
    """`train.steps_per_epoch`, or (when None) the data set size // batch size."""
    steps = config["train"]["steps_per_epoch"]
    if steps is not None:
        return int(steps)
    count = count_examples(config["data"])
    steps = count // int(config["data"]["batch_size"])
    if steps < 1:
        raise ValueError(
            f"The data hold fewer images ({count}) than one batch. "
            f"Received: data.batch_size={config['data']['batch_size']}"
        )
    return steps
