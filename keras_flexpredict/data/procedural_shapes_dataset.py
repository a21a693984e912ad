"""The procedural shapes data set as a tf.data pipeline."""

import numpy as np
import tensorflow as tf

from keras_flexpredict.data import _pipeline
from keras_flexpredict.data.augmentations import add_element_seeds
from keras_flexpredict.data.augmentations import normalize_image
from keras_flexpredict.data.procedural_shapes import LABEL_NAMES
from keras_flexpredict.data.procedural_shapes import make_procedural_shapes
from keras_flexpredict.data.procedural_shapes import procedural_shapes_num_classes


def _label_keys(label):
    keys = (label,) if isinstance(label, str) else tuple(label)
    if not keys or any(k not in LABEL_NAMES for k in keys) or len(set(keys)) != len(keys):
        raise ValueError(
            f"`label` must be None, one of {LABEL_NAMES} or a tuple of distinct ones. Received: label={label}"
        )
    return keys


def procedural_shapes_class_labels(labels, label="shape", max_count=4, grid_size=2):
    """Class indices of a procedural-shapes label, or of a combination of labels.

    `"count"` (1..max_count) becomes `count - 1`; a tuple of labels becomes one
    class index in mixed radix, the first label most significant (e.g.
    `("shape", "count")` -> `shape * max_count + count - 1`).

    Args:
        labels: the `"labels"` dict of `make_procedural_shapes`.
        label: str or tuple of str, from `LABEL_NAMES`. Defaults to `"shape"`.
        max_count: int. As given to the generator. Defaults to `4`.
        grid_size: int. As given to the generator. Defaults to `2`.

    Returns:
        `(class_indices int32 (N,), num_classes int)`.

    Example:
    >>> from keras_flexpredict.data.procedural_shapes import make_procedural_shapes
    >>> data = make_procedural_shapes(4, image_size=32)
    >>> y, n = procedural_shapes_class_labels(data["labels"], ("shape", "count"))
    >>> n
    20
    """
    keys = _label_keys(label)
    sizes = procedural_shapes_num_classes(max_count, grid_size)
    index = np.zeros_like(np.asarray(labels[keys[0]]), dtype=np.int64)
    total = 1
    for key in keys:
        values = np.asarray(labels[key], np.int64) - (1 if key == "count" else 0)
        index = index * sizes[key] + values
        total *= sizes[key]
    return index.astype(np.int32), total


def _prepare_image(image, s, transform_fn, needs_seed):
    if transform_fn is None:
        return normalize_image(image)
    return transform_fn(image, s) if needs_seed else transform_fn(image)


def _endless(images, labels, transform_fn, needs_seed, seed, batch_size, steps_per_epoch, initial_epoch):
    """The resumable endless stream (see `_pipeline.endless_epochs`)."""
    images_t = tf.constant(images)
    labels_t = None if labels is None else tf.constant(labels)

    def make_batches(stream):
        def element(i, s):
            image = _prepare_image(tf.gather(images_t, i), s, transform_fn, needs_seed)
            return image if labels_t is None else (image, tf.gather(labels_t, i))

        stream = stream.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return stream.batch(batch_size, drop_remainder=True)

    base = _pipeline.element_seed(seed, 0)
    stream = _pipeline.endless_epochs(len(images), base, batch_size, steps_per_epoch, initial_epoch, make_batches)
    return stream.prefetch(tf.data.AUTOTUNE)


