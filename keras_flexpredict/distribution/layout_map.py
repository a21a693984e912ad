"""`keras.distribution.LayoutMap` for model-parallel FlexPredict / ViT training (JAX)."""

import keras

# Megatron-style tensor parallelism of every `TransformerBlock` (context encoder, target
# encoder and predictor alike; their variable paths all end in `block_<i>/<layer>/...`):
# the layers that widen the tokens (fused qkv, first MLP layer) are split along their
# OUTPUT features, the layers that narrow them back (attention output, second MLP
# layer) along their INPUT features, so each pair needs one reduction across the model
# axis. The output biases of the narrowing layers, LayerNorms, the patch embedding and
# the small projections stay replicated.
# Regexes are matched against `variable.path` with `re.fullmatch`.
VIT_SHARDING_RULES = (
    (r".*block_\d+/qkv/kernel", (None, "{model}")),
    (r".*block_\d+/qkv/bias", ("{model}",)),
    (r".*block_\d+/attention_output/kernel", ("{model}", None)),
    (r".*block_\d+/mlp_hidden/kernel", (None, "{model}")),
    (r".*block_\d+/mlp_hidden/bias", ("{model}",)),
    (r".*block_\d+/mlp_output/kernel", ("{model}", None)),
)


def vit_layout_map(device_mesh, model_axis="model"):
    """A `LayoutMap` that shards the attention and MLP kernels of every ViT block.

    For `keras.distribution.ModelParallel` on JAX (ViT-H, ViT-G, or any model too large
    for data parallelism alone). The rules (`VIT_SHARDING_RULES`) cover every
    `TransformerBlock` of the context encoder, the EMA target encoder (so the in-step EMA
    update combines identically sharded arrays) and the predictor:

    | variable | layout |
    |---|---|
    | `block_i/qkv/kernel` `(D, 3D)`, `block_i/mlp_hidden/kernel` `(D, rD)` | `(None, model)` |
    | `block_i/qkv/bias`, `block_i/mlp_hidden/bias` | `(model,)` |
    | `block_i/attention_output/kernel` `(D, D)`, `block_i/mlp_output/kernel` `(rD, D)` | `(model, None)` |
    | everything else | replicated |

    The size of the model axis must divide the widths involved (`D`, `3D` and the MLP
    width of the encoder and of the predictor): JAX refuses uneven shards. The fused
    `qkv` kernel is split along its `3D` outputs, so XLA regroups q, k and v by head
    inside the step (correct for any head count; the fastest split puts a whole number
    of heads on every device, e.g. 16 heads over 8 or 16 devices for ViT-H/G).

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with an axis named `model_axis`
            (and usually a data axis, e.g. `("batch", "model")`).
        model_axis: str. The mesh axis to shard along. Defaults to `"model"`.

    Returns:
        A `keras.distribution.LayoutMap`.

    Example:
    >>> mesh = keras.distribution.DeviceMesh(
    ...     (1, 2), ("batch", "model"), devices=["cpu:0", "cpu:1"])
    >>> layout_map = vit_layout_map(mesh)
    >>> layout_map["flex_predict/context_encoder/block_0/qkv/kernel"].axes
    (None, 'model')
    >>> layout_map["flex_predict/predictor/block_3/mlp_output/kernel"].axes
    ('model', None)
    >>> layout_map["flex_predict/context_encoder/norm/gamma"] is None
    True
    """
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise ValueError(
            f"`device_mesh` must be a keras.distribution.DeviceMesh. Received: device_mesh={device_mesh!r}"
        )
    if model_axis not in device_mesh.axis_names:
        raise ValueError(
            f"`model_axis` must be one of the mesh axes {tuple(device_mesh.axis_names)}. "
            f"Received: model_axis={model_axis!r}"
        )
    layout_map = keras.distribution.LayoutMap(device_mesh)
    for pattern, axes in VIT_SHARDING_RULES:
        layout_map[pattern] = tuple(None if a is None else a.format(model=model_axis) for a in axes)
    return layout_map
