"""ImageNet-1k through TensorFlow Datasets (`imagenet2012`), never downloading."""

import os

import tensorflow as tf

from keras_flexpredict.data import _pipeline
from keras_flexpredict.data.skipped_image_counter import SkippedImageCounter
from keras_flexpredict.data.subset_file import read_subset_file

_SPLIT_ARCHIVES = {
    "train": "ILSVRC2012_img_train.tar",
    "validation": "ILSVRC2012_img_val.tar",
    "test": "ILSVRC2012_img_test.tar",
}


def _base_split(split):
    """`"train[:10%]"` -> `"train"`."""
    return split.split("[", 1)[0].strip()


def filter_by_file_name(dataset, file_names, key="file_name"):
    """Keeps the elements of a dict dataset whose `element[key]` is in `file_names`.

    Args:
        dataset: `tf.data.Dataset` of dicts with a string `key`.
        file_names: sequence of str, e.g. from `read_subset_file`.
        key: str. The feature holding the file name. Defaults to `"file_name"`.

    Returns:
        The filtered `tf.data.Dataset`.

    Example:
    >>> ds = tf.data.Dataset.from_tensor_slices({"file_name": ["a.JPEG", "b.JPEG"]})
    >>> [d["file_name"] for d in filter_by_file_name(ds, ["b.JPEG"]).as_numpy_iterator()]
    [b'b.JPEG']
    """
    names = tf.constant(list(file_names), tf.string)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(names, tf.ones_like(names, tf.int32)), default_value=0
    )
    return dataset.filter(lambda element: table.lookup(element[key]) > 0)


def tfds_imagenet_dataset(
    split="train",
    data_dir=None,
    manual_dir=None,
    image_size=224,
    batch_size=64,
    training=None,
    seed=0,
    shard_index=0,
    num_shards=1,
    transform=None,
    subset_file=None,
    with_labels=True,
    skipped_counter=None,
    shuffle_buffer_size=4096,
    drop_remainder=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    name="imagenet2012",
):
    """ImageNet-1k from TFDS `imagenet2012` as a tf.data pipeline; never downloads.

    If the TFDS data are already prepared in `data_dir`, they are read. If not,
    and `manual_dir` holds the official archives (`ILSVRC2012_img_train.tar`,
    `ILSVRC2012_img_val.tar`), TFDS prepares them once from there (hours, and
    about 150 GB of disk). Otherwise a `FileNotFoundError` says what is missing
    and where. No network access is ever tried (`try_download_gcs=False`).

    Each process reads its own share of the record files
    (`tf.distribute.InputContext(num_shards, shard_index)`); images are
    decoded in parallel by this package (so corrupt ones are skipped and
    counted, as in `image_folder_dataset`), transformed with per-element seeds,
    batched and prefetched.

    Args:
        split: str. TFDS split: `"train"`, `"validation"`, or a slice like
            `"train[:1%]"`. Defaults to `"train"`.
        data_dir: str or None. TFDS data directory (None: TFDS's default,
            `~/tensorflow_datasets` or `$TFDS_DATA_DIR`). Defaults to `None`.
        manual_dir: str or None. Folder of the manually downloaded archives.
            Defaults to `None`.
        image_size: int or `(height, width)`. Output size. Defaults to `224`.
        batch_size: int or None (unbatched). Defaults to `64`.
        training: bool or None. Shuffle, augment, drop the last partial
            batch; None means `split` starts with `"train"`. Defaults to `None`.
        seed: int. Seeds file order, shuffling and augmentation. Defaults to `0`.
        shard_index: int. Index of this process. Defaults to `0`.
        num_shards: int. Number of processes. Defaults to `1`.
        transform: `"stop"`, `"ijepa"`, `"eval"`, `"lowshot_eval"`,
            `"vissl_train"`, `"vissl_eval"`, a callable or None (`"stop"` when
            training, else `"eval"`). Defaults to `None`.
        subset_file: str or None. Keep only the images a subset list names
            (e.g. ImageNet's 1% split), matched on TFDS's `file_name`.
            Defaults to `None`.
        with_labels: bool. Yield `(image, label)`; else images only.
            Defaults to `True`.
        skipped_counter: `SkippedImageCounter` or None. Defaults to `None`.
        shuffle_buffer_size: int. Elements (encoded images, ~110 kB each) in
            the shuffle buffer, on top of file shuffling. Defaults to `4096`.
        drop_remainder: bool or None. None means `training`. Defaults to `None`.
        num_parallel_calls: int. Defaults to `tf.data.AUTOTUNE`.
        name: str. TFDS builder name. Defaults to `"imagenet2012"`.

    Returns:
        A `tf.data.Dataset` of `(images float32 (B, H, W, 3), labels int64 (B,))`.

    Raises:
        FileNotFoundError: the data are neither prepared nor in `manual_dir`.

    Example:
    ```python
    ds = tfds_imagenet_dataset("validation", data_dir="/data/tfds", image_size=224, batch_size=256)
    ```
    """
    _pipeline.check_shard(shard_index, num_shards)
    _pipeline.check_batch_size(batch_size)
    base = _base_split(split)
    if training is None:
        training = base == "train"
    transform_fn, needs_seed = _pipeline.resolve_transform(transform, image_size, training)
    subset = read_subset_file(subset_file) if subset_file is not None else None

    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        archive = _SPLIT_ARCHIVES.get(base, f"<archive of split {base}>")
        if manual_dir is None:
            raise FileNotFoundError(
                f"TFDS {name} is not prepared in {builder.data_dir} and no `manual_dir` was given; nothing is "
                f"ever downloaded. Pass `data_dir` where it is prepared, or `manual_dir` holding {archive}. "
                f"Received: data_dir={data_dir}, manual_dir={manual_dir}"
            )
        archive_path = os.path.join(os.fspath(manual_dir), archive)
        if not os.path.isfile(archive_path):
            raise FileNotFoundError(
                f"TFDS {name} is not prepared in {builder.data_dir}, and the manual archive {archive_path} "
                f"does not exist; nothing is ever downloaded. Received: manual_dir={manual_dir}"
            )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir), try_download_gcs=False)
        )
    if base not in builder.info.splits:
        raise ValueError(f"Split {base} is not in the prepared {name} ({list(builder.info.splits)}). Received: split={split}")
    read_config = tfds.ReadConfig(
        shuffle_seed=int(seed),
        input_context=tf.distribute.InputContext(
            num_input_pipelines=num_shards, input_pipeline_id=shard_index, num_replicas_in_sync=1
        ),
    )
    ds = builder.as_dataset(
        split=split,
        shuffle_files=training,
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=read_config,
    )
    if subset is not None:
        ds = filter_by_file_name(ds, subset)
    ds = ds.map(lambda e: ((e["image"], e["file_name"]), e["label"]))
    if skipped_counter is None:
        skipped_counter = SkippedImageCounter(name=f"{name}/{split}")
    return _pipeline.build_image_pipeline(
        ds,
        read_fn=lambda x: x,
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
