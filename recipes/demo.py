r"""The one-command demo: pretrain StoP and I-JEPA on built-in data, probe, plot.

    python -m recipes.demo            # or: make demo

On the procedural shapes of `keras_flexpredict.data` (nothing is downloaded) it
pretrains the tiny recipe twice with the same budget, seed and data: StoP
(`stop_tiny_procedural`) and the I-JEPA baseline (`ijepa_tiny_procedural`), through
the pretraining CLI (`recipes.pretrain.run`). It then probes three frozen encoders on
a held-out labelled split: the two target encoders and the randomly initialised
encoder both runs started from. Features are the mean over tokens of the last layer;
the probes are L2-regularised logistic regression in its `protocol="search"` variant
(with intercept, strength chosen on a held-out part of the probe's training split, not
the official 1% protocol's fixed strength) and a cosine kNN on the features without
their `KNN_REMOVED_COMPONENTS` largest principal directions (see that constant). It
prints a table, and writes
`demo_output/results.json` and `demo_output/demo.png` (loss curves, the training
diagnostics of `kfp.callbacks.TrainingDiagnostics` and probe accuracies). The pretraining runs go to `demo_output/runs/`.

The Keras backend defaults to TensorFlow, the steadiest on a loaded CPU for this model;
`KERAS_BACKEND=jax` or `torch` overrides it.
"""

import os

# TensorFlow: as fast as torch on an idle 2-core CPU for this model and far steadier
# under load (recipes/README.md); JAX compiles longer. KERAS_BACKEND overrides it.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402

from keras_flexpredict.utils.atomic_write import atomic_write_bytes  # noqa: E402
from recipes import cli  # noqa: E402

METHODS = (("stop", "StoP", "stop_tiny_procedural"), ("ijepa", "I-JEPA", "ijepa_tiny_procedural"))
# The labels the demo probes by default: the main object's grid cell, the object
# count and the main object's colour. The shape kind (`--probe_labels=...,shape`) is
# left out of the default table: at the demo's budget the tiny encoder learns little
# about it, so its kNN sits within a point of the random encoder's for both methods
# (3 seeds, docs/diagnostics.md, "Which labels the demo probes").
PROBE_LABELS = ("position", "count", "color")
ALL_PROBE_LABELS = ("position", "count", "color", "shape")
ENCODERS = (("random", "random init"), ("ijepa", "I-JEPA"), ("stop", "StoP"))
# The demo's logistic regression is the search variant (not the official 1% protocol,
# whose fixed strength 0.0025 / N barely regularises 2000 examples of 64-d features):
# candidate L2 strengths, chosen on a held-out 20%.
LOGREG_PROTOCOL = "search"
L2_STRENGTHS = (1e-4, 1e-3, 1e-2, 1e-1)
# The kNN probe runs on the features with their 8 largest principal directions (fitted
# on the probe's training split, no labels) projected out. On this data those
# directions carry the background's colour, for the random and the pretrained encoders
# alike, and a cosine kNN on the raw features reads nothing else: it sat at chance for
# every encoder (docs/diagnostics.md). 8 was chosen on the encoders of the 3-seed
# ablation (probe seeds 2000 / 2001) among 0, 2, 4, 8, 16, and checked on an
# independent demo run (probe seeds 1000 / 1001).
KNN_REMOVED_COMPONENTS = 8
# Columns of kfp.callbacks.TrainingDiagnostics kept in results.json.
DIAGNOSTIC_COLUMNS = (
    "target_std", "target_rankme", "context_projection_norm", "context_projection_bias_norm",
    "prediction_variance", "diagnostics_time_s",
)


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_string("output_dir", "demo_output", "Where the runs, the table and the figure go.", flag_values=fv)
    flags.DEFINE_multi_string(
        "override", [], "section.key=value applied to both recipes (see recipes.pretrain).", flag_values=fv
    )
    flags.DEFINE_integer("num_probe_train", 2000, "Labelled images the probes train on.", flag_values=fv)
    flags.DEFINE_integer("num_probe_test", 1000, "Held-out labelled images the probes are scored on.", flag_values=fv)
    flags.DEFINE_list(
        "probe_labels", list(PROBE_LABELS), f"Labels to probe, any of {', '.join(ALL_PROBE_LABELS)}.", flag_values=fv
    )
    flags.DEFINE_integer("probe_seed", 1000, "Seed of the probe's training images (test: seed + 1).", flag_values=fv)
    flags.DEFINE_boolean(
        "resume", False, "Reuse or continue the runs already in output_dir instead of starting afresh.", flag_values=fv
    )
    flags.DEFINE_integer("verbose", 2, "Progress output of the pretraining runs (0, 1 or 2).", flag_values=fv)


