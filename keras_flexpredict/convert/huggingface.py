"""Reading a Hugging Face `IJepaModel` folder (`config.json` + `model.safetensors`)
into a `ViTEncoder`, and downloading `hf://` handles.

The Hugging Face I-JEPA (e.g. `facebook/ijepa_vith14_1k`) is the official encoder with
q, k, v as separate projections; they are fused back into one qkv kernel here. Both
the key names the Hub files carry (`encoder.layer.<i>.attention.attention.query`, ...)
and those of `transformers` 5 (`layers.<i>.attention.q_proj`, ...) are read; an
`IJepaForImageClassification` folder gives its backbone (`ijepa.` prefix), its
classifier and pooler are not part of the encoder and are skipped. The safetensors
file is memory-mapped; nothing here needs PyTorch or `transformers`.
"""

import json
import os
import re

import numpy as np

from keras_flexpredict.convert import mapping
from keras_flexpredict.convert.safetensors_reader import open_safetensors

_SKIPPED = ("classifier.", "pooler.", "embeddings.mask_token")
# transformers 4 (the Hub files) -> transformers 5 names; order matters.
_V4_TO_V5 = (
    (r"^encoder\.layer\.", "layers."),
    (r"attention\.attention\.query", "attention.q_proj"),
    (r"attention\.attention\.key", "attention.k_proj"),
    (r"attention\.attention\.value", "attention.v_proj"),
    (r"attention\.output\.dense", "attention.o_proj"),
    (r"intermediate\.dense", "mlp.fc1"),
    (r"\.output\.dense", ".mlp.fc2"),
)
_V5_TO_OFFICIAL = (
    (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^layers\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.mlp\.fc1\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.mlp\.fc2\.", r"blocks.\1.mlp.fc2."),
    (r"^layernorm\.", "norm."),
)
_QKV = re.compile(r"^layers\.(\d+)\.attention\.([qkv])_proj\.(weight|bias)$")


def is_hf_ijepa_directory(path):
    """Whether `path` is a folder with a Hugging Face I-JEPA `config.json`."""
    config = os.path.join(os.fspath(path), "config.json")
    if not os.path.isfile(config):
        return False
    try:
        with open(config) as f:
            return json.load(f).get("model_type") == "ijepa"
    except (OSError, ValueError):
        return False


def read_hf_config(directory):
    """`ViTEncoder` arguments from a Hugging Face I-JEPA `config.json`."""
    path = os.path.join(os.fspath(directory), "config.json")
    with open(path) as f:
        config = json.load(f)
    if config.get("model_type") != "ijepa":
        raise ValueError(f"{path} is not an I-JEPA config. Received: model_type={config.get('model_type')!r}")
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_python"):
        raise ValueError(f"Only the exact GELU of I-JEPA is supported. Received: hidden_act={act!r} in {path}")
    patch = config.get("patch_size", 16)
    if isinstance(patch, (list, tuple)):
        if len(set(patch)) != 1:
            raise ValueError(f"Only square patches are supported. Received: patch_size={patch} in {path}")
        patch = patch[0]
    size = config.get("image_size", 224)
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    width = int(config.get("hidden_size", 768))
    return dict(
        image_size=tuple(int(s) for s in size),
        patch_size=int(patch),
        hidden_dim=width,
        depth=int(config.get("num_hidden_layers", 12)),
        num_heads=int(config.get("num_attention_heads", 12)),
        mlp_ratio=mapping.mlp_ratio_for(int(config.get("intermediate_size", 4 * width)), width),
        qkv_bias=bool(config.get("qkv_bias", True)),
        layer_norm_epsilon=float(config.get("layer_norm_eps", 1e-12)),
        num_channels=int(config.get("num_channels", 3)),
    )


def read_hf_weights(directory):
    """`{key: lazy tensor}` of the folder's `model.safetensors` (or its shards)."""
    directory = os.fspath(directory)
    single = os.path.join(directory, "model.safetensors")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(single):
        return open_safetensors(single)
    if os.path.isfile(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        tensors = {}
        for name in files:
            tensors.update(open_safetensors(os.path.join(directory, name)))
        return tensors
    present = sorted(os.listdir(directory))
    raise FileNotFoundError(
        f"No model.safetensors (or model.safetensors.index.json) in {directory}; only safetensors "
        f"weights are read (save with `save_pretrained(..., safe_serialization=True)`). Found: {present}"
    )


def _rename(key, table):
    for pattern, replacement in table:
        key = re.sub(pattern, replacement, key)
    return key


def official_state_from_hf(tensors, config):
    """The official (fused-qkv) layout `{key: lazy tensor}` of Hugging Face I-JEPA
    weights; raises one error listing every missing, unexpected or mis-shaped key."""
    d = config["hidden_dim"]
    state, qkv, problems = {}, {}, []
    for key, tensor in tensors.items():
        name = key[len("ijepa."):] if key.startswith("ijepa.") else key
        if name.startswith(_SKIPPED):
            continue
        v5 = _rename(name, _V4_TO_V5)
        match = _QKV.match(v5)
        if match:
            qkv[(int(match.group(1)), match.group(2), match.group(3))] = (key, tensor)
            continue
        official = _rename(v5, _V5_TO_OFFICIAL)
        if official == v5 and not official.startswith(("patch_embed", "pos_embed", "blocks", "norm")):
            problems.append(f"unexpected key {key} with shape {tensor.shape}")
            continue
        state[official] = tensor
    kinds = ("weight", "bias") if config["qkv_bias"] else ("weight",)
    for i in range(config["depth"]):
        for kind in kinds:
            parts, expected = [], (d, d) if kind == "weight" else (d,)
            for letter in "qkv":
                entry = qkv.pop((i, letter, kind), None)
                if entry is None:
                    problems.append(f"missing key layers.{i}.attention.{letter}_proj.{kind} (expected shape {expected})")
                elif entry[1].shape != expected:
                    problems.append(
                        f"key {entry[0]} has shape {entry[1].shape} in the checkpoint, the model expects {expected}"
                    )
                else:
                    parts.append(entry[1])
            if len(parts) == 3:
                state[f"blocks.{i}.attn.qkv.{kind}"] = mapping.DerivedTensor(
                    (3 * d,) + expected[1:], lambda parts=parts: np.concatenate([p.load() for p in parts], axis=0)
                )
    for (i, letter, kind), (key, tensor) in qkv.items():
        problems.append(f"unexpected key {key} with shape {tensor.shape}")
    if problems:
        raise ValueError(
            f"The Hugging Face weights do not match the config ({len(problems)} problem(s)):\n  "
            + "\n  ".join(problems[:20])
        )
    return state


def hf_encoder(directory, image_size=None, verbose=True, **overrides):
    """A `ViTEncoder` with the weights of a Hugging Face `IJepaModel` folder; see
    `ViTEncoder.from_preset`. `image_size` other than the config's recomputes a sin-cos
    table and resamples any other one bicubically (as `interpolate_pos_encoding`)."""
    from keras_flexpredict.models.vit_encoder import ViTEncoder

    directory = os.fspath(directory)
    config = read_hf_config(directory)
    stored_grid = tuple(s // config["patch_size"] for s in config["image_size"])
    state = official_state_from_hf(read_hf_weights(directory), config)
    size, _ = mapping.image_grid(image_size, config["patch_size"], stored_grid)
    config = dict(config, image_size=size, **overrides)
    mapping.resolve_heads(config["hidden_dim"], config["num_heads"])
    mapping.check_state(state, mapping.encoder_layout(config, stored_grid), "ijepa", source=directory)
    config.setdefault("name", "vit_encoder")
    encoder = ViTEncoder(**config)
    encoder.build((None, *encoder.image_size, encoder.num_channels))
    report = {}
    mapping.assign(mapping.encoder_assignments(encoder, "ijepa", stored_grid, report), {"ijepa": state}, verbose)
    mapping.print_report(report, verbose)
    return encoder


def download_hf(handle):
    """Local folder of an `hf://<owner>/<name>[@<revision>]` handle (via
    `huggingface_hub.snapshot_download`: config, safetensors and JSON files only)."""
    if not str(handle).startswith("hf://"):
        raise ValueError(f"Expected an hf://<owner>/<name> handle. Received: {handle!r}")
    repo = str(handle)[len("hf://"):].strip("/")
    revision = None
    if "@" in repo:
        repo, revision = repo.split("@", 1)
    if repo.count("/") != 1:
        raise ValueError(f"Expected an hf://<owner>/<name> handle. Received: {handle!r}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:
        raise ImportError(
            f"Downloading {handle} needs `huggingface_hub` (`pip install huggingface_hub`); or download "
            "the folder yourself and pass its local path."
        ) from e
    try:
        return snapshot_download(
            repo, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.weights.h5"]
        )
    except Exception as e:  # offline, unknown repository, gated model, ...
        raise OSError(
            f"Could not download {handle} ({type(e).__name__}: {e}). Without network access, copy the "
            "folder (config.json + model.safetensors) to this machine and pass its local path."
        ) from e
