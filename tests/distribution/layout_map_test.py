import keras

from keras_flexpredict import distribution as kd
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.tiny_models import tiny_flexpredict


def _mesh(model=2):
    # Device names only: the mesh is never turned into a backend mesh here.
    return keras.distribution.DeviceMesh((1, model), ("batch", "model"), devices=[f"cpu:{i}" for i in range(model)])


class ViTLayoutMapTest(TestCase):
    def test_layout_map__shards_every_block_kernel_of_the_three_towers(self):
        model = tiny_flexpredict(encoder=dict(depth=2), predictor=dict(depth=2))
        layout_map = kd.vit_layout_map(_mesh())
        expected = {
            "qkv/kernel": (None, "model"),
            "qkv/bias": ("model",),
            "attention_output/kernel": ("model", None),
            "mlp_hidden/kernel": (None, "model"),
            "mlp_hidden/bias": ("model",),
            "mlp_output/kernel": ("model", None),
        }
        seen = {}
        for variable in model.weights:
            layout = layout_map[variable.path]
            suffix = "/".join(variable.path.split("/")[-2:])
            if "/block_" in variable.path and suffix in expected:
                self.assertIsNotNone(layout, msg=variable.path)
                self.assertEqual(tuple(layout.axes), expected[suffix], msg=variable.path)
                self.assertEqual(len(layout.axes), len(variable.shape), msg=variable.path)
                part = variable.path.split("/")[1]
                seen[part] = seen.get(part, 0) + 1
            else:
                # LayerNorms, output biases, patch embedding, projections, counters: replicated.
                self.assertIsNone(layout, msg=variable.path)
        # 2 blocks x 6 sharded variables in each of encoder, teacher and predictor.
        self.assertEqual(seen, {"context_encoder": 12, "target_encoder": 12, "predictor": 12})

    def test_layout_map__custom_axis_name_and_bad_arguments(self):
        mesh = keras.distribution.DeviceMesh((2,), ("tensor",), devices=["cpu:0", "cpu:1"])
        layout_map = kd.vit_layout_map(mesh, model_axis="tensor")
        self.assertEqual(tuple(layout_map["m/encoder/block_7/qkv/kernel"].axes), (None, "tensor"))
        with self.assertRaisesRegex(ValueError, "model_axis='model'"):
            kd.vit_layout_map(mesh)
        with self.assertRaisesRegex(ValueError, "device_mesh="):
            kd.vit_layout_map("mesh")
