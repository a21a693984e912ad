"""The mapping between the official I-JEPA / StoP parameter layout and the Keras
models: expected keys and shapes, architecture inference, and tensor-by-tensor
assignment (shared by the official `.pth.tar` and the Hugging Face readers)."""

import math
import re

import numpy as np

from keras_flexpredict.convert.positional_tables import positional_table_for_grid

# Attention heads of the standard widths (ViT-Ti/S/B/L/H and I-JEPA's ViT-g).
KNOWN_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}

_BLOCK_PARTS = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")


class ArrayTensor:
    """A tensor held as a NumPy array (or anything `np.asarray` reads), with the
    `shape` / `load()` interface of the lazy readers."""

    def __init__(self, value):
        self._value = value
        self.shape = tuple(int(s) for s in np.shape(value))

    def load(self):
        return np.asarray(self._value)


class DerivedTensor:
    """A tensor computed on demand (e.g. q, k, v fused into one qkv)."""

    def __init__(self, shape, fn):
        self.shape = tuple(shape)
        self._fn = fn

    def load(self):
        return self._fn()


def mlp_ratio_for(hidden, width):
    """The float `r` with `int(width * r) == hidden` (what `TransformerBlock` uses),
    e.g. ViT-g's 6144 / 1408 = 48 / 11."""
    ratio = hidden / width
    for _ in range(4):
        if int(width * ratio) == hidden:
            return ratio
        ratio = math.nextafter(ratio, math.inf)
    raise ValueError(f"No MLP ratio gives {hidden} hidden units at width {width}.")


def _count_blocks(state, prefix):
    indices = set()
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    for key in state:
        match = pattern.match(key)
        if match:
            indices.add(int(match.group(1)))
    if not indices:
        return 0
    depth = max(indices) + 1
    missing = sorted(set(range(depth)) - indices)
    if missing:
        raise ValueError(f"Blocks {missing} of `{prefix}` are missing (found up to {prefix}.{depth - 1}).")
    return depth


def square_grid(num_patches, what):
    side = int(round(math.sqrt(num_patches)))
    if side * side != num_patches:
        raise ValueError(
            f"{what} has {num_patches} positions, not a square grid; the official models are square. "
            f"Received: num_patches={num_patches}"
        )
    return (side, side)


def _require(state, part, key, ndim):
    if key not in state:
        raise ValueError(f"Checkpoint part `{part}` has no key {key!r}, needed to read the architecture.")
    shape = state[key].shape
    if len(shape) != ndim:
        raise ValueError(f"Checkpoint tensor {part}/{key} must have {ndim} dimensions. Received: shape={shape}")
    return shape


def _infer_blocks(state, part, prefix, width, what):
    """`depth`, `mlp_ratio` and `qkv_bias` of the block stack under `prefix`."""
    depth = _count_blocks(state, prefix)
    if depth == 0:
        raise ValueError(f"Checkpoint part `{part}` has no `{prefix}.<i>.*` keys: not {what}.")
    hidden = _require(state, part, f"{prefix}.0.mlp.fc1.weight", 2)[0]
    return dict(
        depth=depth,
        mlp_ratio=mlp_ratio_for(int(hidden), width),
        qkv_bias=f"{prefix}.0.attn.qkv.bias" in state,
    )


def infer_encoder(state, part):
    """Architecture of an official encoder state dict: `ViTEncoder` arguments plus the
    stored positional grid (`"grid"`)."""
    width, channels, patch, patch_w = _require(state, part, "patch_embed.proj.weight", 4)
    if patch != patch_w:
        raise ValueError(f"Only square patches are supported. Received: {part}/patch_embed.proj.weight shape={state['patch_embed.proj.weight'].shape}")
    blocks = _infer_blocks(state, part, "blocks", int(width), "a ViT encoder")
    pos = _require(state, part, "pos_embed", 3)
    return dict(
        patch_size=int(patch),
        hidden_dim=int(width),
        **blocks,
        num_channels=int(channels),
        grid=square_grid(pos[1], f"{part}/pos_embed"),
    )


def infer_predictor(state, part):
    """Architecture of an official predictor state dict: `JEPAPredictor` arguments
    plus `"grid"` and `"has_mask_token"`."""
    dp, de = _require(state, part, "predictor_embed.weight", 2)
    blocks = _infer_blocks(state, part, "predictor_blocks", int(dp), "a JEPA predictor")
    pos = _require(state, part, "predictor_pos_embed", 3)
    return dict(
        encoder_dim=int(de),
        hidden_dim=int(dp),
        **blocks,
        grid=square_grid(pos[1], f"{part}/predictor_pos_embed"),
        has_mask_token="mask_token" in state,
    )


