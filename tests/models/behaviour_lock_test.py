import json

import keras
import numpy as np

from keras_flexpredict.testing import TestCase
from _tiny_run import fixture_path
from _tiny_run import tiny_run


class BehaviourLockTest(TestCase):
    def test_tiny_run__matches_numbers_recorded_before_refactor(self):
        # Recorded on the dev VM before the training path was restructured (issue 13);
        # the tolerance leaves room for another CPU's matmul kernels only. TensorFlow's
        # was re-recorded when its graphs began cutting this run's target slots (the
        # StoP noise is drawn per slot, so it changed; with sigma=0 the old and the new
        # cut gave bit-identical losses). JAX's was re-recorded when its train step began
        # running length buckets (`FlexPredict(length_buckets=...)`), for the same reason;
        # `jax_length_buckets_test` checks that with sigma=0 the buckets change nothing.
        with open(fixture_path(keras.backend.backend())) as f:
            expected = json.load(f)
        got = tiny_run()
        np.testing.assert_allclose(got["losses"], expected["losses"], rtol=2e-5, atol=1e-6)
        for key in ("encoder_abs_sum", "target_encoder_abs_sum", "predictor_abs_sum"):
            np.testing.assert_allclose(got[key], expected[key], rtol=2e-5, err_msg=key)
