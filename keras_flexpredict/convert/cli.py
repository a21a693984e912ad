r"""Convert pretrained I-JEPA / StoP weights to Keras files.

Usage:

    python -m keras_flexpredict.convert --source=IN1K-vit.h.14-300e.pth.tar \
        --output=vit_h14_ijepa.keras
    python -m keras_flexpredict.convert --source=vit-b16.pth.tar --model=flexpredict \
        --output=stop_vit_b16/                      # a preset folder
    python -m keras_flexpredict.convert --source=hf://facebook/ijepa_vith14_1k \
        --output=ijepa_vith14/ --image_size=448

`--source`: an official `.pth.tar` (keys `encoder`, `predictor`, `target_encoder`), a
Hugging Face I-JEPA folder (`config.json` + `model.safetensors`) or `hf://` handle, or
a preset folder / `.keras` file of this library. `--output`: a `.keras` file, or any
other path as a preset folder (`config.json`, `model.weights.h5`, `metadata.json`; load
it with `ViTEncoder.from_preset` / `FlexPredict.from_preset`). `--model=encoder` writes
one encoder (`--which`: the target encoder by default, what the papers evaluate);
`--model=flexpredict` the whole system (official sources only), e.g. to continue
pretraining. Writes are atomic.

Self-check (`--check`, on by default when PyTorch is installed): a random batch goes
through the converted Keras model and through a plain PyTorch forward of the source
weights (`keras_flexpredict.convert.torch_reference`; `transformers`' `IJepaModel` for
a Hugging Face folder at its own resolution when `transformers` is installed); the
largest absolute difference of every output is printed, and above `--tolerance`
nothing is written and the command fails.
"""

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags

MODELS = ("encoder", "flexpredict")


