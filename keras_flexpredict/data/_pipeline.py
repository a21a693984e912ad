"""The shared tf.data body of the image pipelines: decode, skip bad images, augment, batch.

Corrupt or unreadable images are dropped by `Dataset.ignore_errors`, which skips
an element whose map raised and goes on. To count those skips, each element gets
its position in the (shuffled, sharded) stream before decoding; after
`ignore_errors` a gap in the positions is a skipped image. A sentinel element
(always decodable) closes the stream so that skips at its very end are counted
too. Only when a gap shows up does a `tf.py_function` call the Python counter.
"""

import numpy as np
import tensorflow as tf

from keras_flexpredict.data.augmentations import add_element_seeds
from keras_flexpredict.data.augmentations import eval_transform
from keras_flexpredict.data.augmentations import ijepa_train_transform
from keras_flexpredict.data.augmentations import stop_train_transform
from keras_flexpredict.data.augmentations import vissl_train_transform

TRANSFORMS = ("stop", "ijepa", "eval", "lowshot_eval", "vissl_train", "vissl_eval")


def resolve_transform(transform, image_size, training):
    """Maps `None` / a name / a callable to `(fn(image, seed), needs_seed)`."""
    if transform is None:
        transform = "stop" if training else "eval"
    if callable(transform):
        return transform, True
    if transform == "stop":
        return stop_train_transform(image_size), True
    if transform == "ijepa":
        return ijepa_train_transform(image_size), True
    if transform == "eval":
        return eval_transform(image_size), False
    if transform == "lowshot_eval":
        # StoP's logistic_eval.py: Resize(224) + CenterCrop(224), bilinear.
        return eval_transform(image_size, crop_fraction=1.0), False
    if transform == "vissl_train":
        return vissl_train_transform(image_size), True
    if transform == "vissl_eval":
        return eval_transform(image_size, interpolation="bicubic"), False
    raise ValueError(f"`transform` must be one of {TRANSFORMS}, a callable or None. Received: transform={transform}")


def check_shard(shard_index, num_shards):
    if not isinstance(num_shards, (int, np.integer)) or num_shards < 1:
        raise ValueError(f"`num_shards` must be a positive int. Received: num_shards={num_shards}")
    if not isinstance(shard_index, (int, np.integer)) or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"`shard_index` must be an int in [0, num_shards). Received: shard_index={shard_index}, num_shards={num_shards}"
        )


def check_batch_size(batch_size):
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"`batch_size` must be a positive int or None. Received: batch_size={batch_size}")


def element_seed(seed, shard_index):
    """A per-process base seed, so hosts do not draw the same augmentations."""
    return int(np.random.SeedSequence([int(seed), int(shard_index)]).generate_state(1)[0])


def _known_format(data):
    """True when `data` starts like a JPEG, PNG, GIF or BMP file."""
    head4 = tf.strings.substr(data, 0, 4)
    head3 = tf.strings.substr(data, 0, 3)
    head2 = tf.strings.substr(data, 0, 2)
    return tf.reduce_any(
        tf.stack(
            [
                tf.equal(head3, b"\xff\xd8\xff"),
                tf.equal(head4, b"\x89PNG"),
                tf.equal(head4, b"GIF8"),
                tf.equal(head2, b"BM"),
            ]
        )
    )


def decode_image_bytes(data, name):
    """Decodes encoded image bytes to uint8 `(H, W, 3)`; raises (naming `name`) if unknown."""
    check = tf.debugging.Assert(_known_format(data), ["Not a JPEG/PNG/GIF/BMP image:", name])
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    return tf.ensure_shape(image, [None, None, 3])


def build_image_pipeline(
    source,
    read_fn,
    transform_fn,
    needs_seed,
    training,
    batch_size,
    seed,
    shard_index,
    counter,
    shuffle_buffer_size,
    drop_remainder,
    with_labels,
    num_parallel_calls,
):
    """Decodes, augments and batches `source`, skipping and counting bad images.

    `source` yields `(x, label)`, already sharded; `read_fn(x)` returns
    `(encoded_bytes, name)`, `name` a string naming the image in errors.
    """
    if training:
        source = source.shuffle(shuffle_buffer_size, seed=int(seed), reshuffle_each_iteration=True)
    if needs_seed:
        source = add_element_seeds(source, element_seed(seed, shard_index))
    else:
        source = source.map(lambda x, label: ((x, label), tf.zeros([2], tf.int64)))
    source = source.map(lambda xl, s: (xl[0], xl[1], s, False))
    # The sentinel closes the stream; its `x` is a dummy of the right structure.
    x_spec, label_spec = source.element_spec[0], source.element_spec[1]
    dummy = lambda spec: tf.constant("") if spec.dtype == tf.string else tf.zeros([], spec.dtype)
    sentinel = tf.data.Dataset.from_tensors(
        (tf.nest.map_structure(dummy, x_spec), dummy(label_spec), tf.zeros([2], tf.int64), True)
    )
    sentinel_png = tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8))
    stream = source.concatenate(sentinel).enumerate()

    def decode(position, element):
        x, label, s, is_sentinel = element
        data, name = tf.cond(
            is_sentinel,
            lambda: (sentinel_png, tf.constant("sentinel")),
            lambda: read_fn(x),
        )
        image = decode_image_bytes(data, name)
        return position, image, label, s, is_sentinel

    stream = stream.map(decode, num_parallel_calls=num_parallel_calls, deterministic=True)
    stream = stream.ignore_errors(log_warning=True)

    def report(gap):
        counter.add(int(gap))
        return np.int64(0)

    def count_gaps(last, element):
        position, image, label, s, is_sentinel = element
        gap = position - last - 1
        done = tf.cond(
            gap > 0,
            lambda: tf.py_function(report, [gap], tf.int64),
            lambda: tf.constant(0, tf.int64),
        )
        with tf.control_dependencies([done]):
            position = tf.identity(position)
        return position, (image, label, s, is_sentinel)

    stream = stream.scan(tf.constant(-1, tf.int64), count_gaps)
    stream = stream.filter(lambda image, label, s, is_sentinel: tf.logical_not(is_sentinel))

    def augment(image, label, s, is_sentinel):
        image = transform_fn(image, s) if needs_seed else transform_fn(image)
        return (image, label) if with_labels else image

    stream = stream.map(augment, num_parallel_calls=num_parallel_calls, deterministic=True)
    if batch_size is not None:
        stream = stream.batch(batch_size, drop_remainder=drop_remainder)
    return stream.prefetch(tf.data.AUTOTUNE)