def probe_split(num_images, seed, batch_size=250, **generator):
    """Labelled procedural images drawn like the pretraining data (the same
    `make_procedural_shapes` arguments, see `generator_arguments`) from another seed.

    Returns:
        `(batches of (images, shape labels), labels dict, number of classes per label)`.
    """
    import numpy as np

    from keras_flexpredict.data import IMAGENET_MEAN
    from keras_flexpredict.data import IMAGENET_STD
    from keras_flexpredict.data import make_procedural_shapes

    data = make_procedural_shapes(num_images, seed=seed, **generator)
    images = (data["images"].astype(np.float32) / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    labels = {
        "shape": data["labels"]["shape"],
        "count": data["labels"]["count"] - 1,
        "position": data["labels"]["position"],
        "color": data["labels"]["color"],
    }
    batches = [
        (images[i : i + batch_size], labels["shape"][i : i + batch_size]) for i in range(0, num_images, batch_size)
    ]
    return batches, labels, dict(data["num_classes"])


def generator_arguments(data):
    """The `make_procedural_shapes` arguments of a recipe's `data` section (every key
    of the section the generator takes, except the seed; the generator's defaults for
    the rest, as the pretraining pipeline)."""
    import inspect

    from keras_flexpredict.data import make_procedural_shapes

    names = set(inspect.signature(make_procedural_shapes).parameters) - {"num_images", "seed"}
    return {k: v for k, v in data.items() if k in names}


def probe_encoder(encoder, train_batches, test_batches, train_labels, test_labels, seed, labels=PROBE_LABELS):
    """Logistic regression and kNN top-1 for every label of `labels`."""
    from keras_flexpredict.evaluation import extract_features_of_splits
    from keras_flexpredict.evaluation import knn_classifier
    from keras_flexpredict.evaluation import logistic_regression_probe
    from keras_flexpredict.evaluation import remove_top_principal_components

    (x_train, _), (x_test, _) = extract_features_of_splits(encoder, [train_batches, test_batches], verbose=0)
    knn_train, knn_test = remove_top_principal_components(x_train, x_test, KNN_REMOVED_COMPONENTS)
    results = {}
    for label in labels:
        y_train, y_test = train_labels[label], test_labels[label]
        logreg = logistic_regression_probe(
            x_train, y_train, x_test, y_test, protocol=LOGREG_PROTOCOL, l2_strengths=L2_STRENGTHS,
            max_iter=300, seed=seed,
        )
        knn = knn_classifier(knn_train, y_train, knn_test, y_test, k=20)
        results[label] = {"logreg": logreg["top1"], "knn": knn["top1"], "l2_strength": logreg["l2_strength"]}
    return results


def format_table(probes, labels=PROBE_LABELS):
    """The results table as text: one row per encoder, top-1 in percent."""
    columns = [(label, protocol) for label in labels for protocol in ("logreg", "knn")]
    header = f"{'encoder':<12}" + "".join(f"{label + ' ' + protocol:>17}" for label, protocol in columns)
    lines = [header, "-" * len(header)]
    for key, title in ENCODERS:
        row = f"{title:<12}" + "".join(f"{100.0 * probes[key][l][p]:>16.1f}%" for l, p in columns)
        lines.append(row)
    return "\n".join(lines)


def save_figure(path, summaries, probes, chance, diagnostics=None, labels=PROBE_LABELS):
    """Loss curves (left), the diagnostics of `kfp.callbacks.TrainingDiagnostics`
    (middle: RankMe of the target features, solid, and the norm of the context
    projection `A`, dashed, per epoch) and probe accuracies (right, dashed: chance)
    as a PNG, written atomically. `diagnostics`: `{method: {column: [per epoch]}}`
    (the runs' `log.csv`); the middle panel is left out without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    diagnostics = {k: v for k, v in (diagnostics or {}).items() if "target_rankme" in v}
    if diagnostics:
        fig, (left, middle, right) = plt.subplots(1, 3, figsize=(17, 4.5))
    else:
        fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, title, _ in METHODS:
        loss = summaries[key]["loss_per_epoch"]
        left.plot(np.arange(1, len(loss) + 1), loss, marker="o", markersize=3, label=title)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (smooth L1)")
    left.set_title("Pretraining loss")
    left.legend()
    left.grid(alpha=0.3)
    if diagnostics:
        norm_axis = middle.twinx()
        for i, (key, title, _) in enumerate(METHODS):
            if key not in diagnostics:
                continue
            log = diagnostics[key]
            epochs = np.arange(1, len(log["target_rankme"]) + 1)
            color = f"C{i}"
            middle.plot(epochs, log["target_rankme"], color=color, marker="o", markersize=3,
                        label=f"{title} RankMe")
            norm_axis.plot(epochs, log["context_projection_norm"], color=color, linestyle="dashed",
                           label=f"{title} |A|")
        middle.set_xlabel("epoch")
        middle.set_ylabel("RankMe of target features (solid)")
        norm_axis.set_ylabel("Frobenius norm of A (dashed)")
        middle.set_title("Diagnostics on a fixed batch")
        lines = middle.get_legend_handles_labels()
        more = norm_axis.get_legend_handles_labels()
        middle.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="best")
        middle.grid(alpha=0.3)

    groups = [(label, protocol) for label in labels for protocol in ("logreg", "knn")]
    width = 0.8 / len(ENCODERS)
    x = np.arange(len(groups))
    for i, (key, title) in enumerate(ENCODERS):
        values = [100.0 * probes[key][l][p] for l, p in groups]
        bars = right.bar(x + (i - (len(ENCODERS) - 1) / 2) * width, values, width, label=title)
        right.bar_label(bars, fmt="%.0f", fontsize=7)
    for j, (label, _) in enumerate(groups):
        right.hlines(100.0 * chance[label], j - 0.45, j + 0.45, colors="black", linestyles="dashed", linewidth=1)
    right.plot([], [], color="black", linestyle="dashed", linewidth=1, label="chance")
    right.set_xticks(x, [f"{l}\n{p}" for l, p in groups])
    right.set_ylabel("top-1 accuracy on held-out images (%)")
    right.set_title(f"Frozen-feature probes (kNN: top {KNN_REMOVED_COMPONENTS} principal directions removed)", fontsize=9)
    top = max(100.0 * probes[key][l][p] for key, _ in ENCODERS for l, p in groups)
    right.set_ylim(0, min(100.0, 1.25 * top + 10.0))
    right.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png", dpi=120)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, png.getvalue())
    return path


def run_demo(output_dir="demo_output", overrides=(), num_probe_train=2000, num_probe_test=1000, probe_seed=1000,
             resume=False, verbose=2, probe_labels=PROBE_LABELS):
    """Runs the whole demo; returns the results dict (also written as JSON).
    `probe_labels`: any of `ALL_PROBE_LABELS`, in the table's order."""
    start = time.time()
    probe_labels = _check_probe_labels(probe_labels)
    import keras

    from keras_flexpredict.evaluation import write_result_json
    from recipes import pretrain

    # Every check (recipes, overrides) before any training.
    configs = {}
    for key, _, recipe in METHODS:
        run_dir = os.path.join(output_dir, "runs", key)
        config, name = pretrain.prepare_config(
            recipe, list(overrides) + [f"train.output_dir={json.dumps(run_dir)}", f"train.verbose={verbose}"]
        )
        configs[key] = (config, name)
    width = configs["stop"][0]["model"]["encoder"]["hidden_dim"]
    if min(width, num_probe_train) - 1 < KNN_REMOVED_COMPONENTS:
        raise ValueError(
            f"The kNN probe removes {KNN_REMOVED_COMPONENTS} principal directions of the features, so "
            f"the encoder width and num_probe_train must both exceed {KNN_REMOVED_COMPONENTS}. "
            f"Received: model.encoder.hidden_dim={width}, num_probe_train={num_probe_train}"
        )
    print(f"Demo on the {keras.backend.backend()} backend; results go to {output_dir}/", flush=True)

    summaries, times = {}, {}
    for key, title, _ in METHODS:
        config, name = configs[key]
        if not resume:
            shutil.rmtree(config["train"]["output_dir"], ignore_errors=True)
        print(f"\n=== Pretraining {title} ({name}) ===", flush=True)
        t = time.time()
        summaries[key] = pretrain.run(config, name)
        times[key] = round(time.time() - t, 1)

    print("\n=== Probing the frozen encoders ===", flush=True)
    t = time.time()
    generator = generator_arguments(configs["stop"][0]["data"])
    train_batches, train_labels, num_classes = probe_split(num_probe_train, probe_seed, **generator)
    test_batches, test_labels, _ = probe_split(num_probe_test, probe_seed + 1, **generator)
    encoders = {
        # The weights both runs started from (same recipe seed).
        "random": pretrain.build_model(configs["stop"][0]).target_encoder,
        "ijepa": keras.saving.load_model(summaries["ijepa"]["paths"]["target_encoder"], compile=False),
        "stop": keras.saving.load_model(summaries["stop"]["paths"]["target_encoder"], compile=False),
    }
    probes = {
        key: probe_encoder(
            encoders[key], train_batches, test_batches, train_labels, test_labels, probe_seed, probe_labels
        )
        for key, _ in ENCODERS
    }
    times["probes"] = round(time.time() - t, 1)

    table = format_table(probes, probe_labels)
    chance = {label: 1.0 / num_classes[label] for label in probe_labels}
    diagnostics = {key: pretrain.read_csv_log(summaries[key]["paths"]["log_csv"]) for key, _, _ in METHODS}
    figure = save_figure(os.path.join(output_dir, "demo.png"), summaries, probes, chance, diagnostics, probe_labels)
    times["total"] = round(time.time() - start, 1)
    results = {
        "backend": keras.backend.backend(),
        "recipes": {key: configs[key][1] for key, _, _ in METHODS},
        "overrides": list(overrides),
        "probe": {
            "features": "mean over tokens of the target encoder's last layer",
            "protocols": {
                "logreg": (
                    f"logistic_regression_probe(protocol={LOGREG_PROTOCOL!r}): L2-regularised multinomial "
                    f"logistic regression with intercept, strength in {L2_STRENGTHS} chosen on a held-out 20%"
                ),
                "knn": (
                    f"cosine kNN, k=20, temperature 0.07, on the features without their "
                    f"{KNN_REMOVED_COMPONENTS} largest principal directions (fitted on the probe's training split)"
                ),
            },
            "num_train": num_probe_train,
            "num_test": num_probe_test,
            "seeds": [probe_seed, probe_seed + 1],
            "labels": list(probe_labels),
        },
        "top1": probes,
        "chance": chance,
        "final_loss": {key: summaries[key]["final_loss"] for key, _, _ in METHODS},
        "loss_per_epoch": {key: summaries[key]["loss_per_epoch"] for key, _, _ in METHODS},
        "diagnostics_per_epoch": {
            key: {k: v for k, v in diagnostics[key].items() if k in DIAGNOSTIC_COLUMNS} for key, _, _ in METHODS
        },
        "wall_time_s": times,
        "table": table,
        "figure": os.path.abspath(figure),
    }
    path = write_result_json(os.path.join(output_dir, "results.json"), results)
    chance_text = ", ".join(f"{label} {100 * chance[label]:.0f}%" for label in probe_labels)
    print(f"\nTop-1 accuracy on held-out images (chance: {chance_text}):")
    print(table)
    print(
        f"logreg: logistic_regression_probe(protocol={LOGREG_PROTOCOL!r}), strength searched in "
        f"{L2_STRENGTHS} (not the official 1% protocol); kNN: cosine, k=20, on the features without their "
        f"{KNN_REMOVED_COMPONENTS} largest principal directions."
    )
    print(
        f"\nWall time: {times['total']:.0f} s (StoP {times['stop']:.0f} s, I-JEPA {times['ijepa']:.0f} s, "
        f"probes {times['probes']:.0f} s)"
    )
    print(f"Figure: {figure}\nResults: {path}")
    return results


def _main(fv):
    run_demo(
        output_dir=fv.output_dir,
        overrides=fv.override,
        num_probe_train=fv.num_probe_train,
        num_probe_test=fv.num_probe_test,
        probe_seed=fv.probe_seed,
        resume=fv.resume,
        verbose=fv.verbose,
        probe_labels=fv.probe_labels,
    )


def _check_probe_labels(labels):
    labels = (labels,) if isinstance(labels, str) else tuple(labels)
    if not labels or len(set(labels)) != len(labels) or any(label not in ALL_PROBE_LABELS for label in labels):
        raise ValueError(
            f"`probe_labels` must be distinct labels among {ALL_PROBE_LABELS}. Received: probe_labels={list(labels)}"
        )
    return labels


if __name__ == "__main__":
    cli.run_main(define_flags, _main)