def define_flags(flag_values=flags.FLAGS):
    """Defines the converter's flags on `flag_values` (the global absl FLAGS by default)."""
    fv = flag_values
    flags.DEFINE_string("source", None, "Official .pth.tar, Hugging Face folder, hf:// handle, preset folder or .keras file.", flag_values=fv)
    flags.DEFINE_string("output", None, "A .keras file, or a folder to write as a preset.", flag_values=fv)
    flags.DEFINE_string("model", "encoder", "encoder or flexpredict.", flag_values=fv)
    flags.DEFINE_string("which", "target_encoder", "Encoder to write: target_encoder or encoder.", flag_values=fv)
    flags.DEFINE_string("positional_noise", "stop", "flexpredict: stop (StoP) or none (I-JEPA's mask token).", flag_values=fv)
    flags.DEFINE_string("masker", None, "flexpredict: JSON dict of MultiBlockMasker arguments (e.g. for small grids).", flag_values=fv)
    flags.DEFINE_integer("num_heads", None, "Attention heads, when the width does not tell.", flag_values=fv)
    flags.DEFINE_integer("image_size", None, "Convert for this input size (default: the source's).", flag_values=fv)
    flags.DEFINE_bool("check", True, "Compare with a PyTorch forward of the source on a random batch.", flag_values=fv)
    flags.DEFINE_integer("check_batch_size", 2, "Images in the self-check batch.", flag_values=fv)
    flags.DEFINE_float("tolerance", 1e-4, "Largest absolute difference the self-check accepts.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the self-check batch and masks.", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Replace an existing output.", flag_values=fv)
    flags.DEFINE_integer("verbose", 1, "0: quiet; 1: progress bar and report.", flag_values=fv)


def _check_flags(fv):
    from keras_flexpredict.convert.sources import kind_of_source

    if not fv.source:
        raise ValueError(f"--source is required. Received: source={fv.source!r}")
    if not fv.output:
        raise ValueError(f"--output is required. Received: output={fv.output!r}")
    kind = kind_of_source(fv.source)
    if fv.model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS}. Received: model={fv.model!r}")
    if fv.which not in ("target_encoder", "encoder"):
        raise ValueError(f"--which must be target_encoder or encoder. Received: which={fv.which!r}")
    if fv.positional_noise not in ("stop", "none"):
        raise ValueError(f"--positional_noise must be stop or none. Received: positional_noise={fv.positional_noise!r}")
    if fv.model == "flexpredict" and kind == "huggingface":
        raise ValueError(f"A Hugging Face I-JEPA folder has no predictor: use --model=encoder. Received: source={fv.source!r}")
    if fv.num_heads is not None and kind != "official":
        raise ValueError(f"--num_heads applies to official checkpoints only. Received: num_heads={fv.num_heads}")
    for name in ("image_size", "num_heads", "check_batch_size"):
        value = getattr(fv, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be positive. Received: {name}={value}")
    if not fv.tolerance > 0:
        raise ValueError(f"--tolerance must be positive. Received: tolerance={fv.tolerance}")
    if fv.masker is not None:
        if fv.model != "flexpredict" or kind != "official":
            raise ValueError(f"--masker applies to --model=flexpredict from an official checkpoint. Received: masker={fv.masker!r}")
        try:
            masker = json.loads(fv.masker)
        except ValueError:
            masker = None
        if not isinstance(masker, dict):
            raise ValueError(f"--masker must be a JSON object. Received: masker={fv.masker!r}")
    if os.path.exists(fv.output) and not fv.overwrite:
        raise ValueError(f"--output exists; pass --overwrite to replace it. Received: output={fv.output!r}")
    return kind


def _torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _numpy(x):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def _random_masks(rng, batch, grid, m=2):
    n = grid[0] * grid[1]
    kc, kt = max(1, n // 2), max(1, n // 8)
    context = np.stack([np.sort(rng.choice(n, kc, replace=False)) for _ in range(batch)]).astype(np.int32)
    targets = np.stack([[np.sort(rng.choice(n, kt, replace=False)) for _ in range(m)] for _ in range(batch)])
    return {
        "context_indices": context, "context_mask": np.ones(context.shape, bool),
        "target_indices": targets.astype(np.int32), "target_mask": np.ones(targets.shape, bool),
    }


def self_check(model, fv, kind, source):
    """`{output: max abs difference}` between the Keras model and a PyTorch forward
    of the source weights on a random batch."""
    from keras_flexpredict.convert import torch_reference as ref
    from keras_flexpredict.models.flex_predict import FlexPredict

    rng = np.random.default_rng(fv.seed)
    encoder = model.target_encoder if isinstance(model, FlexPredict) else model
    images = rng.standard_normal((fv.check_batch_size, *encoder.image_size, encoder.num_channels)).astype(np.float32)
    diffs = {}

    def table(enc):
        return _numpy(enc.positional_embedding.embeddings)

    if kind == "huggingface":
        from keras_flexpredict.convert.huggingface import official_state_from_hf
        from keras_flexpredict.convert.huggingface import read_hf_config
        from keras_flexpredict.convert.huggingface import read_hf_weights

        config = read_hf_config(source)
        ours = _numpy(model(images))
        try:
            import torch
            from transformers import IJepaModel
        except ImportError:
            IJepaModel = None
        if IJepaModel is not None and tuple(config["image_size"]) == tuple(model.image_size):
            hf = IJepaModel.from_pretrained(source).eval()
            with torch.no_grad():
                theirs = hf(torch.as_tensor(images).permute(0, 3, 1, 2)).last_hidden_state.numpy()
            diffs["last_hidden_state (transformers)"] = float(np.max(np.abs(ours - theirs)))
        else:
            state = official_state_from_hf(read_hf_weights(source), config)
            theirs = ref.encoder_forward(state, images, model.num_heads, table(model), model.layer_norm_epsilon)
            diffs["last_hidden_state (torch reference)"] = float(np.max(np.abs(ours - theirs)))
        return diffs
    if kind != "official":
        return diffs  # a Keras source: nothing to compare with
    from keras_flexpredict.convert.official import read_official_checkpoint

    states = read_official_checkpoint(source)
    if not isinstance(model, FlexPredict):
        part = fv.which if fv.which in states else "encoder"
        theirs = ref.encoder_forward(states[part], images, model.num_heads, table(model), model.layer_norm_epsilon)
        diffs[part] = float(np.max(np.abs(_numpy(model(images)) - theirs)))
        return diffs
    masks = _random_masks(rng, fv.check_batch_size, encoder.grid_size)
    eps = encoder.layer_norm_epsilon
    for part, enc in (("target_encoder", model.target_encoder), ("encoder", model.encoder)):
        theirs = ref.encoder_forward(states[part], images, enc.num_heads, table(enc), eps)
        diffs[part] = float(np.max(np.abs(_numpy(enc(images)) - theirs)))
    context = model.encoder(images, context_indices=masks["context_indices"])
    predictor = model.predictor
    theirs = ref.predictor_forward(
        states["predictor"], _numpy(context), masks["context_indices"], masks["target_indices"],
        predictor.num_heads, _numpy(predictor.positional_embedding),
        mask_token=predictor.positional_noise == "none", eps=predictor.layer_norm_epsilon,
    )
    diffs["predictor"] = float(np.max(np.abs(_numpy(predictor(context, masks, training=False)) - theirs)))
    return diffs


def convert(fv):
    """Runs the converter from parsed flags; returns `{"output", "self_check"}`."""
    kind = _check_flags(fv)
    from keras_flexpredict.convert.huggingface import download_hf
    from keras_flexpredict.convert.sources import load_encoder
    from keras_flexpredict.convert.sources import load_flexpredict
    from keras_flexpredict.distribution.saving import save_model

    source = fv.source
    if kind == "hf":
        source = download_hf(source)
        from keras_flexpredict.convert.sources import kind_of_source

        kind = kind_of_source(source)
    verbose = bool(fv.verbose)
    if fv.model == "flexpredict":
        kwargs = {}
        if kind == "official":
            kwargs = dict(positional_noise=fv.positional_noise, num_heads=fv.num_heads, image_size=fv.image_size)
            if fv.masker:
                kwargs["masker"] = json.loads(fv.masker)
        model = load_flexpredict(source, verbose=verbose, **kwargs)
    else:
        kwargs = dict(num_heads=fv.num_heads) if kind == "official" else {}
        model = load_encoder(source, which=fv.which, image_size=fv.image_size, verbose=verbose, **kwargs)
    diffs = None
    if fv.check:
        if _torch_available():
            diffs = self_check(model, fv, kind, source)
            for name, diff in diffs.items():
                print(f"self-check {name}: max abs difference {diff:.3g}")
            bad = {k: v for k, v in diffs.items() if not v <= fv.tolerance}
            if bad:
                raise ValueError(
                    f"Self-check failed: {bad} exceed --tolerance={fv.tolerance}; nothing was written."
                )
        else:
            print("self-check skipped: PyTorch is not installed", file=sys.stderr)
    output = os.path.abspath(fv.output)
    if output.endswith(".keras"):
        save_model(model, output)
    else:
        model.save_to_preset(output)
    if verbose:
        print(f"Wrote {model.__class__.__name__} ({model.count_params():,} parameters) to {output}")
    return {"output": output, "self_check": diffs}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    convert(flags.FLAGS)


def run():
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
