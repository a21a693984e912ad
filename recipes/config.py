"""Pretraining recipes on `ml_collections`: one locked, typed `ConfigDict`, JSON files
that hold only what differs from it, command-line overrides, one validation.

A recipe has six sections whose keys are constructor arguments:

- `model`: `preset` (a `FlexPredict.from_preset` name), `encoder` / `predictor` /
  `masker` (`ViTEncoder` / `JEPAPredictor` / `MultiBlockMasker` arguments over the
  preset; unset keys, `None`, are the preset's) and `loss`.
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
- `monitor`: training diagnostics and an online probe, see `recipes/monitoring.py`
  (diagnostics every epoch by default, probe off).

plus a top-level `description`. `default_config()` is the schema: every key, its type
and its default, locked, so a misspelt key raises naming it and a value of the wrong
type raises naming the key (`ml_collections` checks both on every assignment). A recipe
file (`recipes/configs/*.json`) sets only what differs from the defaults and from its
model preset; `get_config` lays it over the schema.

Overrides: `--config.section.key=value` (`ml_collections.config_flags`, parsed by the
key's type) or the older `--override=section.key=value` (`apply_overrides`; the value
is read as JSON when it parses, else as a string); both set the same `ConfigDict`
field. `validate_config` then checks every value once, before anything is built, and
returns the resolved recipe as a plain dict.

Example:
>>> config = get_config("stop_tiny_procedural")
>>> config.train.epochs
12
>>> config = apply_overrides(config, ["train.epochs=2"])
>>> validate_config(config, "stop_tiny_procedural")["train"]["epochs"]
2
"""

import copy
import inspect
import json
import math
import numbers
import os
import sys

try:
    import ml_collections
    from ml_collections import config_dict
except ImportError as e:  # pragma: no cover
    raise ImportError(
        "The recipes read their configs with ml_collections: pip install 'keras-flexpredict[train]' "
        "(or pip install ml_collections)."
    ) from e

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
# The `ml_collections` config file: `--config=recipes/configs/recipe.py:<recipe name or .json>`.
RECIPE_FILE = os.path.join(CONFIG_DIR, "recipe.py")
SECTIONS = ("model", "optimizer", "ema", "data", "train", "monitor")
DATA_SOURCES = ("procedural", "image_folder", "tfds")
MODEL_PARTS = ("encoder", "predictor", "masker")

# Keys the recipe fills itself and a config may not set.
_DATA_RESERVED = ("training", "skipped_counter", "steps_per_epoch", "initial_epoch")
_OPTIMIZER_RESERVED = ("total_steps", "warmup_steps", "constant_after_step", "learning_rate", "weight_decay")
# Constructor arguments that take an int or a pair: any value type passes the schema.
_SIZE_KEYS = ("image_size", "grid_size", "output_size")
# Keys of the optimizer and data sections that a resolved recipe always lists (None
# included); their other keys, and those of the model parts, are left out when None.
_FIXED = {
    "optimizer": ("start_lr", "peak_lr", "final_lr", "warmup_epochs", "constant_after_epoch",
                  "start_weight_decay", "end_weight_decay"),
    "data": ("source", "batch_size"),
}
_REQUIRED = ("model.preset", "optimizer.start_lr", "optimizer.peak_lr", "optimizer.final_lr",
             "optimizer.warmup_epochs", "data.batch_size", "train.epochs")


# ------------------------------------------------------------------ schema
def _field(value, field_type):
    return config_dict.FieldReference(value, field_type=field_type)


def _parameters(fn, exclude=()):
    params = inspect.signature(fn).parameters
    return {
        n: p for n, p in params.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in ("self",) + tuple(exclude)
    }


def _unset_arguments(*functions, exclude=(), fixed=None):
    """A `ConfigDict` of every argument of `functions`, unset (None), typed by its
    default (any type for sizes, sequences and None defaults), and the `fixed` fields."""
    fields = dict(fixed or {})
    for fn in functions:
        for name, p in _parameters(fn, exclude).items():
            default = p.default
            simple = isinstance(default, (bool, int, float, str)) and name not in _SIZE_KEYS
            fields.setdefault(name, _field(None, type(default) if simple else object))
    return ml_collections.ConfigDict(fields)


def _data_function(source):
    from keras_flexpredict import data

    return {
        "procedural": data.procedural_shapes_dataset,
        "image_folder": data.image_folder_dataset,
        "tfds": data.tfds_imagenet_dataset,
    }[source]


def _data_section(source):
    fixed = {"source": _field(source, str), "batch_size": _field(None, int)}
    return _unset_arguments(_data_function(source), exclude=_DATA_RESERVED, fixed=fixed)


