r"""Probe a saved encoder: linear probe, low-shot logistic regression, kNN.

Usage:

    python -m keras_flexpredict.evaluation.cli --encoder=encoder.keras \
        --protocol=all --data=procedural --output=results.json

    python -m keras_flexpredict.evaluation.cli --encoder=IN1K-vit.h.14-300e.pth.tar \
        --protocol=logreg --data=folder:/data/imagenet \
        --subset_file=1percent.txt --output=results.json

`--encoder` is a `.keras` encoder, or pretrained weights converted on the fly: a preset
folder, a Hugging Face I-JEPA folder or `hf://` handle, or an official I-JEPA / StoP
`.pth.tar` (its target encoder; `--num_heads` when the width does not tell them; see
`python -m keras_flexpredict.convert` to convert once and keep the result).
`--data=procedural` uses `keras_flexpredict.data.procedural_shapes_dataset` (`--num_train`
images drawn with `--seed`, `--num_test` with `--seed + 1`, label `--label`).
`--data=folder:<root>` uses `keras_flexpredict.data.image_folder_dataset` on
`<root>/<train_split>/<class>/<image>` and `<root>/<test_split>/...`. `--subset_file`
keeps only the training images it lists (e.g. the 1% ImageNet split of I-JEPA / StoP; see
`keras_flexpredict.data.read_subset_file`). Images are normalised with the ImageNet mean
and standard deviation, as in pretraining. The input size defaults to the encoder's
`image_size`.

Protocols (each says in its result which variant ran):

- `logreg`, `--logreg_protocol=official` (default): StoP's `logistic_eval.py` (cyanure
  objective, no intercept, L2 strength 0.0025 / N, each split standardised with its own
  statistics) on images resized to `image_size` and centre-cropped (`"lowshot_eval"`);
  `--logreg_protocol=search`: strength searched on a held-out split, with intercept, on
  the 256/224 evaluation crop (`"eval"`).
- `linear`, `--linear_protocol=features` (default): the fast probe, a linear layer trained
  once on fixed features of the 256/224 crop; `--linear_protocol=augmented`: the official
  VISSL set-up, trained through the frozen encoder on RandomResizedCrop + flip images
  (SGD Nesterov, 28 epochs, lr 0.01 divided by 10 at epochs 8, 16, 24), tested on the
  bicubic 256/224 crop.
- `knn`: cosine kNN on fixed features of the 256/224 crop.

With `--data=procedural` the images are drawn at `image_size` and only normalised (the
augmented linear probe still crops and flips its training images). Features are extracted
once per transform and shared by the protocols that use it. Prints top-1 per protocol
and, with `--output`, writes everything as one JSON file (atomically).
"""

import os

from absl import app
from absl import flags

PROTOCOLS = ("linear", "logreg", "knn")
LOGREG_PROTOCOLS = ("official", "search")
# The augmented linear probe reads images, not fixed features.
AUGMENTED_TRANSFORMS = "vissl_train+vissl_eval"
LINEAR_PROTOCOLS = ("features", "augmented")
# Defaults of --linear_epochs, --linear_lr, --linear_batch_size per linear protocol.
LINEAR_DEFAULTS = {
    "features": dict(epochs=90, lr=0.1, batch_size=256),
    "augmented": dict(epochs=28, lr=0.01, batch_size=256),
}