def _block_layout(prefix, d, hidden, qkv_bias):
    layout = {}
    for name, shape in (
        ("norm1.weight", (d,)), ("norm1.bias", (d,)),
        ("attn.qkv.weight", (3 * d, d)), ("attn.qkv.bias", (3 * d,)),
        ("attn.proj.weight", (d, d)), ("attn.proj.bias", (d,)),
        ("norm2.weight", (d,)), ("norm2.bias", (d,)),
        ("mlp.fc1.weight", (hidden, d)), ("mlp.fc1.bias", (hidden,)),
        ("mlp.fc2.weight", (d, hidden)), ("mlp.fc2.bias", (d,)),
    ):
        if name == "attn.qkv.bias" and not qkv_bias:
            continue
        layout[f"{prefix}.{name}"] = shape
    return layout


def encoder_layout(config, grid):
    """`{key: shape}` of an official encoder with `ViTEncoder` config `config` whose
    stored positional table has grid `grid`."""
    d, p = config["hidden_dim"], config["patch_size"]
    hidden = int(d * config["mlp_ratio"])
    layout = {
        "patch_embed.proj.weight": (d, config["num_channels"], p, p),
        "patch_embed.proj.bias": (d,),
        "pos_embed": (1, grid[0] * grid[1], d),
    }
    for i in range(config["depth"]):
        layout.update(_block_layout(f"blocks.{i}", d, hidden, config["qkv_bias"]))
    layout.update({"norm.weight": (d,), "norm.bias": (d,)})
    return layout


def predictor_layout(config, grid, mask_token):
    """`{key: shape}` of an official predictor with `JEPAPredictor` config `config`."""
    de, dp = config["encoder_dim"], config["hidden_dim"]
    hidden = int(dp * config["mlp_ratio"])
    layout = {
        "predictor_embed.weight": (dp, de),
        "predictor_embed.bias": (dp,),
        "predictor_pos_embed": (1, grid[0] * grid[1], dp),
    }
    if mask_token:
        layout["mask_token"] = (1, 1, dp)
    for i in range(config["depth"]):
        layout.update(_block_layout(f"predictor_blocks.{i}", dp, hidden, config["qkv_bias"]))
    layout.update({
        "predictor_norm.weight": (dp,), "predictor_norm.bias": (dp,),
        "predictor_proj.weight": (de, dp), "predictor_proj.bias": (de,),
    })
    return layout


