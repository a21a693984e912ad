"""Reading the official I-JEPA / StoP `.pth.tar` checkpoints into Keras models.

The official training scripts save `{"encoder", "predictor", "target_encoder", "opt",
"scaler", "epoch", "loss", "batch_size", "world_size", "lr"}`, the three models as
state dicts, usually with DDP's `module.` prefix. PyTorch is needed to read the file
(any Keras backend works); it is memory-mapped (`mmap=True, weights_only=True`) and
copied into the Keras variables one tensor at a time, so a ViT-H checkpoint never
sits in memory twice.
"""

import copy
import os

import numpy as np

from keras_flexpredict.convert import mapping
from keras_flexpredict.utils.validation import check_one_of

PARTS = ("encoder", "predictor", "target_encoder")
ENCODER_PARTS = ("target_encoder", "encoder")


class _TorchTensor:
    def __init__(self, tensor):
        self._tensor = tensor
        self.shape = tuple(int(s) for s in tensor.shape)

    def load(self):
        import torch

        t = self._tensor.detach()
        if t.dtype not in (torch.float32, torch.float64, torch.float16):
            t = t.float()
        return t.numpy()


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "Reading an official .pth.tar checkpoint needs PyTorch to unpickle it (the Keras "
            "backend can be any): `pip install torch`."
        ) from e
    return torch


def _strip_prefix(state):
    out = {}
    for key, value in state.items():
        key = str(key)
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def _is_state_dict(obj):
    return isinstance(obj, dict) and bool(obj) and all(hasattr(v, "shape") for v in obj.values())


