"""Parity fixtures from the official I-JEPA and StoP PyTorch code (random weights).

    python -m benchmarks.official_parity_fixtures --out tests/convert/fixtures

For each configuration below: builds the official encoder, target encoder and
predictor (StoP's `src/deit.py` or I-JEPA's `src/models/vision_transformer.py`, read at
run time from the local clones in `../.mirror` through `../shared/peers/refsrc.py`;
nothing of the official code is stored in this project), loads weights made by
`keras_flexpredict.testing.official_fixtures.fixture_value` (strict `load_state_dict`,
so every key name and shape is the official one), runs it on random images and masks,
and writes `<name>.npz`: images (NHWC), masks_enc (B, Kc), masks_pred (M, B, Kt),
target_features = layer_norm(target_encoder(x)) (no affine), context_features =
encoder(x, masks_enc), predictions (M * B, Kt, De) block-major (StoP at sigma 0:
masked tokens = sin-cos PE + bias of the context projection; I-JEPA: + mask token),
the state-dict key names and shapes, the fixed positional tables, the seed, the
configuration and the official commit. Weights are not stored (the tests rebuild them
from the seed), so each file stays a few tens of KB.

Needs torch, numpy, and the clones (`MIRROR`) and peers harness (`PEERS`).
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = {
    # name: impl, image, patch, width, depth, heads, mlp_ratio, pred width, pred depth, batch, Kc, M, Kt, seed
    "stop_w192_p8": ("stop", 32, 8, 192, 2, 3, 4.0, 48, 2, 2, 9, 2, 4, 1),
    "ijepa_w32_p14": ("ijepa", 56, 14, 32, 2, 4, 4.0, 16, 1, 2, 8, 3, 3, 2),
    "ijepa_w44_vitg_mlp": ("ijepa", 48, 16, 44, 1, 4, 48 / 11, 24, 2, 2, 5, 2, 2, 3),
}


def _official_modules(impl, mirror):
    sys.path.insert(0, os.environ.get("PEERS", os.path.join(ROOT, "..", "shared", "peers")))
    import refsrc

    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        del sys.modules[name]
    tmp, sha = refsrc.extract(refsrc.resolve_mirror(mirror), impl)
    sys.path.insert(0, tmp)
    if impl == "stop":
        refsrc.stub_module("src.data_manager", init_data=None, make_transforms=None)
        vit = refsrc.import_file("src.deit", os.path.join(tmp, "src", "deit.py"))
    else:
        vit = refsrc.import_file("src.models.vision_transformer", os.path.join(tmp, "src", "models", "vision_transformer.py"))
    return vit, sha, tmp


def make_fixture(name, config, out, mirror):
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, ROOT)
    from keras_flexpredict.testing.official_fixtures import FIXED
    from keras_flexpredict.testing.official_fixtures import PARTS
    from keras_flexpredict.testing.official_fixtures import fixture_value

    impl, img, patch, width, depth, heads, ratio, pwidth, pdepth, b, kc, m, kt, seed = config
    vit, sha, tmp = _official_modules(impl, mirror)
    norm = lambda d: torch.nn.LayerNorm(d, eps=1e-6)  # noqa: E731
    make_encoder = lambda: vit.VisionTransformer(  # noqa: E731
        img_size=[img], patch_size=patch, embed_dim=width, depth=depth, num_heads=heads,
        mlp_ratio=ratio, qkv_bias=True, norm_layer=norm)
    encoder, target = make_encoder(), make_encoder()
    extra = dict(apply_stop=True, noise_var=0.0) if impl == "stop" else {}
    predictor = vit.VisionTransformerPredictor(
        num_patches=encoder.patch_embed.num_patches, embed_dim=width, predictor_embed_dim=pwidth,
        depth=pdepth, num_heads=heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm, **extra)
    models = {"encoder": encoder, "predictor": predictor, "target_encoder": target}
    arrays = {"seed": np.array(seed), "ref_commit": np.array(sha), "impl": np.array(impl),
              "config": np.array([img, patch, width, depth, heads, pwidth, pdepth, b, kc, m, kt])}
    for p, part in enumerate(PARTS):
        state = models[part].state_dict()
        names = list(state)
        new = {}
        for i, key in enumerate(names):
            if key in FIXED:
                new[key] = state[key]
                arrays[f"{part}/{key}"] = state[key].numpy()
            else:
                new[key] = torch.from_numpy(fixture_value(seed, p, i, key, tuple(state[key].shape)))
        models[part].load_state_dict(new, strict=True)
        models[part].eval()
        arrays[f"{part}_names"] = np.array(names)
        arrays[f"{part}_shapes"] = np.array([",".join(map(str, state[k].shape)) for k in names])
    rng = np.random.default_rng(seed)
    n = (img // patch) ** 2
    masks_enc = np.stack([np.sort(rng.choice(n, kc, replace=False)) for _ in range(b)])
    masks_pred = np.stack([np.stack([np.sort(rng.choice(n, kt, replace=False)) for _ in range(b)]) for _ in range(m)])
    x = torch.from_numpy(rng.standard_normal((b, 3, img, img)).astype(np.float32))
    enc_masks = torch.from_numpy(masks_enc)
    pred_masks = [torch.from_numpy(t) for t in masks_pred]
    with torch.no_grad():
        h = target(x)
        h = F.layer_norm(h, (h.size(-1),))
        z = encoder(x, enc_masks)
        y = predictor(z, enc_masks, pred_masks)
    arrays.update(images=x.permute(0, 2, 3, 1).numpy(), masks_enc=masks_enc, masks_pred=masks_pred,
                  target_features=h.numpy(), context_features=z.numpy(), predictions=y.numpy())
    path = os.path.join(out, f"{name}.npz")
    np.savez_compressed(path, **arrays)
    print(name, impl, "target", tuple(h.shape), "context", tuple(z.shape), "pred", tuple(y.shape),
          f"{os.path.getsize(path) / 1024:.0f} KB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "convert", "fixtures"))
    ap.add_argument("--mirror", default=os.environ.get("MIRROR", os.path.join(ROOT, "..", ".mirror")))
    ap.add_argument("--configs", default=",".join(CONFIGS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name in a.configs.split(","):
        make_fixture(name, CONFIGS[name], a.out, a.mirror)


if __name__ == "__main__":
    main()
