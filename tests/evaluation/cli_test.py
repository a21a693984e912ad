import json
import os
import shutil
import tempfile

import keras
import numpy as np
from absl import flags
from PIL import Image

from evaluation_test_utils import StandInEncoder
from keras_flexpredict.evaluation import cli
from keras_flexpredict.testing.test_case import TestCase


def parse_flags(argv):
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["cli"] + list(argv))
    return flag_values


class ProbeCLITest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.class_dir = tempfile.mkdtemp(prefix="kfp_cli_test_")
        cls.encoder_path = os.path.join(cls.class_dir, "encoder.keras")
        encoder = StandInEncoder(image_size=24, patch_size=4, hidden_dim=8, depth=2)
        encoder(np.zeros((1, 24, 24, 3), "float32"))
        encoder.save(cls.encoder_path)
        cls.folder = cls.make_folder(os.path.join(cls.class_dir, "images"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.class_dir, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.dir = self.get_temp_dir()

    @staticmethod
    def make_folder(root):
        """Two classes of noisy solid-colour images: red `n01`, blue `n02`."""
        rng = np.random.default_rng(0)
        for split, count in (("train", 10), ("val", 4)):
            for name, color in (("n01", (200, 30, 30)), ("n02", (30, 30, 200))):
                os.makedirs(os.path.join(root, split, name))
                for i in range(count):
                    pixels = np.clip(np.array(color) + rng.normal(0, 20, size=(20, 24, 3)), 0, 255)
                    Image.fromarray(pixels.astype("uint8")).save(os.path.join(root, split, name, f"{name}_{i}.png"))
        return root

    def test_folder_data_all_protocols__prints_and_writes_json(self):
        output = os.path.join(self.dir, "out", "result.json")
        fv = parse_flags([
            f"--encoder={self.encoder_path}", f"--data=folder:{self.folder}", "--protocol=all",
            f"--output={output}", "--batch_size=8", "--linear_epochs=3", "--linear_batch_size=8",
            "--knn_k=3", "--logreg_protocol=search", "--l2_strengths=1e-3,1e-1", "--verbose=0",
        ])
        report = cli.evaluate(fv)
        with open(output) as f:
            written = json.load(f)
        self.assertEqual(written, json.loads(json.dumps(report)))
        self.assertEqual(sorted(written["results"]), ["knn", "linear", "logreg"])
        self.assertEqual((written["num_train"], written["num_test"], written["feature_dim"]), (20, 8, 8))
        self.assertEqual(written["image_size"], [24, 24])
        # Red against blue: any reasonable probe separates them.
        self.assertEqual(written["top1"]["knn"], 1.0)
        self.assertEqual(written["top1"]["logreg"], 1.0)
        self.assertIn(written["results"]["logreg"]["l2_strength"], (1e-3, 1e-1))
        self.assertEqual(written["transforms"], {"linear": "eval", "logreg": "eval", "knn": "eval"})
        for result in written["results"].values():
            self.assertTrue(0.0 <= result["top1"] <= 1.0)

    def test_subset_file_and_functional_encoder__listed_images_and_input_shape(self):
        # A functional model: no `last_n_layers` argument, no `image_size` attribute,
        # a non-square input that the CLI must read from `input_shape`.
        inputs = keras.Input((24, 16, 3))
        tokens = keras.layers.Reshape((32, 36))(inputs)
        model = keras.Model(inputs, keras.layers.Dense(4)(tokens))
        path = os.path.join(self.dir, "functional.keras")
        model.save(path)
        subset = os.path.join(self.dir, "subset.txt")
        with open(subset, "w") as f:
            f.write("n01_0.png\nn01_3.png\nn02_1.png\n")
        fv = parse_flags([
            f"--encoder={path}", f"--data=folder:{self.folder}", "--protocol=knn,logreg",
            f"--subset_file={subset}", "--knn_k=1", "--l2_strengths=1e-2", "--verbose=0",
        ])
        report = cli.evaluate(fv)
        self.assertEqual((report["num_train"], report["num_test"]), (3, 8))
        self.assertEqual(sorted(report["results"]), ["knn", "logreg"])
        self.assertEqual(report["image_size"], [24, 16])
        self.assertEqual(report["feature_dim"], 4)

    def test_official_logreg_and_augmented_linear__own_transforms_and_settings(self):
        fv = parse_flags([
            f"--encoder={self.encoder_path}", f"--data=folder:{self.folder}", "--protocol=logreg,linear,knn",
            "--linear_protocol=augmented", "--linear_epochs=2", "--linear_batch_size=8", "--knn_k=3",
            "--batch_size=8", "--verbose=0",
        ])
        report = cli.evaluate(fv)
        self.assertEqual(
            report["transforms"],
            {"logreg": "lowshot_eval", "linear": "vissl_train+vissl_eval", "knn": "eval"},
        )
        logreg, linear = report["results"]["logreg"], report["results"]["linear"]
        self.assertEqual((logreg["variant"], logreg["fit_intercept"]), ("official", False))
        self.assertAlmostEqual(logreg["l2_strength"], 0.0025 / 20)
        self.assertEqual(report["top1"]["logreg"], 1.0)
        self.assertEqual((linear["variant"], linear["epochs"], linear["batch_size"]), ("augmented", 2, 8))
        self.assertAlmostEqual(linear["lr"], 0.01 * 8 / 256)  # VISSL's linear scaling
        self.assertEqual(linear["num_classes"], 2)

    def test_procedural_data__runs(self):
        fv = parse_flags([
            f"--encoder={self.encoder_path}", "--data=procedural", "--protocol=knn", "--num_train=24",
            "--num_test=12", "--label=color", "--knn_k=5", "--last_n_layers=2", "--verbose=0",
        ])
        report = cli.evaluate(fv)
        self.assertEqual((report["num_train"], report["num_test"], report["feature_dim"]), (24, 12, 16))
        self.assertEqual(report["label"], "color")
        self.assertTrue(0.0 <= report["top1"]["knn"] <= 1.0)

    def test_whole_flexpredict_file__probes_its_target_encoder(self):
        from keras_flexpredict.testing.tiny_models import tiny_flexpredict

        model = tiny_flexpredict(image_size=24, masker={"reference": False})
        # A teacher unlike the student, so probing the wrong one would show.
        model.target_encoder.set_weights([w * 0.5 for w in model.target_encoder.get_weights()])
        whole = os.path.join(self.dir, "final.keras")
        model.save(whole)
        encoder = cli._as_encoder(keras.saving.load_model(whole, compile=False), whole)
        self.assertAllClose(encoder.get_weights(), model.target_encoder.get_weights())
        self.assertFalse(np.allclose(encoder.get_weights()[0], model.encoder.get_weights()[0]))
        fv = parse_flags([
            f"--encoder={whole}", f"--data=folder:{self.folder}", "--protocol=knn", "--knn_k=3",
            "--batch_size=8", "--verbose=0",
        ])
        report = cli.evaluate(fv)
        self.assertEqual((report["image_size"], report["feature_dim"]), ([24, 24], 32))
        self.assertEqual(report["top1"]["knn"], 1.0)

    def test_parse_protocols(self):
        self.assertEqual(cli.parse_protocols("all"), ("linear", "logreg", "knn"))
        self.assertEqual(cli.parse_protocols("knn, linear,knn"), ("knn", "linear"))
        with self.assertRaisesRegex(ValueError, "protocol='svm'"):
            cli.parse_protocols("svm")
        with self.assertRaisesRegex(ValueError, "protocol='linear,all'"):
            cli.parse_protocols("linear,all")

    def test_parse_data_spec(self):
        self.assertEqual(cli.parse_data_spec("procedural"), ("procedural", None))
        self.assertEqual(cli.parse_data_spec("folder:/data/in1k"), ("folder", "/data/in1k"))
        with self.assertRaisesRegex(ValueError, "data='imagenet'"):
            cli.parse_data_spec("imagenet")
        with self.assertRaisesRegex(ValueError, "data='folder:'"):
            cli.parse_data_spec("folder:")

    def test_bad_flags__raise_naming_value_before_work(self):
        base = [f"--encoder={self.encoder_path}", "--verbose=0"]
        with self.assertRaisesRegex(ValueError, "protocol='svm'"):
            cli.evaluate(parse_flags(base + ["--protocol=svm"]))
        with self.assertRaisesRegex(ValueError, "encoder='missing.keras'"):
            cli.evaluate(parse_flags(["--encoder=missing.keras"]))
        with self.assertRaisesRegex(ValueError, "subset_file="):
            cli.evaluate(parse_flags(base + ["--data=procedural", f"--subset_file={self.encoder_path}"]))
        with self.assertRaisesRegex(ValueError, "pooling='cls'"):
            cli.evaluate(parse_flags(base + ["--pooling=cls"]))
        with self.assertRaisesRegex(ValueError, "l2_strengths="):
            cli.evaluate(parse_flags(base + ["--l2_strengths=strong"]))
        with self.assertRaisesRegex(ValueError, "logreg_protocol=official fits one"):
            cli.evaluate(parse_flags(base + ["--l2_strengths=1e-3,1e-2"]))
        with self.assertRaisesRegex(ValueError, "logreg_protocol='cyanure'"):
            cli.evaluate(parse_flags(base + ["--logreg_protocol=cyanure"]))
        with self.assertRaisesRegex(ValueError, "linear_protocol='vissl'"):
            cli.evaluate(parse_flags(base + ["--linear_protocol=vissl"]))
        with self.assertRaisesRegex(ValueError, "knn_k=50"):
            cli.evaluate(parse_flags(base + ["--protocol=knn", "--num_train=10", "--num_test=4", "--knn_k=50"]))