def default_config(source="procedural"):
    """The recipe schema: every key with its type and default, locked.

    `None` marks a required key (`model.preset`, the learning rates, `warmup_epochs`,
    `data.batch_size`, `train.epochs`) or, in `model.encoder` / `predictor` / `masker`,
    the data section and the optimiser's extra arguments, a key left to the preset or
    to the constructor's default. The `data` keys are those of `source`'s pipeline.

    Example:
    >>> config = default_config()
    >>> config.ema.start_momentum, config.train.checkpoint_every
    (0.996, 1)
    """
    from keras_flexpredict.callbacks import EMATargetCallback
    from keras_flexpredict.layers import MultiBlockMasker
    from keras_flexpredict.models import JEPAPredictor
    from keras_flexpredict.models import ViTEncoder
    from keras_flexpredict.optimizers import JEPAAdamW
    from keras_flexpredict.optimizers import make_jepa_optimizer
    from recipes import monitoring

    if source not in DATA_SOURCES:
        _fail("data.source", source, f"must be one of {DATA_SOURCES}")
    config = ml_collections.ConfigDict()
    config.description = _field("", str)
    config.model = ml_collections.ConfigDict({
        "preset": _field(None, str),
        "encoder": _unset_arguments(ViTEncoder.__init__, exclude=("name", "dtype")),
        "predictor": _unset_arguments(JEPAPredictor.__init__, exclude=("name", "dtype")),
        "masker": _unset_arguments(MultiBlockMasker.__init__, exclude=("name", "dtype")),
        "loss": _field("smooth_l1", str),
    })
    schedule = {key: _field(None, float) for key in ("start_lr", "peak_lr", "final_lr", "warmup_epochs")}
    schedule.update(
        constant_after_epoch=_field(None, float), start_weight_decay=_field(0.04, float),
        end_weight_decay=_field(0.4, float),
    )
    config.optimizer = _unset_arguments(
        make_jepa_optimizer, JEPAAdamW.__init__, exclude=_OPTIMIZER_RESERVED + ("name",), fixed=schedule
    )
    # The teacher's momentum defaults live in one place, the EMA teacher module.
    from keras_flexpredict.models.ema_teacher import DEFAULT_END_MOMENTUM
    from keras_flexpredict.models.ema_teacher import DEFAULT_START_MOMENTUM

    ema = {"start_momentum": _field(DEFAULT_START_MOMENTUM, float), "end_momentum": _field(DEFAULT_END_MOMENTUM, float)}
    config.ema = _unset_arguments(EMATargetCallback.__init__, fixed=dict(ema, total_steps=_field(None, int)))
    config.data = _data_section(source)
    config.train = ml_collections.ConfigDict({
        "epochs": _field(None, int),
        "steps_per_epoch": _field(None, int),
        "checkpoint_every": _field(1, int),
        "seed": _field(0, int),
        "output_dir": _field(None, str),
        "dtype_policy": _field(None, str),
        "steps_per_execution": _field(1, int),
        "verbose": _field(1, int),
    })
    config.monitor = ml_collections.ConfigDict({
        key: _field(copy.deepcopy(value), type(value) if isinstance(value, (int, float)) else object)
        for key, value in monitoring.DEFAULTS.items()
    })
    config.lock()
    return config


# --------------------------------------------------------------- assignment
def _fail(key, value, why):
    raise ValueError(f"Recipe key `{key}` {why}. Received: {key}={value!r}")


def _not_known(path, config, node):
    """Why a key is refused at `path` (a section), with the keys it accepts."""
    accepted = sorted(node.keys())
    if len(path) == 2 and path[0] == "model" and path[1] in MODEL_PARTS:
        from keras_flexpredict.layers import MultiBlockMasker
        from keras_flexpredict.models import JEPAPredictor
        from keras_flexpredict.models import ViTEncoder

        cls = {"encoder": ViTEncoder, "predictor": JEPAPredictor, "masker": MultiBlockMasker}[path[1]]
        return f"is not an argument of {cls.__name__} ({accepted})"
    if path == ["data"]:
        source = config.data.source
        return (
            f"is not an argument of {_data_function(source).__name__} (data.source={source!r}; "
            f"accepted: {accepted})"
        )
    if not path:
        return f"is not a recipe section ({accepted})"
    return f"is not a known key of section `{'.'.join(path)}` ({accepted})"


def _unknown(config, path, i, value):
    for part in reversed(path[i + 1 :]):
        value = {part: value}
    node = config
    for part in path[:i]:
        node = node[part]
    _fail(".".join(path[: i + 1]), value, _not_known(path[:i], config, node))


