"""One entry point for every kind of pretrained encoder or model source: library
preset names and folders, Hugging Face I-JEPA folders and `hf://` handles, official
`.pth.tar` checkpoints and `.keras` files."""

import os

OFFICIAL_SUFFIXES = (".pth.tar", ".pth", ".pt", ".tar", ".ckpt")


def _describe():
    return (
        "a preset name (ViTEncoder.presets()), a preset folder (save_to_preset), a Hugging Face "
        "I-JEPA folder (config.json + model.safetensors), an hf://<owner>/<name> handle, an official "
        f"checkpoint ({', '.join(OFFICIAL_SUFFIXES)}) or a .keras file"
    )


def kind_of_source(source):
    """`"hf"`, `"preset"`, `"huggingface"`, `"official"` or `"keras"`; raises for anything else."""
    from keras_flexpredict.convert.huggingface import is_hf_ijepa_directory
    from keras_flexpredict.models.preset_io import is_preset_directory

    source = os.fspath(source)
    if source.startswith("hf://"):
        return "hf"
    if os.path.isdir(source):
        if is_preset_directory(source):
            return "preset"
        if is_hf_ijepa_directory(source):
            return "huggingface"
        raise ValueError(
            f"The folder is neither a preset folder nor a Hugging Face I-JEPA folder. Expected {_describe()}. "
            f"Received: {source!r} with {sorted(os.listdir(source))[:10]}"
        )
    if os.path.isfile(source):
        if source.endswith(".keras"):
            return "keras"
        if source.endswith(OFFICIAL_SUFFIXES):
            return "official"
    raise ValueError(f"Unknown model source. Expected {_describe()}. Received: {source!r}")


def _encoder_of(model, which, image_size):
    from keras_flexpredict.models.flex_predict import FlexPredict
    from keras_flexpredict.models.vit_encoder import ViTEncoder

    if isinstance(model, FlexPredict):
        model = model.target_encoder if which == "target_encoder" else model.encoder
        return model.with_image_size(image_size or model.image_size)
    if not isinstance(model, ViTEncoder):
        raise ValueError(f"Expected a ViTEncoder or a FlexPredict. Received: {model.__class__.__name__}")
    if image_size is not None:
        model = model.with_image_size(image_size)
    return model


def load_encoder(source, which="target_encoder", image_size=None, num_heads=None, verbose=True, **overrides):
    """A `ViTEncoder` with pretrained weights from any supported source.

    Args:
        source: a preset folder, a Hugging Face I-JEPA folder, an `hf://` handle, an
            official `.pth.tar` or a `.keras` file (a `FlexPredict` one gives an encoder).
        which: for sources holding both encoders (official checkpoints, FlexPredict
            presets and files): `"target_encoder"` (default) or `"encoder"`.
        image_size: int, `(h, w)` or None (the source's resolution).
        num_heads: official checkpoints only: heads, when the width does not tell.
        verbose: progress bar while converting.
        **overrides: other `ViTEncoder` arguments (official and Hugging Face sources).
    """
    import keras

    import keras_flexpredict  # noqa: F401
    from keras_flexpredict.convert.huggingface import download_hf
    from keras_flexpredict.convert.huggingface import hf_encoder
    from keras_flexpredict.convert.official import official_encoder
    from keras_flexpredict.models.preset_io import load_preset

    kind = kind_of_source(source)
    if kind == "hf":
        return load_encoder(download_hf(source), which, image_size, num_heads, verbose, **overrides)
    if kind == "official":
        return official_encoder(source, which, num_heads=num_heads, image_size=image_size, verbose=verbose, **overrides)
    _no_arguments(kind, num_heads=num_heads)
    if kind == "huggingface":
        return hf_encoder(source, image_size=image_size, verbose=verbose, **overrides)
    if overrides:
        raise ValueError(f"Arguments {sorted(overrides)} apply to conversions only, not to a {kind} source.")
    if kind == "preset":
        return _encoder_of(load_preset(source), which, image_size)
    return _encoder_of(keras.saving.load_model(source, compile=False), which, image_size)


def _no_arguments(kind, **arguments):
    given = {k: v for k, v in arguments.items() if v is not None}
    if given:
        raise ValueError(f"{sorted(given)} apply to official checkpoints only, not to a {kind} source. Received: {given}")


def load_flexpredict(source, verbose=True, **kwargs):
    """A `FlexPredict` from a preset folder, an `hf://` handle of one, an official
    checkpoint (`kwargs` as `FlexPredict.from_official_checkpoint`) or a `.keras` file."""
    import keras

    import keras_flexpredict  # noqa: F401
    from keras_flexpredict.convert.huggingface import download_hf
    from keras_flexpredict.convert.official import official_flexpredict
    from keras_flexpredict.models.flex_predict import FlexPredict
    from keras_flexpredict.models.preset_io import load_preset

    kind = kind_of_source(source)
    if kind == "hf":
        return load_flexpredict(download_hf(source), verbose, **kwargs)
    if kind == "official":
        return official_flexpredict(source, verbose=verbose, **kwargs)
    if kind == "huggingface":
        raise ValueError(
            f"A Hugging Face I-JEPA folder holds an encoder only (no predictor); load it with "
            f"ViTEncoder.from_preset. Received: {source!r}"
        )
    if kwargs:
        raise ValueError(f"Arguments {sorted(kwargs)} apply to official checkpoints only, not to a {kind} source.")
    model = load_preset(source) if kind == "preset" else keras.saving.load_model(source, compile=False)
    if not isinstance(model, FlexPredict):
        raise ValueError(f"{source!r} holds a {model.__class__.__name__}, not a FlexPredict.")
    return model
