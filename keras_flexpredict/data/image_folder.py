"""ImageNet-style image folders (`root/<split>/<class>/<image>`) as tf.data pipelines."""

import os

import numpy as np
import tensorflow as tf

from keras_flexpredict.data import _pipeline
from keras_flexpredict.data.skipped_image_counter import SkippedImageCounter
from keras_flexpredict.data.subset_file import filter_by_subset
from keras_flexpredict.data.subset_file import read_subset_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def list_image_folder(root, split="train", extensions=IMAGE_EXTENSIONS):
    """Lists the images of `root/<split>/<class>/*` with sorted class labels.

    Class folders are the sub-folders of `root/<split>` (hidden ones ignored),
    sorted by name; the label of a class is its index in that order (as
    torchvision's `ImageFolder`). Images are the files whose extension is in
    `extensions` (case-insensitive), sorted by name within a class; other
    files are ignored.

    Args:
        root: str. Data set root.
        split: str or None. Sub-folder holding the class folders (`"train"`,
            `"val"`); `None` lists `root` itself. Defaults to `"train"`.
        extensions: tuple of str. Image file extensions, with the dot.
            Defaults to `IMAGE_EXTENSIONS`.

    Returns:
        `(paths, labels, class_names)`: list of str, int32 NumPy array, list of str.

    Raises:
        FileNotFoundError: `root` or `root/<split>` does not exist.
        ValueError: there is no class folder, or a class folder holds no image.

    Example:
    >>> import os, tempfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "train", "cat"))
    >>> _ = open(os.path.join(root, "train", "cat", "a.png"), "wb").write(b"")
    >>> paths, labels, classes = list_image_folder(root)
    >>> classes, labels.tolist()
    (['cat'], [0])
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Image folder root does not exist or is not a directory. Received: root={root}")
    directory = root if split is None else os.path.join(root, split)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Split folder {directory} does not exist (expected root/<split>/<class>/<image>). "
            f"Received: root={root}, split={split}"
        )
    extensions = tuple(e.lower() for e in extensions)
    with os.scandir(directory) as entries:
        class_names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not class_names:
        raise ValueError(f"No class folders in {directory} (expected {directory}/<class>/<image>).")
    paths, labels = [], []
    for label, name in enumerate(class_names):
        class_dir = os.path.join(directory, name)
        with os.scandir(class_dir) as entries:
            files = sorted(
                e.name
                for e in entries
                if e.is_file() and not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in extensions
            )
        if not files:
            raise ValueError(f"Class folder {class_dir} holds no image (extensions {list(extensions)}).")
        paths.extend(os.path.join(class_dir, f) for f in files)
        labels.extend([label] * len(files))
    return paths, np.asarray(labels, np.int32), class_names


def image_folder_dataset(
    root,
    split="train",
    image_size=224,
    batch_size=64,
    training=True,
    seed=0,
    shard_index=0,
    num_shards=1,
    transform=None,
    subset_file=None,
    with_labels=True,
    skipped_counter=None,
    shuffle_buffer_size=None,
    drop_remainder=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    steps_per_epoch=None,
    initial_epoch=0,
):
    """A tf.data pipeline over an image folder `root/<split>/<class>/<image>`.

    Lists the images (see `list_image_folder`; errors for a missing or empty
    folder come before any data is read), keeps this process's shard
    (`paths[shard_index::num_shards]`), shuffles it with `seed` (when
    `training`, anew each epoch), reads and decodes images in parallel,
    skips unreadable or corrupt ones (counted by `skipped_counter`, with a
    logged warning; the run goes on), applies the transform with a
    per-element seed, batches and prefetches. Deterministic by `seed`.

    Args:
        root: str. Data set root.
        split: str or None. Sub-folder of `root`. Defaults to `"train"`.
        image_size: int or `(height, width)`. Output size. Defaults to `224`.
        batch_size: int or None (unbatched). Defaults to `64`.
        training: bool. Shuffle and drop the last partial batch. Defaults to
            `True`.
        seed: int. Seeds shuffling and augmentation. Defaults to `0`.
        shard_index: int. Index of this process (e.g.
            `jax.process_index()`). Defaults to `0`.
        num_shards: int. Number of processes. Defaults to `1`.
        transform: `"stop"`, `"ijepa"`, `"eval"`, `"lowshot_eval"`,
            `"vissl_train"`, `"vissl_eval"` (see `eval_transform` and
            `vissl_train_transform`), a callable `fn(image_uint8, seed) -> image`,
            or None: `"stop"` when `training`, else `"eval"`. Defaults to `None`.
        subset_file: str or None. A subset list (`read_subset_file`), e.g.
            ImageNet's 1% split: only the images it names are used.
            Defaults to `None`.
        with_labels: bool. Yield `(image, label)`; else images only.
            Defaults to `True`.
        skipped_counter: `SkippedImageCounter` or None. Counts skipped
            images; a new one (warnings only) when None. Defaults to `None`.
        shuffle_buffer_size: int or None. None shuffles the whole shard
            (the file list is small). Defaults to `None`.
        drop_remainder: bool or None. None means `training`. Defaults to `None`.
        num_parallel_calls: int. Parallelism of decoding and augmentation.
            Defaults to `tf.data.AUTOTUNE`.
        steps_per_epoch: int or None. None: one pass over the images per
            iteration. An int (with `training`): an endless stream for
            `fit(..., steps_per_epoch=steps_per_epoch)` that a resumed run can
            restart exactly. Pass `p` over the shard follows a permutation drawn
            from `(seed, p)` alone, each image's augmentation a seed drawn from
            its position in the stream, and epoch `e` is the `steps_per_epoch`
            full batches read from position `e * steps_per_epoch * batch_size`:
            the same batches whatever ran before (batches run across passes;
            `shuffle_buffer_size` is unused). Before building it, the images are
            read in order until one decodes: a shard with no decodable image
            raises a `ValueError` naming the folder and the first failures
            (instead of a stream that never yields). Defaults to `None`.
        initial_epoch: int. With `steps_per_epoch`: the first epoch of the
            stream (the epoch `fit` resumes at). Defaults to `0`.

    Returns:
        A `tf.data.Dataset` of `(images float32 (B, H, W, 3), labels int32 (B,))`.

    Example:
    >>> import os, tempfile
    >>> from PIL import Image
    >>> root = tempfile.mkdtemp()
    >>> for c in ("a", "b"):
    ...     os.makedirs(os.path.join(root, "train", c))
    ...     Image.new("RGB", (40, 30)).save(os.path.join(root, "train", c, "0.png"))
    >>> ds = image_folder_dataset(root, image_size=32, batch_size=2)
    >>> images, labels = next(iter(ds))
    >>> images.shape.as_list(), labels.dtype.name
    ([2, 32, 32, 3], 'int32')
    """
    _pipeline.check_shard(shard_index, num_shards)
    _pipeline.check_batch_size(batch_size)
    _pipeline.check_epoch_arguments(steps_per_epoch, initial_epoch, training)
    if steps_per_epoch is not None and batch_size is None:
        raise ValueError(f"`steps_per_epoch` needs a `batch_size`. Received: batch_size={batch_size}")
    transform_fn, needs_seed = _pipeline.resolve_transform(transform, image_size, training)
    paths, labels, _ = list_image_folder(root, split)
    if subset_file is not None:
        paths, labels = filter_by_subset(paths, labels, read_subset_file(subset_file))
    paths = list(paths)[shard_index::num_shards]
    labels = np.asarray(labels, np.int32)[shard_index::num_shards]
    if not paths:
        raise ValueError(
            f"Shard {shard_index} of {num_shards} of {root} (split={split}) holds no image. "
            f"Received: shard_index={shard_index}, num_shards={num_shards}"
        )
    if skipped_counter is None:
        skipped_counter = SkippedImageCounter(name=os.path.join(os.fspath(root), split or ""))
    if steps_per_epoch is not None:
        read = lambda path: (tf.io.read_file(path), path)
        found, failures = _pipeline.first_decodable(paths, read)
        if found is None:
            where = os.path.join(os.fspath(root), split or "")
            shard = f" (shard {shard_index} of {num_shards})" if num_shards > 1 else ""
            listed = "; ".join(f"{name}: {reason}" for name, reason in failures)
            raise ValueError(
                f"No image in {where}{shard} can be decoded: all {len(paths)} files fail to read or decode, "
                f"so there is nothing to train on. The first ones: {listed}. Received: root={root}, split={split}"
            )
        return _pipeline.build_endless_image_pipeline(
            paths,
            labels,
            read_fn=read,
            transform_fn=transform_fn,
            needs_seed=needs_seed,
            batch_size=batch_size,
            seed=seed,
            shard_index=shard_index,
            counter=skipped_counter,
            with_labels=with_labels,
            num_parallel_calls=num_parallel_calls,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=initial_epoch,
        )
    if shuffle_buffer_size is None:
        shuffle_buffer_size = len(paths)
    source = tf.data.Dataset.from_tensor_slices((tf.constant(paths), tf.constant(labels)))
    return _pipeline.build_image_pipeline(
        source,
        read_fn=lambda path: (tf.io.read_file(path), path),
        transform_fn=transform_fn,
        needs_seed=needs_seed,
        training=training,
        batch_size=batch_size,
        seed=seed,
        shard_index=shard_index,
        counter=skipped_counter,
        shuffle_buffer_size=shuffle_buffer_size,
        drop_remainder=training if drop_remainder is None else drop_remainder,
        with_labels=with_labels,
        num_parallel_calls=num_parallel_calls,
    )