def _set(config, path, value):
    """Sets `config[path]` (a list of keys) to `value`, naming the key in any error."""
    node = config
    for i, part in enumerate(path[:-1]):
        if part not in node:
            _unknown(config, path, i, value)
        child = node[part]
        if not isinstance(child, ml_collections.ConfigDict):
            where = ".".join(path[: i + 1])
            raise ValueError(
                f"Cannot set `{'.'.join(path)}`: `{where}` is not a section. Received: {where}={child!r}"
            )
        node = child
    key, last = ".".join(path), path[-1]
    if last not in node:
        _unknown(config, path, len(path) - 1, value)
    if isinstance(node[last], ml_collections.ConfigDict):
        if not isinstance(value, dict):
            _fail(key, value, "is a section: give it a dict or set its keys one by one")
        for child, child_value in value.items():
            _set(config, path + [str(child)], child_value)
        return
    if isinstance(value, dict):
        _fail(key, value, "is not a section")
    try:
        node[last] = value
    except TypeError:
        type_name = getattr(node.get_type(last), "__name__", str(node.get_type(last)))
        _fail(key, value, f"must be of type {type_name}")


def _merge(config, values, prefix=()):
    for key, value in values.items():
        _set(config, list(prefix) + [str(key)], value)


def from_dict(recipe):
    """A recipe given as a dict (a JSON file's content) laid over `default_config`:
    a locked `ConfigDict`. Unknown keys and values of the wrong type raise a
    `ValueError` naming the key and the value.

    Example:
    >>> from_dict({"train": {"epochs": 3}}).train.epochs
    3
    """
    if isinstance(recipe, ml_collections.ConfigDict):
        return copy.deepcopy(recipe)
    if not isinstance(recipe, dict):
        raise ValueError(f"A recipe must be a dict. Received: config={recipe!r}")
    data = recipe.get("data")
    source = data.get("source", "procedural") if isinstance(data, dict) else "procedural"
    config = default_config(source if source in DATA_SOURCES else "procedural")
    if source not in DATA_SOURCES:
        _fail("data.source", source, f"must be one of {DATA_SOURCES}")
    _merge(config, recipe)
    return config


# --------------------------------------------------------------- recipe files
def list_configs():
    """Names of the built-in recipes (the JSON files in `recipes/configs/`).

    Example:
    >>> "stop_vit_base_patch16_224_imagenet" in list_configs()
    True
    """
    return sorted(f[: -len(".json")] for f in os.listdir(CONFIG_DIR) if f.endswith(".json"))


def load_config(name_or_path):
    """Reads a recipe file: a built-in name (see `list_configs`) or a path to a JSON
    file. Returns its content as a dict (only what it sets; see `get_config`).

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


def get_config(name_or_path="stop_tiny_procedural"):
    """A recipe file (built-in name or JSON path) over the defaults: a locked,
    typed `ConfigDict`, not yet validated (see `validate_config`).

    Example:
    >>> get_config("stop_vit_huge_patch14_224_imagenet").optimizer.constant_after_epoch
    250.0
    """
    return from_dict(load_config(name_or_path))


def config_name(name_or_path):
    """A short name for a recipe: the built-in name or the JSON file's stem."""
    base = os.path.basename(os.fspath(name_or_path))
    return base[: -len(".json")] if base.endswith(".json") else base


# ---------------------------------------------------------------- overrides
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
    """Returns a copy of `config` (a `ConfigDict` or a recipe dict) with each
    `--override`-style `section.key=value` applied: the same fields that
    `--config.section.key=value` sets.

    An override of `data.source` is applied first: the data section then takes the
    new source's keys, keeping the values the new pipeline takes and dropping the
    recipe's others (with a note on stderr); later overrides are checked against the
    new source.

    Example:
    >>> config = apply_overrides(get_config("stop_tiny_procedural"), ["train.epochs=2", "model.encoder.depth=1"])
    >>> config.train.epochs, config.model.encoder.depth
    (2, 1)
    """
    config = from_dict(config)
    parsed = [parse_override(text) for text in overrides or ()]
    for path, value in parsed:
        if path == ["data", "source"]:
            set_data_source(config, value)
    for path, value in parsed:
        if path != ["data", "source"]:
            _set(config, path, value)
    return config


def set_data_source(config, source):
    """Switches `config.data` (in place) to the pipeline of `source`: the keys that
    pipeline takes keep their values, the others are dropped (named on stderr)."""
    old = config.data.source
    if source not in DATA_SOURCES:
        _fail("data.source", source, f"must be one of {DATA_SOURCES}")
    if source == old:
        return config
    section = _data_section(source)
    dropped = []
    for key, value in config.data.items():
        if key == "source" or value is None:
            continue
        if key in section:
            section[key] = value
        else:
            dropped.append(key)
    section.source = source
    section.lock()
    config.unlock()
    config.data = section
    config.lock()
    if dropped:
        print(
            f"Note: data.source changed from {old!r} to {source!r}; dropped the recipe's data keys "
            f"that {_data_function(source).__name__} does not take: {', '.join(sorted(dropped))}.",
            file=sys.stderr,
        )
    return config