def read_official_checkpoint(path):
    """`{part: {key: lazy tensor}}` of an official checkpoint, `module.` prefixes
    removed. Parts: those of `PARTS` the file has; a bare encoder state dict (e.g.
    `torch.save(encoder.state_dict(), path)`) comes back as `{"encoder": ...}`.

    The file is memory-mapped when PyTorch can (zip format) and read with
    `weights_only=True`: nothing but tensors and plain values is unpickled."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}.")
    torch = _import_torch()
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise ValueError(f"Cannot read {path!r} as a PyTorch checkpoint: {e}") from e
        # Legacy (non-zip) files cannot be memory-mapped.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors name the offending global
        raise ValueError(
            f"Cannot read {path!r} as a PyTorch checkpoint with weights_only=True ({type(e).__name__}: {e})."
        ) from e
    if not isinstance(checkpoint, dict):
        raise ValueError(f"Expected a dict in {path!r}. Received: {type(checkpoint).__name__}")
    parts = {p: checkpoint[p] for p in PARTS if isinstance(checkpoint.get(p), dict)}
    if not parts:
        if _is_state_dict(checkpoint) and any(str(k).endswith("patch_embed.proj.weight") for k in checkpoint):
            parts = {"encoder": checkpoint}
        else:
            raise ValueError(
                f"{path!r} is not an official I-JEPA / StoP checkpoint: it has none of the keys "
                f"{PARTS}. Received keys: {sorted(map(str, checkpoint))[:10]}"
            )
    out = {}
    for part, state in parts.items():
        state = _strip_prefix(state)
        out[part] = {k: _TorchTensor(v) for k, v in state.items() if hasattr(v, "shape")}
    return out


def _merged(config, overrides, what):
    config = dict(config)
    for key, value in (overrides or {}).items():
        config[key] = value
    return config


def _encoder_config(state, part, num_heads, image_size, overrides):
    arch = mapping.infer_encoder(state, part)
    stored_grid = arch.pop("grid")
    size, _ = mapping.image_grid(image_size, arch["patch_size"], stored_grid)
    config = dict(arch, image_size=size, layer_norm_epsilon=1e-6)
    config = _merged(config, overrides, "encoder")
    config["num_heads"] = mapping.resolve_heads(config["hidden_dim"], overrides.get("num_heads", num_heads))
    mapping.check_state(state, mapping.encoder_layout(config, stored_grid), part)
    return config, stored_grid


def official_encoder(path, which="target_encoder", num_heads=None, image_size=None, verbose=True, **overrides):
    """A `ViTEncoder` with the weights of one encoder of an official checkpoint.

    Args:
        path: the `.pth.tar` file.
        which: `"target_encoder"` (the EMA teacher, what the papers evaluate; the
            default) or `"encoder"` (the context encoder).
        num_heads: int or None. Attention heads; None reads them from the width
            (192: 3, 384: 6, 768: 12, 1024 / 1280 / 1408: 16).
        image_size: int, `(h, w)` or None. Build at this resolution (the sin-cos
            table is recomputed for the new grid, any other table resampled
            bicubically); None keeps the checkpoint's.
        verbose: bool. Progress bar.
        **overrides: other `ViTEncoder` arguments (e.g. `layer_norm_epsilon`, `name`).
    """
    from keras_flexpredict.models.vit_encoder import ViTEncoder

    check_one_of("which", which, ENCODER_PARTS)
    states = read_official_checkpoint(path)
    if which not in states:
        if set(states) == {"encoder"}:
            which = "encoder"  # a bare encoder state dict
        else:
            raise ValueError(f"{path!r} has no {which!r}. It has: {sorted(states)}")
    config, stored_grid = _encoder_config(states[which], which, num_heads, image_size, dict(overrides))
    config.setdefault("name", "vit_encoder")
    encoder = ViTEncoder(**config)
    encoder.build((None, *encoder.image_size, encoder.num_channels))
    report = {}
    mapping.assign(mapping.encoder_assignments(encoder, which, stored_grid, report), states, verbose)
    mapping.print_report(report, verbose)
    return encoder


def official_flexpredict(
    path, positional_noise="stop", num_heads=None, image_size=None, verbose=True,
    encoder=None, predictor=None, masker=None, **kwargs,
):
    """A `FlexPredict` with all three parts of an official checkpoint (see
    `FlexPredict.from_official_checkpoint`)."""
    from keras_flexpredict.layers.multi_block_masker import MultiBlockMasker
    from keras_flexpredict.models.flex_predict import FlexPredict
    from keras_flexpredict.models.flex_predict_presets import FLEXPREDICT_PRESETS
    from keras_flexpredict.models.jepa_predictor import JEPAPredictor
    from keras_flexpredict.models.jepa_predictor import POSITIONAL_NOISE
    from keras_flexpredict.models.vit_encoder import ViTEncoder

    if positional_noise not in POSITIONAL_NOISE:
        raise ValueError(
            f"`positional_noise` must be one of {POSITIONAL_NOISE} ('none' loads I-JEPA's mask token). "
            f"Received: positional_noise={positional_noise!r}"
        )
    states = read_official_checkpoint(path)
    missing = [p for p in PARTS if p not in states]
    if missing:
        raise ValueError(
            f"{path!r} lacks {missing}: a FlexPredict needs encoder, predictor and target_encoder "
            f"(use ViTEncoder.from_official_checkpoint for an encoder alone). It has: {sorted(states)}"
        )
    encoder_overrides = dict(encoder or {})
    encoder_config, stored_grid = _encoder_config(
        states["encoder"], "encoder", num_heads, image_size, encoder_overrides
    )
    mapping.check_state(states["target_encoder"], mapping.encoder_layout(encoder_config, stored_grid), "target_encoder")

    arch = mapping.infer_predictor(states["predictor"], "predictor")
    predictor_grid = arch.pop("grid")
    has_mask_token = arch.pop("has_mask_token")
    if predictor_grid != stored_grid:
        raise ValueError(
            f"The predictor's positional grid {predictor_grid} differs from the encoder's {stored_grid}."
        )
    if positional_noise == "none" and not has_mask_token:
        raise ValueError(
            "positional_noise='none' (I-JEPA) needs the predictor's `mask_token`, and the checkpoint "
            "has none: missing key predictor/mask_token (expected shape "
            f"{(1, 1, arch['hidden_dim'])})"
        )
    grid = tuple(s // encoder_config["patch_size"] for s in encoder_config["image_size"])
    sigma = 0.2 if encoder_config["hidden_dim"] == 1280 else 0.25  # the paper's ViT-H / ViT-B, L
    predictor_config = dict(
        arch, grid_size=grid, positional_noise=positional_noise, sigma=sigma,
        num_heads=encoder_config["num_heads"], layer_norm_epsilon=encoder_config["layer_norm_epsilon"],
    )
    predictor_config = _merged(predictor_config, predictor, "predictor")
    mapping.resolve_heads(predictor_config["hidden_dim"], predictor_config["num_heads"], "predictor")
    # StoP's predictor carries an unused mask token: it is ignored there.
    layout = mapping.predictor_layout(predictor_config, stored_grid, mask_token=positional_noise == "none")
    mapping.check_state(states["predictor"], layout, "predictor", ignored=("mask_token",))

    spec = copy.deepcopy(FLEXPREDICT_PRESETS["stop_vit_base_patch16_224_imagenet"]["masker"])
    masker_config = dict(spec, grid_size=grid, **(masker or {}))
    model = FlexPredict(
        encoder=ViTEncoder(**dict(encoder_config, name=encoder_config.get("name", "context_encoder"))),
        predictor=JEPAPredictor(**dict(predictor_config, name=predictor_config.get("name", "predictor"))),
        masker=MultiBlockMasker(**dict(masker_config, name=masker_config.get("name", "masker"))),
        **kwargs,
    )
    report = {}
    assignments = (
        mapping.encoder_assignments(model.encoder, "encoder", stored_grid, report)
        + mapping.encoder_assignments(model.target_encoder, "target_encoder", stored_grid, report)
        + mapping.predictor_assignments(model.predictor, "predictor", stored_grid, report)
    )
    mapping.assign(assignments, states, verbose)
    mapping.print_report(report, verbose)
    return model
