import numpy as np

import keras_flexpredict as kfp
from keras_flexpredict.testing import TestCase
from recipes import monitoring
from recipes import pretrain


class MonitoringTest(TestCase):
    def test_validate__defaults_diagnostics_on_probe_off(self):
        config, _ = pretrain.prepare_config("stop_tiny_procedural")
        self.assertEqual(config["monitor"], monitoring.DEFAULTS)
        callbacks = monitoring.make_callbacks(config)
        self.assertEqual([type(c).__name__ for c in callbacks], ["TrainingDiagnostics"])
        self.assertEqual(callbacks[0].images.shape, (64, 32, 32, 3))

    def test_make_callbacks__probe_on_labelled_procedural_images(self):
        config, _ = pretrain.prepare_config(
            "stop_tiny_procedural",
            ["monitor.probe_every=2", "monitor.probe_num_train=30", "monitor.probe_num_test=10",
             'monitor.probe_labels=["count"]', "monitor.probe_knn_k=5", "monitor.diagnostics_every=0"],
        )
        (probe,) = monitoring.make_callbacks(config)
        self.assertIsInstance(probe, kfp.callbacks.OnlineProbe)
        self.assertEqual((probe.every_n_epochs, probe.knn_k), (2, 5))
        labels = probe.train_labels["count"]
        self.assertEqual(labels.shape, (30,))
        self.assertTrue(np.all((labels >= 0) & (labels < 4)))

    def test_validate__bad_keys_and_values_are_named(self):
        cases = [
            ("monitor.diagnostics_evry=1", "monitor.diagnostics_evry=1"),
            ("monitor.diagnostics_every=-1", "monitor.diagnostics_every=-1"),
            ("monitor.rank_threshold=\"x\"", "monitor.rank_threshold='x'"),
            ('monitor.probe_labels=["colour"]', "monitor.probe_labels=\\['colour'\\]"),
            ("monitor.probe_knn_k=5000", "monitor.probe_knn_k=5000"),
        ]
        for override, message in cases:
            with self.assertRaisesRegex(ValueError, message):
                pretrain.prepare_config("stop_tiny_procedural", [override])
        with self.assertRaisesRegex(ValueError, "monitor.probe_every=1"):
            monitoring.validate({"probe_every": 1}, {"source": "image_folder"})