# ---------------------------------------------------------------- validation
# keras_flexpredict is imported where it is used: `import recipes` must not import Keras,
# so that `python -m recipes.demo` can still choose the backend.
def _check_int(key, value, low):
    from keras_flexpredict.utils.validation import check_int

    return check_int(key, value, minimum=low)


def _check_number(key, value, low=0.0, allow_none=False):
    if value is None and allow_none:
        return None
    from keras_flexpredict.utils.validation import check_float

    if not isinstance(value, numbers.Real):
        _fail(key, value, f"must be a number >= {low}")
    return check_float(key, value, minimum=low)


def _size_pair(value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value), int(value))
    return tuple(int(v) for v in value)


def preset_model_arguments(model):
    """`(encoder, predictor, masker)` constructor arguments exactly as
    `FlexPredict.from_preset(model["preset"], encoder=..., predictor=..., masker=...)`
    merges them (to check values without building weights)."""
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
    """Builds the weightless parts once, as `from_preset` will, so that their own
    constructors check the values; then checks that they fit together."""
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
    return built[0]


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
                  "pass --config.data.root=/path/to/imagenet")
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
    if train["output_dir"] is not None and not train["output_dir"]:
        _fail("train.output_dir", train["output_dir"], "must be a folder path or null")
    policy = train["dtype_policy"]
    if policy is not None:
        import keras

        try:
            keras.dtype_policies.get(policy)
        except (ValueError, TypeError):
            _fail("train.dtype_policy", policy, "must be a Keras dtype policy name such as 'mixed_bfloat16'")


def resolve(config):
    """The plain dict of a `ConfigDict` recipe: every fixed key, and the set (not
    None) keys of the open sections (model parts, data, optimiser extras)."""
    out = config.to_dict()
    for part in MODEL_PARTS:
        out["model"][part] = {k: v for k, v in out["model"][part].items() if v is not None}
    for section in ("optimizer", "data"):
        out[section] = {k: v for k, v in out[section].items() if v is not None or k in _FIXED[section]}
    return json.loads(json.dumps(out))  # tuples -> lists, as a JSON file holds them


def validate_config(config, name="recipe"):
    """Checks every value of a recipe once and returns it resolved, as a plain dict.

    Keys and types were checked when the `ConfigDict` was filled (`from_dict`,
    `apply_overrides`, `--config.*`); here come the values: required keys, ranges,
    the weightless model parts built as `from_preset` builds them (their constructors
    check their own arguments), the optimiser, the EMA and the data. A bad value
    raises a `ValueError` naming the key and the value, before anything is built.

    Args:
        config: `ConfigDict` (`get_config`, `apply_overrides`) or recipe dict.
        name: str. The recipe's name; the default `train.output_dir` is
            `runs/<name>`. Defaults to `"recipe"`.

    Returns:
        A new, complete config dict.

    Example:
    >>> config = validate_config(get_config("stop_tiny_procedural"), "stop_tiny_procedural")
    >>> config["train"]["output_dir"]
    'runs/stop_tiny_procedural'
    """
    if not isinstance(config, (dict, ml_collections.ConfigDict)):
        raise ValueError(f"A recipe must be a dict or a ConfigDict. Received: config={config!r}")
    config = from_dict(config)
    out = resolve(config)
    _check_finite(out)
    for key in _REQUIRED:
        section, field = key.split(".")
        if out[section][field] is None:
            raise ValueError(f"Recipe key `{key}` is required. Received: no value")
    source = out["data"]["source"]
    if source not in DATA_SOURCES:
        _fail("data.source", source, f"must be one of {DATA_SOURCES}")
    allowed = set(_data_section(source))
    for key, value in out["data"].items():
        if key not in allowed:  # data.source set by --config.data.source: keys of another source
            _fail(
                f"data.{key}", value,
                f"is not an argument of {_data_function(source).__name__} (data.source={source!r}; accepted: "
                f"{sorted(allowed)}); to change the source, use --override=data.source=... or the recipe file",
            )

    model, train = out["model"], out["train"]
    _check_train(train)
    # Seeds of the random layers and of the data default to train.seed.
    model["predictor"].setdefault("seed", train["seed"])
    model["masker"].setdefault("seed", train["seed"])
    out["data"].setdefault("seed", train["seed"])
    encoder = _check_model(model)
    _check_data(out["data"], tuple(encoder.image_size))
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

    out["monitor"] = monitoring.validate(out["monitor"], out["data"])
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
