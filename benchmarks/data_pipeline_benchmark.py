"""Images/s of the tf.data training pipeline: read + decode + augment + batch.

Writes `--num_images` procedural images (see `make_procedural_shapes`) as JPEGs
of `--source_size` pixels into a temporary image folder (`train/<shape>/*.JPEG`),
then times `image_folder_dataset` over it for `--epochs` passes after one warm-up
pass, for three transforms:

- `eval`: decode + resize + centre crop (the evaluation pipeline, no shuffling);
- `ijepa`: decode + random resized crop (I-JEPA's augmentation);
- `stop`: decode + random resized crop + flip + grayscale + Gaussian blur (StoP's).

Prints a markdown table and writes it to benchmarks/results/data_pipeline.md
(written to a temporary name, then renamed). The pipeline runs on the CPU on
every Keras backend, so the backend does not matter here.

Usage:
    python benchmarks/data_pipeline_benchmark.py [--num_images 512] [--epochs 3]
"""

import argparse
import datetime
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from keras_flexpredict.data import SHAPE_NAMES  # noqa: E402
from keras_flexpredict.data import image_folder_dataset  # noqa: E402
from keras_flexpredict.data import make_procedural_shapes  # noqa: E402
from keras_flexpredict.utils.atomic_write import atomic_write_text  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "data_pipeline.md")


def write_folder(root, num_images, source_size, seed):
    data = make_procedural_shapes(num_images, image_size=source_size, seed=seed)
    sizes = []
    for i, (image, shape) in enumerate(zip(data["images"], data["labels"]["shape"])):
        folder = os.path.join(root, "train", SHAPE_NAMES[shape])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{SHAPE_NAMES[shape]}_{i}.JPEG")
        Image.fromarray(image).save(path, quality=90)
        sizes.append(os.path.getsize(path))
    return float(np.mean(sizes))


def time_pipeline(root, transform, image_size, batch_size, epochs):
    training = transform != "eval"
    ds = image_folder_dataset(
        root, image_size=image_size, batch_size=batch_size, training=training, transform=transform, seed=0
    )
    for _ in ds:  # warm-up pass: tracing, thread pools, autotuning
        pass
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _ in ds:
            count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def write_atomic(path, text):
    atomic_write_text(path, text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_images", type=int, default=512)
    parser.add_argument("--source_size", type=int, default=224, help="side of the JPEGs on disk")
    parser.add_argument("--image_size", type=int, default=224, help="output side")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--transforms", default="eval,ijepa,stop")
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="kfp_pipeline_bench_")
    try:
        start = time.perf_counter()
        mean_bytes = write_folder(root, args.num_images, args.source_size, seed=0)
        print(f"wrote {args.num_images} JPEGs ({mean_bytes / 1024:.1f} kB mean) in {time.perf_counter() - start:.1f} s")
        rows = []
        for transform in args.transforms.split(","):
            rate = time_pipeline(root, transform, args.image_size, args.batch_size, args.epochs)
            rows.append((transform, rate))
            print(f"| {transform} | {rate:.0f} images/s |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Data pipeline throughput",
        "",
        f"`benchmarks/data_pipeline_benchmark.py`, {datetime.date.today().isoformat()}: "
        f"`image_folder_dataset` over {args.num_images} procedural JPEGs of {args.source_size} px "
        f"({mean_bytes / 1024:.1f} kB mean; ImageNet's average ~110 kB, ~400x350 px, decodes slower), "
        f"output {args.image_size} px, batch {args.batch_size}, mean of {args.epochs} passes after a warm-up pass.",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"load average {load:.1f} at the end, TensorFlow {tf.__version__}.",
        "",
        "| transform | images/s |",
        "|---|---|",
    ]
    lines += [f"| {name} | {rate:.0f} |" for name, rate in rows]
    write_atomic(args.output, "\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
