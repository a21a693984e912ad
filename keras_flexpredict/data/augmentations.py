"""Image transforms of StoP / I-JEPA as stateless, seeded tf.data map functions.

Every training transform is a function `transform(image, seed)`: `image` is one
`(H, W, 3)` image (uint8, or float in [0, 255]) and `seed` a shape-`(2,)` integer
tensor. All randomness goes through TensorFlow's stateless random ops, so the
output depends only on the image and the seed: a pipeline that hands each element
its own seed (see `add_element_seeds`) is deterministic by its base seed, under
parallel maps too. Outputs are float32 `(image_size, image_size, 3)`, normalised
with the ImageNet mean and standard deviation.

tf.data is the data layer on every Keras backend, so these are TensorFlow ops.
"""

import math

import numpy as np
import tensorflow as tf

from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_range

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The blur radius range of StoP is given for 224-pixel crops.
BLUR_REFERENCE_SIZE = 224


def _image_size_pair(image_size):
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size), int(image_size))
    else:
        size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(
            f"`image_size` must be a positive int or a (height, width) pair. Received: image_size={image_size}"
        )
    return size


def normalize_image(image, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Maps an image with values in [0, 255] to `(image / 255 - mean) / std`.

    Args:
        image: tensor `(..., 3)`, uint8 or float in [0, 255].
        mean: 3 floats. Per-channel mean in [0, 1]. Defaults to ImageNet's.
        std: 3 floats. Per-channel standard deviation. Defaults to ImageNet's.

    Returns:
        float32 tensor of the same shape.

    Example:
    >>> x = normalize_image(tf.fill([2, 2, 3], 255.0))
    >>> [round(float(v), 3) for v in x[0, 0]]
    [2.249, 2.429, 2.64]
    """
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def sample_crop_parameters(image_shape, seed, scale=(0.3, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), max_attempts=10):
    """Samples a random-resized-crop window exactly as torchvision does.

    Up to `max_attempts` times: draw an area fraction uniformly in `scale` and an
    aspect ratio (width / height) log-uniformly in `ratio`; the first window that
    fits in the image is kept, at a uniform position. If none fits, the centre
    crop of the whole image with its aspect ratio clamped into `ratio` is used
    (torchvision's `RandomResizedCrop.get_params`, which the reference I-JEPA and
    StoP codes use). The attempts are drawn at once, so this is a fixed graph.

    Args:
        image_shape: `(height, width)` int tensor or tuple.
        seed: shape-`(2,)` int tensor, the stateless seed.
        scale: pair of floats. Range of the crop area as a fraction of the
            image area. Defaults to `(0.3, 1.0)` (StoP, I-JEPA).
        ratio: pair of floats. Range of the aspect ratio. Defaults to
            `(3/4, 4/3)`.
        max_attempts: int. Defaults to `10`.

    Returns:
        `(offset_y, offset_x, crop_height, crop_width)`, int32 scalars.

    Example:
    >>> y, x, h, w = sample_crop_parameters((100, 80), seed=tf.constant([1, 2]))
    >>> bool(0 <= y <= 100 - h and 0 <= x <= 80 - w)
    True
    """
    check_range("scale", scale, minimum=0.0, maximum=1.0)
    check_range("ratio", ratio, minimum=1e-6)
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    area = height * width * tf.random.stateless_uniform([max_attempts], seeds[0], scale[0], scale[1])
    log_ratio = tf.random.stateless_uniform([max_attempts], seeds[1], math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_ratio)
    crop_w = tf.round(tf.sqrt(area * aspect))
    crop_h = tf.round(tf.sqrt(area / aspect))
    fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    # Fallback: centre crop with the aspect ratio clamped into `ratio`.
    in_ratio = width / height
    fallback_w = tf.where(
        in_ratio > ratio[1], tf.round(height * ratio[1]), width
    )
    fallback_h = tf.where(in_ratio < ratio[0], tf.round(width / ratio[0]), height)
    any_fits = tf.reduce_any(fits)
    crop_h = tf.where(any_fits, crop_h[first], fallback_h)
    crop_w = tf.where(any_fits, crop_w[first], fallback_w)
    u = tf.random.stateless_uniform([2], seeds[2])
    # Uniform integer offsets in [0, size - crop] (the min guards u == 1 rounding).
    offset_y = tf.minimum(tf.floor(u[0] * (height - crop_h + 1.0)), height - crop_h)
    offset_x = tf.minimum(tf.floor(u[1] * (width - crop_w + 1.0)), width - crop_w)
    offset_y = tf.where(any_fits, offset_y, tf.floor((height - crop_h) / 2.0))
    offset_x = tf.where(any_fits, offset_x, tf.floor((width - crop_w) / 2.0))
    return tuple(tf.cast(v, tf.int32) for v in (offset_y, offset_x, crop_h, crop_w))


_INTERPOLATIONS = ("bilinear", "bicubic")


def _check_interpolation(interpolation):
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {_INTERPOLATIONS}. Received: interpolation={interpolation!r}"
        )


def random_resized_crop(
    image, image_size, seed, scale=(0.3, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), antialias=True, interpolation="bilinear"
):
    """Crops a random window (see `sample_crop_parameters`) and resizes it.

    Args:
        image: `(H, W, C)` tensor.
        image_size: int or `(height, width)`. Output size.
        seed: shape-`(2,)` int tensor.
        scale: pair of floats. Area range. Defaults to `(0.3, 1.0)`.
        ratio: pair of floats. Aspect-ratio range. Defaults to `(3/4, 4/3)`.
        antialias: bool. Antialiased resize (as PIL, which the reference codes
            use). Defaults to `True`.
        interpolation: `"bilinear"` (torchvision's default, I-JEPA / StoP) or
            `"bicubic"` (VISSL's linear evaluation). Defaults to `"bilinear"`.

    Returns:
        float32 `(height, width, C)` tensor, values in the input's range.

    Example:
    >>> out = random_resized_crop(tf.zeros([50, 60, 3], tf.uint8), 32, tf.constant([0, 1]))
    >>> out.shape.as_list()
    [32, 32, 3]
    """
    size = _image_size_pair(image_size)
    _check_interpolation(interpolation)
    y, x, h, w = sample_crop_parameters(tf.shape(image)[:2], seed, scale, ratio)
    crop = tf.cast(image[y : y + h, x : x + w], tf.float32)
    out = tf.image.resize(crop, size, method=interpolation, antialias=antialias)
    return tf.ensure_shape(out, size + (image.shape[-1],))


def gaussian_blur(image, sigma, kernel_radius):
    """Blurs an `(H, W, C)` float image with a Gaussian of standard deviation `sigma`.

    A separable filter of `2 * kernel_radius + 1` taps (the kernel is fixed in
    size, so `sigma` may be a tensor), with symmetric padding at the borders.

    Args:
        image: float `(H, W, C)` tensor.
        sigma: float scalar (tensor). Standard deviation in pixels (PIL's
            `GaussianBlur(radius)` is this standard deviation).
        kernel_radius: int. Half-width of the kernel; `ceil(3 * max sigma)`
            keeps 99.7% of the mass.

    Returns:
        float32 tensor of the same shape.

    Example:
    >>> x = tf.random.stateless_uniform([8, 8, 3], seed=[0, 0])
    >>> gaussian_blur(x, 1.0, 3).shape.as_list()
    [8, 8, 3]
    """
    image = tf.cast(image, tf.float32)
    channels = image.shape[-1]
    r = int(kernel_radius)
    taps = tf.range(-r, r + 1, dtype=tf.float32)
    sigma = tf.maximum(tf.cast(sigma, tf.float32), 1e-3)
    kernel = tf.exp(-0.5 * tf.square(taps / sigma))
    kernel = kernel / tf.reduce_sum(kernel)
    x = tf.pad(image[None], [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    k_h = tf.tile(tf.reshape(kernel, [2 * r + 1, 1, 1, 1]), [1, 1, channels, 1])
    k_w = tf.tile(tf.reshape(kernel, [1, 2 * r + 1, 1, 1]), [1, 1, channels, 1])
    x = tf.nn.depthwise_conv2d(x, k_h, [1, 1, 1, 1], "VALID")
    x = tf.nn.depthwise_conv2d(x, k_w, [1, 1, 1, 1], "VALID")
    return x[0]


def _to_grayscale(image):
    """ITU-R 601 luma, repeated on 3 channels (torchvision `RandomGrayscale`)."""
    return tf.tile(tf.image.rgb_to_grayscale(image), [1, 1, 3])


def _blend(image, other, factor):
    """`factor * image + (1 - factor) * other`, clipped to [0, 1] (PIL's `blend`)."""
    return tf.clip_by_value(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def color_jitter(image, seed, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0):
    """torchvision's `ColorJitter`: brightness, contrast, saturation and hue jitter in
    a random order, with factors drawn uniformly.

    Brightness scales the image by `U(1 - b, 1 + b)`; contrast blends it with the mean
    of its grey image by `U(1 - c, 1 + c)`; saturation blends it with its grey image by
    `U(1 - s, 1 + s)`; hue rotates it by `U(-h, h)` turns. Each result is clipped to
    the valid range. A strength of 0 leaves that property alone.

    Args:
        image: float `(H, W, 3)` tensor with values in [0, 255].
        seed: shape-`(2,)` int tensor.
        brightness: float >= 0. Defaults to `0.0`.
        contrast: float >= 0. Defaults to `0.0`.
        saturation: float >= 0. Defaults to `0.0`.
        hue: float in [0, 0.5]. Defaults to `0.0`.

    Returns:
        float32 `(H, W, 3)` tensor, values in [0, 255].

    Example:
    >>> x = tf.random.stateless_uniform([8, 8, 3], seed=[0, 0], maxval=255.0)
    >>> y = color_jitter(x, tf.constant([0, 1]), 0.4, 0.4, 0.4, 0.1)
    >>> y.shape.as_list(), bool(tf.reduce_min(y) >= 0.0)
    ([8, 8, 3], True)
    """
    for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not value >= 0:
            raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
    if not 0.0 <= hue <= 0.5:
        raise ValueError(f"`hue` must be in [0, 0.5]. Received: hue={hue}")
    image = tf.cast(image, tf.float32) / 255.0
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    u = tf.random.stateless_uniform([4], seeds[0])
    lows = tf.constant([max(0.0, 1.0 - brightness), max(0.0, 1.0 - contrast), max(0.0, 1.0 - saturation), -hue])
    highs = tf.constant([1.0 + brightness, 1.0 + contrast, 1.0 + saturation, hue])
    factors = lows + u * (highs - lows)
    order = tf.argsort(tf.random.stateless_uniform([4], seeds[1]))

    def gray(x):
        return tf.image.rgb_to_grayscale(x)

    branches = [
        lambda x: tf.clip_by_value(x * factors[0], 0.0, 1.0),
        lambda x: _blend(x, tf.reduce_mean(gray(x)), factors[1]),
        lambda x: _blend(x, gray(x), factors[2]),
        lambda x: tf.clip_by_value(tf.image.adjust_hue(x, factors[3]), 0.0, 1.0),
    ]
    for position in range(4):
        image = tf.switch_case(order[position], [lambda f=f, x=image: f(x) for f in branches])
    return image * 255.0


def _make_train_transform(
    image_size,
    crop_scale,
    crop_ratio,
    flip,
    blur_probability,
    blur_sigma,
    blur_reference_size,
    grayscale_probability,
    mean,
    std,
    antialias,
    interpolation="bilinear",
    color_jitter_probability=0.0,
    color_jitter_strength=(0.0, 0.0, 0.0, 0.0),
):
    size = _image_size_pair(image_size)
    _check_interpolation(interpolation)
    check_range("crop_scale", crop_scale, minimum=0.0, maximum=1.0)
    check_range("crop_ratio", crop_ratio, minimum=1e-6)
    check_float("blur_probability", blur_probability, minimum=0.0, maximum=1.0, allow_string=False)
    check_float("grayscale_probability", grayscale_probability, minimum=0.0, maximum=1.0, allow_string=False)
    check_float("color_jitter_probability", color_jitter_probability, minimum=0.0, maximum=1.0, allow_string=False)
    jitter = color_jitter_probability > 0 and any(v > 0 for v in color_jitter_strength)
    if jitter:  # checks the strengths now, not inside tf.data
        color_jitter(tf.zeros([1, 1, 3]), tf.constant([0, 0]), *color_jitter_strength)
    check_range("blur_sigma", blur_sigma, minimum=0.0)
    check_float("blur_reference_size", blur_reference_size, minimum=0, exclusive_minimum=True, allow_none=True, allow_string=False)
    # Blur radii are in pixels of a 224 crop; scale them with the output size.
    sigma_scale = 1.0 if blur_reference_size is None else min(size) / float(blur_reference_size)
    sigma_low, sigma_high = blur_sigma[0] * sigma_scale, blur_sigma[1] * sigma_scale
    kernel_radius = max(1, int(math.ceil(3.0 * sigma_high)))

    def transform(image, seed):
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
        image = random_resized_crop(image, size, seeds[0], crop_scale, crop_ratio, antialias, interpolation)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        if jitter:
            jitter_seeds = tf.random.experimental.stateless_split(seeds[4], 2)
            u = tf.random.stateless_uniform([], jitter_seeds[0])
            image = tf.cond(
                u < color_jitter_probability,
                lambda: color_jitter(image, jitter_seeds[1], *color_jitter_strength),
                lambda: tf.cast(image, tf.float32),
            )
        if grayscale_probability > 0:
            u = tf.random.stateless_uniform([], seeds[2])
            image = tf.cond(u < grayscale_probability, lambda: _to_grayscale(image), lambda: image)
        if blur_probability > 0 and sigma_high > 0:
            u = tf.random.stateless_uniform([2], seeds[3])
            sigma = sigma_low + u[1] * (sigma_high - sigma_low)
            image = tf.cond(
                u[0] < blur_probability,
                lambda: gaussian_blur(image, sigma, kernel_radius),
                lambda: image,
            )
        image = tf.clip_by_value(image, 0.0, 255.0)
        return tf.ensure_shape(normalize_image(image, mean, std), size + (3,))

    return transform


def stop_train_transform(
    image_size=224,
    crop_scale=(0.3, 1.0),
    crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
    blur_probability=0.5,
    blur_sigma=(0.1, 2.0),
    blur_reference_size=BLUR_REFERENCE_SIZE,
    grayscale_probability=0.2,
    flip=True,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    antialias=True,
):
    """StoP's training augmentation, as a seeded `transform(image, seed)`.

    In order (as in the StoP code): random resized crop (area 0.3-1.0, aspect
    3/4-4/3, torchvision's sampler), horizontal flip (p 0.5), grayscale (p 0.2),
    Gaussian blur (p 0.5, standard deviation uniform in 0.1-2.0 pixels at 224),
    ImageNet normalisation. StoP's colour jitter has strength 0 (identity) and is
    left out.

    Small images: the blur radius is given for 224-pixel crops, so it is
    multiplied by `min(image_size) / blur_reference_size` (at 32 px the
    standard deviation is 0.014-0.29 px; at 64 px 0.03-0.57 px). Pass
    `blur_reference_size=None` to use `blur_sigma` in pixels as given.

    Args:
        image_size: int or `(height, width)`. Output size. Defaults to `224`.
        crop_scale: pair of floats. Crop area range. Defaults to `(0.3, 1.0)`.
        crop_ratio: pair of floats. Crop aspect range. Defaults to `(3/4, 4/3)`.
        blur_probability: float. Defaults to `0.5`.
        blur_sigma: pair of floats. Range of the blur standard deviation in
            pixels at `blur_reference_size`. Defaults to `(0.1, 2.0)`.
        blur_reference_size: int or None. Defaults to `224`.
        grayscale_probability: float. Defaults to `0.2`.
        flip: bool. Random horizontal flip. Defaults to `True`.
        mean: 3 floats. Normalisation mean. Defaults to ImageNet's.
        std: 3 floats. Normalisation standard deviation. Defaults to ImageNet's.
        antialias: bool. Antialiased resize, like PIL. Defaults to `True`.

    Returns:
        A function `(image, seed) -> float32 (height, width, 3)`; `image` is
        `(H, W, 3)` uint8 or float in [0, 255]; `seed` a shape-`(2,)` int tensor.

    Example:
    >>> transform = stop_train_transform(32)
    >>> out = transform(tf.zeros([48, 40, 3], tf.uint8), tf.constant([0, 7]))
    >>> out.shape.as_list(), out.dtype.name
    ([32, 32, 3], 'float32')

    References:
    - [Bar et al., 2024](https://arxiv.org/abs/2308.00566) (StoP).
    """
    return _make_train_transform(
        image_size,
        crop_scale,
        crop_ratio,
        flip,
        blur_probability,
        blur_sigma,
        blur_reference_size,
        grayscale_probability,
        mean,
        std,
        antialias,
    )


def ijepa_train_transform(
    image_size=224,
    crop_scale=(0.3, 1.0),
    crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
    horizontal_flip=False,
    color_distortion=False,
    color_jitter_strength=0.0,
    gaussian_blur=False,
    blur_reference_size=BLUR_REFERENCE_SIZE,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    antialias=True,
):
    """I-JEPA's training augmentation, with the switches of its configs.

    The official I-JEPA code (facebookresearch/ijepa, `src/transforms.py`) builds its
    transform from the `data` flags of its configs, in this order: random resized crop
    (`crop_scale`, torchvision's sampler, aspect 3/4-4/3), horizontal flip
    (`use_horizontal_flip`), colour distortion (`use_color_distortion`: colour jitter
    of brightness, contrast, saturation `0.8 s` and hue `0.2 s` with p 0.8, `s =
    color_jitter_strength`, then grayscale with p 0.2), Gaussian blur
    (`use_gaussian_blur`: p 0.5, standard deviation 0.1-2.0 pixels), ImageNet
    normalisation. Every released config (ViT-H/14 and ViT-H/16-448 on ImageNet-1k,
    ViT-H/14 and ViT-g/16 on ImageNet-22k) sets `crop_scale: [0.3, 1.0]`, every flag to
    false and `color_jitter_strength: 0.0`, so the defaults here are crop and
    normalisation only: I-JEPA's published numbers come from that. (StoP's transform,
    `stop_train_transform`, adds flip, grayscale and blur.)

    Args:
        image_size: int or `(height, width)`. Output size (`crop_size`).
            Defaults to `224`.
        crop_scale: pair of floats. Crop area range. Defaults to `(0.3, 1.0)`.
        crop_ratio: pair of floats. Crop aspect range. Defaults to `(3/4, 4/3)`.
        horizontal_flip: bool. `use_horizontal_flip`. Defaults to `False`.
        color_distortion: bool. `use_color_distortion`. Defaults to `False`.
        color_jitter_strength: float >= 0. `color_jitter_strength`, the `s`
            above (the code's own default is 1.0, the configs' 0.0).
            Defaults to `0.0`.
        gaussian_blur: bool. `use_gaussian_blur`. Defaults to `False`.
        blur_reference_size: int or None. The blur radius is given for crops of
            this size and scaled to `image_size` (as in `stop_train_transform`).
            Defaults to `224`.
        mean: 3 floats. Normalisation mean. Defaults to ImageNet's.
        std: 3 floats. Normalisation standard deviation. Defaults to ImageNet's.
        antialias: bool. Antialiased resize, like PIL. Defaults to `True`.

    Returns:
        A function `(image, seed) -> float32 (height, width, 3)`.

    Example:
    >>> transform = ijepa_train_transform(32)
    >>> transform(tf.zeros([40, 40, 3]), tf.constant([0, 1])).shape.as_list()
    [32, 32, 3]
    >>> every_flag = ijepa_train_transform(
    ...     32, horizontal_flip=True, color_distortion=True,
    ...     color_jitter_strength=1.0, gaussian_blur=True)
    >>> every_flag(tf.zeros([40, 40, 3]), tf.constant([0, 1])).shape.as_list()
    [32, 32, 3]

    References:
    - [Assran et al., 2023](https://arxiv.org/abs/2301.08243) (I-JEPA).
    """
    for name, value in (
        ("horizontal_flip", horizontal_flip),
        ("color_distortion", color_distortion),
        ("gaussian_blur", gaussian_blur),
    ):
        if not isinstance(value, bool):
            raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")
    s = check_float("color_jitter_strength", color_jitter_strength, minimum=0)
    return _make_train_transform(
        image_size,
        crop_scale,
        crop_ratio,
        flip=horizontal_flip,
        blur_probability=0.5 if gaussian_blur else 0.0,
        blur_sigma=(0.1, 2.0) if gaussian_blur else (0.0, 0.0),
        blur_reference_size=blur_reference_size,
        grayscale_probability=0.2 if color_distortion else 0.0,
        mean=mean,
        std=std,
        antialias=antialias,
        color_jitter_probability=0.8 if color_distortion else 0.0,
        color_jitter_strength=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s),
    )


def vissl_train_transform(
    image_size=224,
    crop_scale=(0.08, 1.0),
    crop_ratio=(3.0 / 4.0, 4.0 / 3.0),
    interpolation="bicubic",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    antialias=True,
):
    """Training augmentation of VISSL's linear evaluation, as `transform(image, seed)`.

    `RandomResizedCrop(224, interpolation=3)` (torchvision's default area scale
    0.08-1 and ratio 3/4-4/3, bicubic) then `RandomHorizontalFlip` and ImageNet
    normalisation: the train transforms of VISSL's `vit_{b,l,h}16_no_cls` linear
    benchmark configs, which StoP's `bash/in1k_eval_vissl.sh` runs for its 100%
    probe. Its test-time counterpart is `eval_transform(224, interpolation="bicubic")`
    (`"vissl_eval"`).

    Args:
        image_size: int or `(height, width)`. Output size. Defaults to `224`.
        crop_scale: pair of floats. Crop area range. Defaults to `(0.08, 1.0)`.
        crop_ratio: pair of floats. Aspect-ratio range. Defaults to `(3/4, 4/3)`.
        interpolation: `"bicubic"` or `"bilinear"`. Defaults to `"bicubic"`.
        mean: 3 floats. Normalisation mean. Defaults to ImageNet's.
        std: 3 floats. Normalisation standard deviation. Defaults to ImageNet's.
        antialias: bool. Antialiased resize. Defaults to `True`.

    Returns:
        A function `(image, seed) -> float32 (height, width, 3)`.

    Example:
    >>> transform = vissl_train_transform(32)
    >>> transform(tf.zeros([40, 48, 3], tf.uint8), tf.constant([0, 3])).shape.as_list()
    [32, 32, 3]

    References:
        - [Goyal et al., VISSL, 2021](https://github.com/facebookresearch/vissl)
    """
    return _make_train_transform(
        image_size,
        crop_scale,
        crop_ratio,
        flip=True,
        blur_probability=0.0,
        blur_sigma=(0.0, 0.0),
        blur_reference_size=None,
        grayscale_probability=0.0,
        mean=mean,
        std=std,
        antialias=antialias,
        interpolation=interpolation,
    )


def eval_transform(
    image_size=224, crop_fraction=0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD, antialias=True, interpolation="bilinear"
):
    """Evaluation transform: resize the shorter side, centre crop, normalise.

    The shorter side is resized to `round(image_size / crop_fraction)` (256 for
    224 at 0.875), keeping the aspect ratio, then the central `image_size`
    window is cut out. With `crop_fraction=1.0` an image already of
    `image_size` passes through unchanged (apart from normalisation).

    Named variants (the `transform=` strings of the data pipelines):
    `"eval"` is the default here (256 / 224, bilinear); `"lowshot_eval"` is
    `crop_fraction=1.0` (shorter side to 224, centre crop 224, bilinear: StoP's
    official 1% logistic-regression protocol); `"vissl_eval"` is 256 / 224
    bicubic (VISSL's linear evaluation).

    Args:
        image_size: int or `(height, width)`. Output size. Defaults to `224`.
        crop_fraction: float in (0, 1]. Defaults to `0.875`.
        mean: 3 floats. Normalisation mean. Defaults to ImageNet's.
        std: 3 floats. Normalisation standard deviation. Defaults to ImageNet's.
        antialias: bool. Antialiased resize. Defaults to `True`.
        interpolation: `"bilinear"` or `"bicubic"`. Defaults to `"bilinear"`.

    Returns:
        A function `(image, seed=None) -> float32 (height, width, 3)`; the seed
        is accepted for a uniform signature and unused.

    Example:
    >>> transform = eval_transform(32)
    >>> transform(tf.zeros([40, 60, 3], tf.uint8)).shape.as_list()
    [32, 32, 3]
    """
    size = _image_size_pair(image_size)
    check_float("crop_fraction", crop_fraction, minimum=0, maximum=1, exclusive_minimum=True, allow_string=False)
    _check_interpolation(interpolation)
    resize_to = [int(round(s / crop_fraction)) for s in size]

    def transform(image, seed=None):
        del seed
        shape = tf.cast(tf.shape(image)[:2], tf.float32)
        # Scale so that both sides cover `resize_to` (the shorter side fits).
        factor = tf.maximum(resize_to[0] / shape[0], resize_to[1] / shape[1])
        new_shape = tf.cast(tf.round(shape * factor), tf.int32)
        new_shape = tf.maximum(new_shape, tf.constant(size, tf.int32))
        same = tf.reduce_all(tf.equal(new_shape, tf.shape(image)[:2]))
        image = tf.cast(image, tf.float32)
        image = tf.cond(
            same,
            lambda: image,
            lambda: tf.image.resize(image, new_shape, method=interpolation, antialias=antialias),
        )
        top = (new_shape[0] - size[0]) // 2
        left = (new_shape[1] - size[1]) // 2
        image = image[top : top + size[0], left : left + size[1]]
        image = tf.clip_by_value(image, 0.0, 255.0)
        return tf.ensure_shape(normalize_image(image, mean, std), size + (3,))

    return transform


def add_element_seeds(dataset, seed):
    """Zips a dataset with a stream of per-element stateless seeds.

    Element `i` of the result is `(element_i, seed_i)` with `seed_i` an int64
    `(2,)` tensor drawn by `tf.data.Dataset.random(seed)`: the same on every run
    with the same `seed`, and new on each pass over the data (epoch).

    Args:
        dataset: a `tf.data.Dataset`.
        seed: int. Base seed.

    Returns:
        A `tf.data.Dataset` of `(element, seed)` pairs.

    Example:
    >>> ds = add_element_seeds(tf.data.Dataset.range(3), seed=0)
    >>> [s.shape for _, s in ds.as_numpy_iterator()]
    [(2,), (2,), (2,)]
    """
    seeds = tf.data.Dataset.random(seed=int(seed), rerandomize_each_iteration=True).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip((dataset, seeds))
