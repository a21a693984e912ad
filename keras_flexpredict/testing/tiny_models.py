"""Tiny configurations for tests, examples and CPU smoke runs."""

import numpy as np


def tiny_flexpredict(image_size=32, patch_size=4, positional_noise="stop", sigma=0.25, seed=0, **overrides):
    """A FlexPredict small enough to train for a few steps on a CPU in seconds:
    8x8 patch grid, width 32, one encoder block, one predictor block."""
    from keras_flexpredict.models.flex_predict import FlexPredict

    encoder = dict(image_size=image_size, patch_size=patch_size, hidden_dim=32, depth=1, num_heads=2)
    encoder.update(overrides.pop("encoder", {}))
    predictor = dict(hidden_dim=16, depth=1, num_heads=2, positional_noise=positional_noise, sigma=sigma, seed=seed)
    predictor.update(overrides.pop("predictor", {}))
    masker = dict(min_keep=4, seed=seed)
    masker.update(overrides.pop("masker", {}))
    return FlexPredict.from_preset(
        "stop_vit_base_patch16_224_imagenet", encoder=encoder, predictor=predictor, masker=masker, **overrides
    )


def structured_images(num_images, image_size=32, seed=0):
    """Float32 images with spatial structure (a bright square on a smooth gradient),
    so that predicting one region from another is learnable."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, image_size), np.linspace(0, 1, image_size), indexing="ij")
    images = np.empty((num_images, image_size, image_size, 3), np.float32)
    for i in range(num_images):
        angle = rng.uniform(0, 2 * np.pi)
        base = np.cos(angle) * xx + np.sin(angle) * yy
        img = np.stack([base * rng.uniform(0.5, 1.5) for _ in range(3)], axis=-1)
        s = image_size // 4
        top, left = rng.integers(0, image_size - s, size=2)
        img[top : top + s, left : left + s] += rng.uniform(1.0, 2.0, size=3)
        images[i] = img
    return (images - images.mean()) / images.std()
