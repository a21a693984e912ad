r"""Fine-tune a pretrained encoder on the built-in procedural shapes (a short example).

    python -m recipes.fine_tune --encoder=converted_vit/ --epochs=3
    python -m recipes.fine_tune --encoder=IN1K-vit.h.14-300e.pth.tar --image_size=224
    python -m recipes.fine_tune --encoder=demo_output/runs/stop/target_encoder.keras

`--encoder` is anything `kfp.models.ViTEncoder.from_preset` reads: a preset folder
(`save_to_preset`, `python -m keras_flexpredict.convert`), a Hugging Face I-JEPA folder
or `hf://` handle, an official `.pth.tar`, a `.keras` file, or a size name such as
`vit_tiny_patch16_224` (random weights, a baseline). The encoder becomes a
`kfp.models.ViTClassifier` (mean-pooled tokens, one linear head; `--freeze_encoder`
trains the head only) compiled with its defaults (AdamW, cross-entropy, accuracy; the
learning rate from `--learning_rate`), trained on `--num_train` procedural images
labelled by `--label` and evaluated on `--num_test` others. `--output` saves the
fine-tuned classifier as a preset folder.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from keras_flexpredict.utils.validation import check_int  # noqa: E402
from recipes import cli  # noqa: E402


def define_flags(flag_values=flags.FLAGS):
    fv = flag_values
    flags.DEFINE_string("encoder", "vit_tiny_patch16_224", "Encoder source (see the module doc).", flag_values=fv)
    flags.DEFINE_integer("image_size", None, "Input size (default: the encoder's; procedural images are square).", flag_values=fv)
    flags.DEFINE_integer("num_heads", None, "Official .pth.tar: heads, when the width does not tell.", flag_values=fv)
    flags.DEFINE_string("label", "shape", "Procedural label to learn (shape, count, position, ...).", flag_values=fv)
    flags.DEFINE_integer("num_train", 512, "Training images.", flag_values=fv)
    flags.DEFINE_integer("num_test", 256, "Test images.", flag_values=fv)
    flags.DEFINE_integer("epochs", 3, "Epochs.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 32, "Batch size.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 1e-4, "AdamW learning rate.", flag_values=fv)
    flags.DEFINE_bool("freeze_encoder", False, "Train the head only.", flag_values=fv)
    flags.DEFINE_string("output", None, "Save the classifier as a preset folder here.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the data and the head.", flag_values=fv)


def fine_tune(fv):
    """Runs the example from parsed flags; returns `{"history", "test_accuracy", "output"}`."""
    import keras

    import keras_flexpredict as kfp
    from keras_flexpredict import data

    for name in ("num_train", "num_test", "epochs", "batch_size"):
        check_int(name, getattr(fv, name), minimum=1)
    keras.utils.set_random_seed(fv.seed)
    kwargs = {}
    if fv.image_size:
        kwargs["image_size"] = fv.image_size
    if fv.num_heads:
        kwargs["num_heads"] = fv.num_heads
    encoder = kfp.models.ViTEncoder.from_preset(fv.encoder, **kwargs)
    size = encoder.image_size
    if size[0] != size[1]:
        raise ValueError(f"The procedural images are square; pass --image_size. Received: image_size={size}")
    num_classes = data.procedural_shapes_num_classes()[fv.label]
    classifier = kfp.models.ViTClassifier(encoder, num_classes, freeze_encoder=fv.freeze_encoder)
    classifier.compile(optimizer=keras.optimizers.AdamW(learning_rate=fv.learning_rate, weight_decay=0.05))
    common = dict(image_size=size[0], label=fv.label, batch_size=fv.batch_size)
    train = data.procedural_shapes_dataset(fv.num_train, seed=fv.seed, training=True, **common)
    test = data.procedural_shapes_dataset(fv.num_test, seed=fv.seed + 1, drop_remainder=False, **common)
    history = classifier.fit(train, epochs=fv.epochs, verbose=2)
    _, accuracy = classifier.evaluate(test, verbose=0)
    print(f"test accuracy ({fv.label}): {100 * accuracy:.1f}%")
    output = classifier.save_to_preset(fv.output) if fv.output else None
    return {"history": history.history, "test_accuracy": float(accuracy), "output": output}


if __name__ == "__main__":
    cli.run_main(define_flags, fine_tune)
