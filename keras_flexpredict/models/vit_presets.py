"""Standard ViT sizes (widths, depths, heads) as `ViTEncoder` constructor arguments."""

_SIZES = {
    "tiny": dict(hidden_dim=192, depth=12, num_heads=3),
    "small": dict(hidden_dim=384, depth=12, num_heads=6),
    "base": dict(hidden_dim=768, depth=12, num_heads=12),
    "large": dict(hidden_dim=1024, depth=24, num_heads=16),
    "huge": dict(hidden_dim=1280, depth=32, num_heads=16),
    # I-JEPA's ViT-G ("vit_giant"): 1408 wide, 40 deep, MLP ratio 48/11.
    "giant": dict(hidden_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
}

VIT_PRESETS = {
    f"vit_{size}_patch{patch}_224": dict(image_size=224, patch_size=patch, **config)
    for size, config in _SIZES.items()
    for patch in (14, 16)
}
