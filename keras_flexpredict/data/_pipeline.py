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

from keras_flexpredict.utils.validation import check_int

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
    check_int("num_shards", num_shards, minimum=1)
    if isinstance(shard_index, bool) or not isinstance(shard_index, (int, np.integer)) or not 0 <= shard_index < num_shards:
        raise ValueError(
            f"`shard_index` must be an int in [0, num_shards). Received: shard_index={shard_index}, num_shards={num_shards}"
        )


def check_batch_size(batch_size):
    check_int("batch_size", batch_size, minimum=1, allow_none=True)


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


# ------------------------------------------------------------ resumable order
# An endless stream that `fit(..., steps_per_epoch=S)` reads epoch after epoch:
# element `j` of the stream is element `order_p[j mod n]` of the data, with
# `p = j // n` the pass and `order_p` a permutation drawn from `(seed, p)` alone,
# and gets augmentation seeds drawn from `(seed, j)` alone. Epoch `e` reads the
# stream from position `e * S * batch_size`, so it is the same whatever ran
# before: a run resumed at epoch `e` reads what an uninterrupted run reads.
_FAR = 2**62


def check_epoch_arguments(steps_per_epoch, initial_epoch, training):
    """Checks the `steps_per_epoch` / `initial_epoch` arguments of a pipeline."""
    if steps_per_epoch is None:
        if initial_epoch not in (0, None):
            raise ValueError(
                f"`initial_epoch` needs `steps_per_epoch`. Received: initial_epoch={initial_epoch}, "
                "steps_per_epoch=None"
            )
        return
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    check_int("initial_epoch", initial_epoch, minimum=0)
    if not training:
        raise ValueError(
            "`steps_per_epoch` makes an endless training stream; it needs `training=True`. "
            f"Received: training={training}, steps_per_epoch={steps_per_epoch}"
        )


def _stream_from(position, num_elements, seed):
    """`(index, element_seed)` of the endless stream from `position` on (see above)."""
    n = tf.constant(int(num_elements), tf.int64)
    seed = tf.constant(int(seed), tf.int64)
    position = tf.cast(position, tf.int64)

    def one_pass(p):
        order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=tf.stack([seed, p]))
        return tf.data.Dataset.from_tensor_slices((order, p * n + tf.range(n)))

    def with_seed(index, j):
        # Full-range int64 pairs, as `add_element_seeds` hands out.
        s = tf.random.stateless_uniform([2], seed=tf.stack([seed + 1, j]), minval=None, maxval=None, dtype=tf.int64)
        return index, s

    stream = tf.data.Dataset.range(position // n, _FAR).flat_map(one_pass).skip(position % n)
    return stream.map(with_seed)


def endless_epochs(num_elements, seed, batch_size, steps_per_epoch, initial_epoch, make_batches):
    """The endless training stream, from epoch `initial_epoch` on.

    `make_batches(stream)` maps an endless `(index, element_seed)` dataset to batches
    of `batch_size` (decoding, skipping, augmenting); epoch `e` is its first
    `steps_per_epoch` batches on the stream from position `e * steps_per_epoch *
    batch_size`. (When images are skipped, an epoch reads a few positions past its
    share, which the next epoch reads again: every epoch stays a function of
    `(seed, e)`.)
    """
    per_epoch = int(steps_per_epoch) * int(batch_size)

    def epoch(e):
        return make_batches(_stream_from(e * per_epoch, num_elements, seed)).take(int(steps_per_epoch))

    stream = tf.data.Dataset.range(int(initial_epoch), _FAR).flat_map(epoch)
    return stream.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))


def first_decodable(items, read_fn, limit=5):
    """Eagerly reads `items` in order until one decodes: `(index or None, failures)`,
    `failures` the first `limit` `(name, reason)` pairs of the items that did not.
    `read_fn(item)` returns `(encoded_bytes, name)`."""
    failures = []
    for i, item in enumerate(items):
        try:
            data, name = read_fn(item)
            decode_image_bytes(data, name)
            return i, failures
        except (tf.errors.OpError, OSError) as e:
            if len(failures) < limit:
                name = item if isinstance(item, str) else str(item)
                reason = getattr(e, "message", None) or str(e)
                failures.append((name, reason.strip().splitlines()[0][:200]))
    return None, failures


def _decode_and_count(stream, read_fn, counter, num_parallel_calls):
    """`(x, label, seed, is_sentinel)` -> `(image, label, seed, is_sentinel)`, dropping
    (and counting) the elements that fail to read or decode."""
    stream = stream.enumerate()
    sentinel_png = tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8))

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
    return stream.filter(lambda image, label, s, is_sentinel: tf.logical_not(is_sentinel))


def build_endless_image_pipeline(
    items,
    labels,
    read_fn,
    transform_fn,
    needs_seed,
    batch_size,
    seed,
    shard_index,
    counter,
    with_labels,
    num_parallel_calls,
    steps_per_epoch,
    initial_epoch,
):
    """The endless, resumable training stream over `items` (file paths) with `labels`
    (see `endless_epochs`); the rest as `build_image_pipeline`."""
    items_t = tf.constant(items)
    labels_t = tf.constant(labels)
    base = element_seed(seed, shard_index)

    def make_batches(stream):
        stream = stream.map(lambda i, s: (tf.gather(items_t, i), tf.gather(labels_t, i), s, False))
        stream = _decode_and_count(stream, read_fn, counter, num_parallel_calls)

        def augment(image, label, s, is_sentinel):
            image = transform_fn(image, s) if needs_seed else transform_fn(image)
            return (image, label) if with_labels else image

        stream = stream.map(augment, num_parallel_calls=num_parallel_calls, deterministic=True)
        return stream.batch(batch_size, drop_remainder=True)

    stream = endless_epochs(len(items), base, batch_size, steps_per_epoch, initial_epoch, make_batches)
    return stream.prefetch(tf.data.AUTOTUNE)


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
    stream = _decode_and_count(source.concatenate(sentinel), read_fn, counter, num_parallel_calls)

    def augment(image, label, s, is_sentinel):
        image = transform_fn(image, s) if needs_seed else transform_fn(image)
        return (image, label) if with_labels else image

    stream = stream.map(augment, num_parallel_calls=num_parallel_calls, deterministic=True)
    if batch_size is not None:
        stream = stream.batch(batch_size, drop_remainder=drop_remainder)
    return stream.prefetch(tf.data.AUTOTUNE)