def check_state(state, layout, part, ignored=(), source=""):
    """Raises one `ValueError` listing every missing, unexpected and mis-shaped key
    of `state` against `layout` (keys in `ignored` may be present or not)."""
    problems = []
    for key, shape in layout.items():
        if key not in state:
            problems.append(f"missing key {part}/{key} (expected shape {shape})")
        elif tuple(state[key].shape) != tuple(shape):
            problems.append(
                f"key {part}/{key} has shape {tuple(state[key].shape)} in the checkpoint, "
                f"the model expects {tuple(shape)}"
            )
    for key in state:
        if key not in layout and key not in ignored:
            problems.append(f"unexpected key {part}/{key} with shape {tuple(state[key].shape)}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        where = f" of {source}" if source else ""
        raise ValueError(
            f"The checkpoint{where} does not match the model ({len(problems)} problem(s)):\n  "
            + "\n  ".join(shown)
        )


def resolve_heads(width, num_heads, what="encoder"):
    if num_heads is None:
        if width not in KNOWN_HEADS:
            raise ValueError(
                f"Cannot tell the number of attention heads of a {what} of width {width} "
                f"(known widths: {KNOWN_HEADS}); pass `num_heads`. Received: num_heads=None"
            )
        num_heads = KNOWN_HEADS[width]
    num_heads = int(num_heads)
    if num_heads < 1 or width % num_heads:
        raise ValueError(
            f"`num_heads` must divide the {what} width {width}. Received: num_heads={num_heads}"
        )
    return num_heads


def image_grid(image_size, patch_size, stored_grid):
    """`(image_size, grid)` to build at: the checkpoint's own size when `image_size`
    is None."""
    if image_size is None:
        return tuple(g * patch_size for g in stored_grid), tuple(stored_grid)
    size = (int(image_size), int(image_size)) if np.ndim(image_size) == 0 else tuple(int(s) for s in image_size)
    if len(size) != 2 or any(s < patch_size or s % patch_size for s in size):
        raise ValueError(
            f"`image_size` must be a positive multiple of the patch size {patch_size}. "
            f"Received: image_size={image_size}"
        )
    return size, (size[0] // patch_size, size[1] // patch_size)


# ----------------------------------------------------------------- assignment
def _linear(x):
    return np.transpose(x)


def _conv(x):
    return np.transpose(x, (2, 3, 1, 0))


def _block_assignments(block, prefix, qkv_bias):
    pairs = [
        (f"{prefix}.norm1.weight", block.norm1.gamma, None),
        (f"{prefix}.norm1.bias", block.norm1.beta, None),
        (f"{prefix}.attn.qkv.weight", block.qkv.kernel, _linear),
        (f"{prefix}.attn.proj.weight", block.attention_output.kernel, _linear),
        (f"{prefix}.attn.proj.bias", block.attention_output.bias, None),
        (f"{prefix}.norm2.weight", block.norm2.gamma, None),
        (f"{prefix}.norm2.bias", block.norm2.beta, None),
        (f"{prefix}.mlp.fc1.weight", block.mlp_hidden.kernel, _linear),
        (f"{prefix}.mlp.fc1.bias", block.mlp_hidden.bias, None),
        (f"{prefix}.mlp.fc2.weight", block.mlp_output.kernel, _linear),
        (f"{prefix}.mlp.fc2.bias", block.mlp_output.bias, None),
    ]
    if qkv_bias:
        pairs.append((f"{prefix}.attn.qkv.bias", block.qkv.bias, None))
    return pairs


def _positional(stored_grid, new_grid, report, name):
    def transform(x):
        table, how = positional_table_for_grid(np.reshape(x, (x.shape[-2], x.shape[-1])), stored_grid, new_grid)
        report[name] = how
        return table

    return transform


def encoder_assignments(encoder, part, stored_grid, report):
    """`[(key, variable, transform)]` that load an official encoder into `encoder`
    (a built `ViTEncoder`); `report[part + "/pos_embed"]` says how the positional
    table was made (`stored`, `sincos`, `bicubic`)."""
    pairs = [
        ("patch_embed.proj.weight", encoder.patch_embedding.projection.kernel, _conv),
        ("patch_embed.proj.bias", encoder.patch_embedding.projection.bias, None),
        ("pos_embed", encoder.positional_embedding.embeddings,
         _positional(stored_grid, encoder.grid_size, report, f"{part}/pos_embed")),
        ("norm.weight", encoder.norm.gamma, None),
        ("norm.bias", encoder.norm.beta, None),
    ]
    for i, block in enumerate(encoder.blocks):
        pairs += _block_assignments(block, f"blocks.{i}", encoder.qkv_bias)
    return [(part, key, variable, fn) for key, variable, fn in pairs]


def predictor_assignments(predictor, part, stored_grid, report):
    """As `encoder_assignments`, for a built `JEPAPredictor` (the mask token only
    with `positional_noise="none"`)."""
    pairs = [
        ("predictor_embed.weight", predictor.context_projection.kernel, _linear),
        ("predictor_embed.bias", predictor.context_projection.bias, None),
        ("predictor_pos_embed", predictor.positional_embedding,
         _positional(stored_grid, predictor.grid_size, report, f"{part}/predictor_pos_embed")),
        ("predictor_norm.weight", predictor.norm.gamma, None),
        ("predictor_norm.bias", predictor.norm.beta, None),
        ("predictor_proj.weight", predictor.output_projection.kernel, _linear),
        ("predictor_proj.bias", predictor.output_projection.bias, None),
    ]
    if predictor.positional_noise == "none":
        pairs.append(("mask_token", predictor.masked_token_embedding.mask_token, lambda x: np.reshape(x, (-1,))))
    for i, block in enumerate(predictor.blocks):
        pairs += _block_assignments(block, f"predictor_blocks.{i}", predictor.qkv_bias)
    return [(part, key, variable, fn) for key, variable, fn in pairs]


def assign(assignments, states, verbose=True, description="Loading weights"):
    """Loads each `(part, key, variable, transform)` from `states[part][key]`, one
    tensor at a time (the source stays memory-mapped), with a progress bar."""
    from tqdm.auto import tqdm

    for part, key, variable, transform in tqdm(
        assignments, desc=description, unit="tensor", disable=not verbose, leave=False
    ):
        value = states[part][key].load()
        value = np.asarray(value, np.float32)
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Tensor {part}/{key} becomes shape {tuple(value.shape)}, but variable "
                f"{variable.path} has shape {tuple(variable.shape)}"
            )
        variable.assign(value)
        del value


def print_report(report, verbose):
    """Says how each positional table was made when it was not loaded as stored."""
    if not verbose:
        return
    for name, how in sorted(report.items()):
        if how == "sincos":
            print(f"{name}: sin-cos table recomputed for the new grid")
        elif how == "bicubic":
            print(f"{name}: not a sin-cos table; resampled bicubically to the new grid")