def define_flags(flag_values=flags.FLAGS):
    """Defines the CLI's flags on `flag_values` (the global absl FLAGS by default)."""
    fv = flag_values
    flags.DEFINE_string(
        "encoder", None,
        "Encoder to probe: a .keras file (a whole FlexPredict file such as final.keras: its target "
        "encoder), a preset folder, a Hugging Face I-JEPA folder, an hf:// handle or an official "
        ".pth.tar (its target encoder).", flag_values=fv)
    flags.DEFINE_integer("num_heads", None, "Official .pth.tar: attention heads, when the width does not tell.", flag_values=fv)
    flags.DEFINE_string("protocol", "all", "linear, logreg, knn, all, or a comma list.", flag_values=fv)
    flags.DEFINE_string("data", "procedural", "procedural or folder:<root>.", flag_values=fv)
    flags.DEFINE_string("subset_file", None, "folder: keep only the training images this file lists.", flag_values=fv)
    flags.DEFINE_string("output", None, "Where to write the JSON results.", flag_values=fv)
    flags.DEFINE_integer("image_size", None, "Input size; default: the encoder's image_size.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 64, "Images per encoder call.", flag_values=fv)
    flags.DEFINE_string("pooling", "mean", "Token pooling: mean or max.", flag_values=fv)
    flags.DEFINE_integer("last_n_layers", 1, "Pool and concatenate the last n layers.", flag_values=fv)
    flags.DEFINE_string("train_split", "train", "folder: training split sub-folder.", flag_values=fv)
    flags.DEFINE_string("test_split", "val", "folder: test split sub-folder.", flag_values=fv)
    flags.DEFINE_integer("num_train", 2000, "procedural: training images.", flag_values=fv)
    flags.DEFINE_integer("num_test", 500, "procedural: test images.", flag_values=fv)
    flags.DEFINE_list("label", ["shape"], "procedural: label (or comma list, combined) to predict.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the procedural data and of the probes.", flag_values=fv)
    flags.DEFINE_string("linear_protocol", "features", "linear: features (fixed features) or augmented (VISSL set-up).", flag_values=fv)
    flags.DEFINE_integer("linear_epochs", None, "linear: epochs (default 90 features, 28 augmented).", flag_values=fv)
    flags.DEFINE_integer("linear_batch_size", None, "linear: batch size (default 256).", flag_values=fv)
    flags.DEFINE_float("linear_lr", None, "linear: learning rate (default 0.1 features, 0.01 augmented).", flag_values=fv)
    flags.DEFINE_string("logreg_protocol", "official", "logreg: official (StoP's logistic_eval.py) or search.", flag_values=fv)
    flags.DEFINE_list("l2_strengths", None, "logreg: L2 strength(s) (default: the protocol's).", flag_values=fv)
    flags.DEFINE_integer("knn_k", 20, "knn: neighbours.", flag_values=fv)
    flags.DEFINE_float("knn_temperature", 0.07, "knn: vote temperature.", flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "0: quiet; 1: progress bars.", flag_values=fv)


def parse_protocols(protocol):
    """`"all"`, one protocol, or a comma-separated list -> a tuple of protocol names."""
    names = [p.strip() for p in str(protocol).split(",") if p.strip()]
    if names == ["all"]:
        return PROTOCOLS
    if not names or any(n not in PROTOCOLS for n in names):
        raise ValueError(
            f"`protocol` must be one of {PROTOCOLS + ('all',)} or a comma-separated list "
            f"of {PROTOCOLS}. Received: protocol={protocol!r}"
        )
    return tuple(dict.fromkeys(names))


def parse_data_spec(data):
    """`"procedural"` -> `("procedural", None)`; `"folder:<root>"` -> `("folder", root)`."""
    if data == "procedural":
        return "procedural", None
    if isinstance(data, str) and data.startswith("folder:") and len(data) > len("folder:"):
        return "folder", data[len("folder:") :]
    raise ValueError(f"`data` must be 'procedural' or 'folder:<root>'. Received: data={data!r}")


def _encoder_image_size(encoder, image_size):
    if image_size is not None:
        return (int(image_size), int(image_size))
    size = getattr(encoder, "image_size", None)
    if size is not None:
        return (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    shape = getattr(encoder, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[2]:
        return (int(shape[1]), int(shape[2]))
    raise ValueError(
        "Cannot tell the encoder's input size; pass --image_size. "
        f"Received: image_size={image_size}"
    )


def _as_encoder(model, path):
    """The encoder to probe: a full `FlexPredict` file (the pretraining CLI's
    `final.keras`) is probed through its target encoder, as its
    `target_encoder.keras` export would be."""
    from keras_flexpredict.models import FlexPredict

    if isinstance(model, FlexPredict):
        print(
            f"{path} holds a whole FlexPredict model: probing its target encoder "
            "(the pretraining CLI also exports it alone as target_encoder.keras)."
        )
        return model.target_encoder
    return model


def _procedural_label(fv):
    return tuple(fv.label) if len(fv.label) > 1 else fv.label[0]


def make_datasets(kind, root, image_size, fv, transform="eval"):
    """`(train_dataset, test_dataset)` of `(images, labels)` batches, in evaluation mode
    (no shuffling, no augmentation, no dropped remainder, ImageNet normalisation).

    `transform` (folder data): `"eval"` (256/224 crop) or `"lowshot_eval"` (224/224)."""
    from keras_flexpredict import data

    if kind == "procedural":
        if image_size[0] != image_size[1]:
            raise ValueError(f"--data=procedural draws square images. Received: image_size={image_size}")
        common = dict(image_size=image_size[0], label=_procedural_label(fv), batch_size=fv.batch_size, training=False)
        return (
            data.procedural_shapes_dataset(fv.num_train, seed=fv.seed, **common),
            data.procedural_shapes_dataset(fv.num_test, seed=fv.seed + 1, **common),
        )
    common = dict(image_size=image_size, batch_size=fv.batch_size, training=False, transform=transform, drop_remainder=False)
    return (
        data.image_folder_dataset(root, split=fv.train_split, subset_file=fv.subset_file, **common),
        data.image_folder_dataset(root, split=fv.test_split, **common),
    )


def make_augmented_datasets(kind, root, image_size, batch_size, fv):
    """`(train_dataset, test_dataset, num_classes)` for the augmented linear probe: training
    images shuffled and augmented anew each epoch (`"vissl_train"`), test images through
    `"vissl_eval"` (bicubic 256/224)."""
    from keras_flexpredict import data

    if kind == "procedural":
        label = _procedural_label(fv)
        common = dict(image_size=image_size[0], label=label, batch_size=batch_size)
        train = data.procedural_shapes_dataset(fv.num_train, seed=fv.seed, training=True, transform="vissl_train", **common)
        test = data.procedural_shapes_dataset(
            fv.num_test, seed=fv.seed + 1, transform="vissl_eval", drop_remainder=False, **common
        )
        sizes = data.procedural_shapes_num_classes()
        num_classes = 1
        for key in label if isinstance(label, tuple) else (label,):
            num_classes *= sizes[key]
        return train, test, num_classes
    _, _, class_names = data.list_image_folder(root, split=fv.train_split)
    common = dict(image_size=image_size, batch_size=batch_size, seed=fv.seed)
    train = data.image_folder_dataset(
        root, split=fv.train_split, subset_file=fv.subset_file, training=True, transform="vissl_train", **common
    )
    test = data.image_folder_dataset(
        root, split=fv.test_split, training=False, transform="vissl_eval", drop_remainder=False, **common
    )
    return train, test, len(class_names)


def run_probes(train_features, train_labels, test_features, test_labels, protocols, settings=None):
    """Runs each protocol on the features; returns `{protocol: result dict}`."""
    from keras_flexpredict.evaluation.knn import knn_classifier
    from keras_flexpredict.evaluation.linear_probing import linear_probe
    from keras_flexpredict.evaluation.logistic_regression import logistic_regression_probe

    settings = settings or {}
    probes = {
        "linear": linear_probe,
        "logreg": logistic_regression_probe,
        "knn": knn_classifier,
    }
    results = {}
    for protocol in protocols:
        results[protocol] = probes[protocol](
            train_features, train_labels, test_features, test_labels, **settings.get(protocol, {})
        )
    return results


def _check_flags(fv):
    if not fv.encoder:
        raise ValueError(f"--encoder is required. Received: encoder={fv.encoder!r}")
    if not (os.path.isfile(fv.encoder) or os.path.isdir(fv.encoder) or fv.encoder.startswith("hf://")):
        raise ValueError(
            "--encoder must be an existing .keras file, preset or Hugging Face folder, official checkpoint, "
            f"or an hf:// handle. Received: encoder={fv.encoder!r}"
        )
    protocols = parse_protocols(fv.protocol)
    kind, root = parse_data_spec(fv.data)
    if fv.subset_file is not None:
        if kind != "folder":
            raise ValueError(
                f"--subset_file lists image file names, so it needs --data=folder:<root>. "
                f"Received: data={fv.data!r}, subset_file={fv.subset_file!r}"
            )
        if not os.path.isfile(fv.subset_file):
            raise ValueError(f"--subset_file must be an existing file. Received: subset_file={fv.subset_file!r}")
    if fv.logreg_protocol not in LOGREG_PROTOCOLS:
        raise ValueError(
            f"--logreg_protocol must be one of {LOGREG_PROTOCOLS}. Received: logreg_protocol={fv.logreg_protocol!r}"
        )
    if fv.linear_protocol not in LINEAR_PROTOCOLS:
        raise ValueError(
            f"--linear_protocol must be one of {LINEAR_PROTOCOLS}. Received: linear_protocol={fv.linear_protocol!r}"
        )
    if fv.pooling not in ("mean", "max"):
        raise ValueError(f"--pooling must be 'mean' or 'max'. Received: pooling={fv.pooling!r}")
    for name in ("batch_size", "num_train", "num_test", "last_n_layers", "knn_k", "linear_epochs", "linear_batch_size"):
        if getattr(fv, name) is not None and getattr(fv, name) < 1:
            raise ValueError(f"--{name} must be positive. Received: {name}={getattr(fv, name)}")
    if kind == "procedural" and "knn" in protocols and fv.knn_k > fv.num_train:
        raise ValueError(
            f"--knn_k must be at most --num_train ({fv.num_train}). Received: knn_k={fv.knn_k}"
        )
    if fv.image_size is not None and fv.image_size < 1:
        raise ValueError(f"--image_size must be positive. Received: image_size={fv.image_size}")
    if not fv.label:
        raise ValueError(f"--label must name a label. Received: label={fv.label}")
    l2_strengths = None
    if fv.l2_strengths:
        try:
            l2_strengths = tuple(float(s) for s in fv.l2_strengths)
        except ValueError:
            raise ValueError(
                f"--l2_strengths must be a comma list of numbers. Received: l2_strengths={fv.l2_strengths}"
            ) from None
        if fv.logreg_protocol == "official" and len(l2_strengths) != 1:
            raise ValueError(
                "--logreg_protocol=official fits one fixed strength; use --logreg_protocol=search to "
                f"choose among several. Received: l2_strengths={fv.l2_strengths}"
            )
    if fv.linear_lr is not None and not fv.linear_lr > 0:
        raise ValueError(f"--linear_lr must be positive. Received: linear_lr={fv.linear_lr}")
    return protocols, kind, root, l2_strengths


def evaluate(fv):
    """Runs the whole CLI from parsed flag values; returns the JSON-ready report."""
    protocols, kind, root, l2_strengths = _check_flags(fv)
    import keras

    import keras_flexpredict  # noqa: F401  (registers the library's classes for loading)
    from keras_flexpredict.evaluation.feature_extraction import extract_features_of_splits
    from keras_flexpredict.evaluation.result_io import write_result_json

    if fv.encoder.endswith(".keras"):
        encoder = _as_encoder(keras.saving.load_model(fv.encoder, compile=False), fv.encoder)
    else:  # pretrained weights: converted on the fly (see keras_flexpredict.convert)
        from keras_flexpredict.convert.sources import load_encoder

        official = fv.encoder.endswith((".pth.tar", ".pth", ".pt", ".tar", ".ckpt"))
        encoder = load_encoder(fv.encoder, verbose=bool(fv.verbose), **({"num_heads": fv.num_heads} if official else {}))
    image_size = _encoder_image_size(encoder, fv.image_size)

    # Which fixed-feature set each protocol reads (folder data: by evaluation transform;
    # procedural images are drawn at the input size, so one set serves all).
    transforms = {}
    for protocol in protocols:
        if protocol == "linear" and fv.linear_protocol == "augmented":
            transforms[protocol] = AUGMENTED_TRANSFORMS
        elif protocol == "logreg" and fv.logreg_protocol == "official":
            transforms[protocol] = "lowshot_eval"
        else:
            transforms[protocol] = "eval"
    if kind == "procedural":
        transforms = {p: (t if t == AUGMENTED_TRANSFORMS else "none") for p, t in transforms.items()}
    needed = [t for t in dict.fromkeys(transforms.values()) if t != AUGMENTED_TRANSFORMS]
    # Data listing errors (missing folders, subset entries without images) come here,
    # before any image goes through the encoder.
    splits = {t: make_datasets(kind, root, image_size, fv, transform=t if kind == "folder" else "eval") for t in needed}
    linear = dict(LINEAR_DEFAULTS[fv.linear_protocol])
    if fv.linear_batch_size is not None:
        linear["batch_size"] = fv.linear_batch_size
        if fv.linear_protocol == "augmented":
            # VISSL's auto_scale: the base rate 0.01 is for a global batch of 256.
            linear["lr"] *= fv.linear_batch_size / 256.0
    if fv.linear_epochs is not None:
        linear["epochs"] = fv.linear_epochs
    if fv.linear_lr is not None:
        linear["lr"] = fv.linear_lr
    augmented = None
    if "linear" in protocols and fv.linear_protocol == "augmented":
        augmented = make_augmented_datasets(kind, root, image_size, linear["batch_size"], fv)

    extract = dict(pooling=fv.pooling, last_n_layers=fv.last_n_layers, verbose=1 if fv.verbose else 0)
    features = {}
    for transform, (train_data, test_data) in splits.items():
        # One compiled forward pass for both splits.
        (train_x, train_y), (test_x, test_y) = extract_features_of_splits(encoder, [train_data, test_data], **extract)
        features[transform] = (train_x, train_y, test_x, test_y)
        if "knn" in protocols and transforms["knn"] == transform and fv.knn_k > train_x.shape[0]:
            # Checked before any probe trains, so no result is lost to a late error.
            raise ValueError(
                f"--knn_k must be at most the number of training images ({train_x.shape[0]}). "
                f"Received: knn_k={fv.knn_k}"
            )
    settings = {
        "linear": dict(linear, seed=fv.seed, verbose=0),
        "logreg": dict(
            protocol=fv.logreg_protocol, seed=fv.seed, **({"l2_strengths": l2_strengths} if l2_strengths else {})
        ),
        "knn": dict(k=fv.knn_k, temperature=fv.knn_temperature),
    }
    results = {}
    for protocol in protocols:
        if protocol == "linear" and augmented is not None:
            from keras_flexpredict.evaluation.augmented_linear_probing import augmented_linear_probe

            train_data, test_data, num_classes = augmented
            results[protocol] = augmented_linear_probe(
                encoder, train_data, test_data, num_classes, epochs=linear["epochs"], lr=linear["lr"],
                pooling=fv.pooling, last_n_layers=fv.last_n_layers, seed=fv.seed,
            )
            results[protocol]["batch_size"] = linear["batch_size"]
        else:
            results.update(run_probes(*features[transforms[protocol]], (protocol,), settings))
        results[protocol]["transform"] = transforms[protocol]
    first = next(iter(features.values()), None)
    report = {
        "encoder": os.path.abspath(fv.encoder),
        "data": fv.data,
        "label": ",".join(fv.label) if kind == "procedural" else None,
        "subset_file": fv.subset_file,
        "image_size": list(image_size),
        "pooling": fv.pooling,
        "last_n_layers": fv.last_n_layers,
        "backend": keras.backend.backend(),
        "num_train": None if first is None else int(first[0].shape[0]),
        "num_test": None if first is None else int(first[2].shape[0]),
        "feature_dim": None if first is None else int(first[0].shape[1]),
        "transforms": transforms,
        "top1": {p: r["top1"] for p, r in results.items()},
        "results": results,
    }
    for protocol, result in results.items():
        print(f"{protocol} top-1: {100.0 * result['top1']:.2f}%")
    if fv.output:
        path = write_result_json(fv.output, report)
        print(f"Results written to {path}")
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    evaluate(flags.FLAGS)


if __name__ == "__main__":
    define_flags()
    app.run(main)
