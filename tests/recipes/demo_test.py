import os
import tempfile

from keras_flexpredict.testing import TestCase
from recipes import demo


class DemoTest(TestCase):
    def test_run_demo__too_narrow_for_the_knn_probe_refused_before_training(self):
        output_dir = os.path.join(tempfile.mkdtemp(), "demo_output")
        with self.assertRaisesRegex(ValueError, "model.encoder.hidden_dim=8"):
            demo.run_demo(output_dir=output_dir, overrides=["model.encoder.hidden_dim=8"], verbose=0)
        with self.assertRaisesRegex(ValueError, "num_probe_train=8"):
            demo.run_demo(output_dir=output_dir, num_probe_train=8, verbose=0)
        self.assertFalse(os.path.exists(os.path.join(output_dir, "runs")))
