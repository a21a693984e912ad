"""Parity with `transformers`' IJepaModel, both key layouts, errors, hf:// offline."""

import json
import os
import re
import shutil

import numpy as np
import pytest
from keras import ops

import keras_flexpredict as kfp
from keras_flexpredict.convert.safetensors_reader import open_safetensors
from keras_flexpredict.convert.safetensors_reader import write_safetensors
from keras_flexpredict.testing.test_case import TestCase

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-5
_V5_TO_V4 = (
    (r"^layers\.", "encoder.layer."),
    (r"attention\.q_proj", "attention.attention.query"),
    (r"attention\.k_proj", "attention.attention.key"),
    (r"attention\.v_proj", "attention.attention.value"),
    (r"attention\.o_proj", "attention.output.dense"),
    (r"mlp\.fc1", "intermediate.dense"),
    (r"mlp\.fc2", "output.dense"),
)


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


class HuggingFaceIJepaTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        torch.manual_seed(0)
        config = transformers.IJepaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            image_size=32, patch_size=8, layer_norm_eps=1e-6,
        )
        cls.hf = transformers.IJepaModel(config).eval()
        with torch.no_grad():  # every parameter matters (biases and norms too)
            for p in cls.hf.parameters():
                p.add_(0.1 * torch.randn_like(p))
        cls.root = __import__("tempfile").mkdtemp(prefix="kfp_hf_test_")
        cls.folder = os.path.join(cls.root, "ijepa")
        cls.hf.save_pretrained(cls.folder, safe_serialization=True)
        cls.images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def hf_forward(self, images, **kwargs):
        with torch.no_grad():
            x = torch.from_numpy(images).permute(0, 3, 1, 2)
            return self.hf(x, **kwargs).last_hidden_state.numpy()

    def test_from_preset_folder__last_hidden_state_matches(self):
        encoder = kfp.models.ViTEncoder.from_preset(self.folder, verbose=False)
        self.assertEqual((encoder.hidden_dim, encoder.depth, encoder.num_heads, encoder.patch_size), (32, 2, 4, 8))
        diff = np.max(np.abs(_np(encoder(self.images)) - self.hf_forward(self.images)))
        print(f"[{self.backend}] transformers IJepaModel last_hidden_state max abs diff {diff:.3g}")
        self.assertLessEqual(diff, TOLERANCE)

    def test_other_key_layout__same_model(self):
        # The Hub files carry transformers-4 names; transformers 5 writes its own.
        tensors = {k: t.load() for k, t in open_safetensors(os.path.join(self.folder, "model.safetensors")).items()}
        v4 = any(k.startswith("encoder.layer.") for k in tensors)
        renamed = {}
        for key, value in tensors.items():
            if v4:
                new = key.replace("encoder.layer.", "layers.").replace("attention.attention.query", "attention.q_proj")
                new = new.replace("attention.attention.key", "attention.k_proj").replace("attention.attention.value", "attention.v_proj")
                new = new.replace("attention.output.dense", "attention.o_proj").replace("intermediate.dense", "mlp.fc1")
                new = new.replace(".output.dense", ".mlp.fc2")
            else:
                new = key
                for pattern, replacement in _V5_TO_V4:
                    new = re.sub(pattern, replacement, new)
            renamed["ijepa." + new] = np.array(value)  # as IJepaForImageClassification saves
        renamed["classifier.weight"] = np.zeros((5, 32), "float32")  # a head: skipped
        folder = os.path.join(self.get_temp_dir(), "other")
        os.makedirs(folder)
        shutil.copy(os.path.join(self.folder, "config.json"), folder)
        write_safetensors(os.path.join(folder, "model.safetensors"), renamed)
        encoder = kfp.models.ViTEncoder.from_preset(folder, verbose=False)
        self.assertLessEqual(np.max(np.abs(_np(encoder(self.images)) - self.hf_forward(self.images))), TOLERANCE)

    def test_other_resolution__matches_interpolate_pos_encoding(self):
        images = np.random.default_rng(1).standard_normal((1, 48, 40, 3)).astype("float32")
        encoder = kfp.models.ViTEncoder.from_preset(self.folder, image_size=(48, 40), verbose=False)
        theirs = self.hf_forward(images, interpolate_pos_encoding=True)
        self.assertLessEqual(np.max(np.abs(_np(encoder(images)) - theirs)), TOLERANCE)

    def test_mis_shaped_and_missing_keys__named(self):
        tensors = {k: np.array(t.load()) for k, t in open_safetensors(os.path.join(self.folder, "model.safetensors")).items()}
        q = next(k for k in tensors if re.search(r"1\.attention\.(q_proj|attention\.query)\.weight$", k))
        tensors[q] = np.zeros((32, 31), "float32")
        dropped = next(k for k in tensors if k.startswith("layernorm.") and k.endswith("bias"))
        del tensors[dropped]
        folder = os.path.join(self.get_temp_dir(), "bad")
        os.makedirs(folder)
        shutil.copy(os.path.join(self.folder, "config.json"), folder)
        write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
        with self.assertRaisesRegex(ValueError, rf"key {re.escape(q)} has shape \(32, 31\).*expects \(32, 32\)"):
            kfp.models.ViTEncoder.from_preset(folder, verbose=False)
        tensors[q] = np.zeros((32, 32), "float32")
        write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
        with self.assertRaisesRegex(ValueError, r"missing key ijepa/norm\.bias \(expected shape \(32,\)\)"):
            kfp.models.ViTEncoder.from_preset(folder, verbose=False)

    def test_hf_handle_offline__clear_error(self):
        from unittest import mock

        constants = pytest.importorskip("huggingface_hub.constants")
        # Offline, as on a machine without network: no connection is attempted.
        with mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1"}), mock.patch.object(constants, "HF_HUB_OFFLINE", True):
            with self.assertRaisesRegex(OSError, "Could not download hf://kfp-test/no-such-model.*local path"):
                kfp.models.ViTEncoder.from_preset("hf://kfp-test/no-such-model")
        with self.assertRaisesRegex(ValueError, "hf://<owner>/<name>"):
            kfp.models.ViTEncoder.from_preset("hf://just-a-name")

    def test_not_ijepa_config__error(self):
        folder = os.path.join(self.get_temp_dir(), "vit")
        os.makedirs(folder)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump({"model_type": "vit"}, f)
        with self.assertRaisesRegex(ValueError, "neither a preset folder nor a Hugging Face I-JEPA folder"):
            kfp.models.ViTEncoder.from_preset(folder)

    def test_convert_cli__checked_against_transformers(self):
        from absl import flags

        from keras_flexpredict.convert import cli

        fv = flags.FlagValues()
        cli.define_flags(fv)
        out = os.path.join(self.get_temp_dir(), "ijepa.keras")
        fv(["cli", f"--source={self.folder}", f"--output={out}", "--verbose=0"])
        result = cli.convert(fv)
        self.assertLessEqual(result["self_check"]["last_hidden_state (transformers)"], TOLERANCE)
        loaded = kfp.models.ViTEncoder.from_preset(out)
        self.assertLessEqual(np.max(np.abs(_np(loaded(self.images)) - self.hf_forward(self.images))), TOLERANCE)