def procedural_shapes_dataset(
    num_images,
    image_size=64,
    seed=0,
    label="shape",
    batch_size=None,
    training=False,
    transform=None,
    output_size=None,
    max_count=4,
    grid_size=2,
    noise_std=4.0,
    max_rotation=30.0,
    drop_remainder=None,
    steps_per_epoch=None,
    initial_epoch=0,
):
    """The procedural shapes data set (`make_procedural_shapes`) as a tf.data pipeline.

    The images are generated once in memory (deterministic by `seed`), then
    normalised with the ImageNet mean and standard deviation, optionally
    augmented with per-element seeds, shuffled each epoch when `training`,
    batched and prefetched. The whole pipeline is deterministic by `seed`.
    Use a different `seed` for an evaluation split.

    Args:
        num_images: int. Number of images.
        image_size: int. Generated image size. Defaults to `64`.
        seed: int. Seeds generation, shuffling and augmentation. Defaults to `0`.
        label: str, tuple of str or None. The label to yield (see
            `procedural_shapes_class_labels`); None yields images only (for
            self-supervised pretraining). Defaults to `"shape"`.
        batch_size: int or None (unbatched). Defaults to `None`.
        training: bool. Shuffle each epoch and drop the last partial batch.
            Defaults to `False`.
        transform: None (normalise only), `"stop"`, `"ijepa"`, `"eval"`,
            `"lowshot_eval"`, `"vissl_train"`, `"vissl_eval"` or a callable
            `fn(image_uint8, seed)`. Defaults to `None`.
        output_size: int or None. Output size of a transform; None means
            `image_size`. Defaults to `None`.
        max_count: int. See `make_procedural_shapes`. Defaults to `4`.
        grid_size: int. See `make_procedural_shapes`. Defaults to `2`.
        noise_std: float. See `make_procedural_shapes`. Defaults to `4.0`.
        max_rotation: float. See `make_procedural_shapes`. Defaults to `30.0`.
        drop_remainder: bool or None. None means `training`. Defaults to `None`.
        steps_per_epoch: int or None. None: one pass per iteration. An int (with
            `training` and `batch_size`): an endless stream for
            `fit(..., steps_per_epoch=steps_per_epoch)` that a resumed run can
            restart exactly: pass `p` follows a permutation drawn from
            `(seed, p)` alone, each image's augmentation a seed drawn from its
            position in the stream, and epoch `e` is the `steps_per_epoch`
            batches read from position `e * steps_per_epoch * batch_size`
            (batches run across passes). Defaults to `None`.
        initial_epoch: int. With `steps_per_epoch`: the first epoch of the
            stream (the epoch `fit` resumes at). Defaults to `0`.

    Returns:
        A `tf.data.Dataset` of `(image float32 (H, W, 3), label int32)`
        (batched when `batch_size` is set), or of images when `label` is None.

    Example:
    >>> ds = procedural_shapes_dataset(8, image_size=32, batch_size=4)
    >>> images, labels = next(iter(ds))
    >>> images.shape.as_list(), labels.dtype.name
    ([4, 32, 32, 3], 'int32')
    """
    _pipeline.check_batch_size(batch_size)
    _pipeline.check_epoch_arguments(steps_per_epoch, initial_epoch, training)
    if steps_per_epoch is not None and batch_size is None:
        raise ValueError(f"`steps_per_epoch` needs a `batch_size`. Received: batch_size={batch_size}")
    keys = None if label is None else _label_keys(label)
    if transform is None:
        transform_fn, needs_seed = None, False
    else:
        transform_fn, needs_seed = _pipeline.resolve_transform(
            transform, image_size if output_size is None else output_size, training
        )
    data = make_procedural_shapes(
        num_images,
        image_size=image_size,
        seed=seed,
        max_count=max_count,
        grid_size=grid_size,
        noise_std=noise_std,
        max_rotation=max_rotation,
    )
    images = data["images"]
    y = None if keys is None else procedural_shapes_class_labels(data["labels"], keys, max_count, grid_size)[0]
    if steps_per_epoch is not None:
        return _endless(images, y, transform_fn, needs_seed, seed, batch_size, steps_per_epoch, initial_epoch)
    if keys is None:
        ds = tf.data.Dataset.from_tensor_slices(images)
    else:
        ds = tf.data.Dataset.from_tensor_slices((images, y))
    if training:
        ds = ds.shuffle(len(images), seed=int(seed), reshuffle_each_iteration=True)
    if needs_seed:
        ds = add_element_seeds(ds, _pipeline.element_seed(seed, 0))
    else:
        ds = ds.map(lambda *e: (e if len(e) > 1 else e[0], tf.zeros([2], tf.int64)))

    def prepare(element, s):
        image, rest = (element[0], element[1:]) if isinstance(element, tuple) else (element, ())
        image = _prepare_image(image, s, transform_fn, needs_seed)
        return (image,) + tuple(rest) if rest else image

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size is not None:
        ds = ds.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
