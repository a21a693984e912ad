"""The JEPA loss: smooth L1 / L2 over real target tokens only."""

import numpy as np

from keras_flexpredict.losses import LOSSES
from keras_flexpredict.losses import jepa_loss
from keras_flexpredict.testing import TestCase


def _reference(predictions, targets, mask, loss):
    diff = predictions.astype(np.float64) - targets
    if loss == "smooth_l1":
        per = np.where(np.abs(diff) < 1.0, 0.5 * diff**2, np.abs(diff) - 0.5)
    else:
        per = diff**2
    weight = mask[..., None].astype(np.float64)
    return (per * weight).sum() / (max(weight.sum(), 1.0) * diff.shape[-1])


class JEPALossTest(TestCase):
    def test_jepa_loss__matches_numpy_on_real_tokens(self):
        rng = np.random.default_rng(0)
        predictions = rng.normal(size=(2, 3, 4, 5)).astype("float32") * 2
        targets = rng.normal(size=(2, 3, 4, 5)).astype("float32")
        mask = rng.random((2, 3, 4)) > 0.3
        for loss in LOSSES:
            self.assertAllClose(
                jepa_loss(predictions, targets, mask, loss=loss), _reference(predictions, targets, mask, loss),
                atol=1e-5, rtol=1e-5,
            )

    def test_jepa_loss__padding_slots_weigh_nothing(self):
        predictions = np.zeros((1, 1, 3, 2), "float32")
        targets = np.zeros((1, 1, 3, 2), "float32")
        targets[0, 0, 2] = 100.0  # a padding slot
        mask = np.array([[[True, True, False]]])
        self.assertAllClose(jepa_loss(predictions, targets, mask), 0.0)

    def test_jepa_loss__empty_mask_is_zero_not_nan(self):
        ones = np.ones((1, 1, 2, 2), "float32")
        self.assertAllClose(jepa_loss(ones, 0 * ones, np.zeros((1, 1, 2), bool), loss="mse"), 0.0)

    def test_jepa_loss__smooth_l1_is_quadratic_then_linear(self):
        mask = np.ones((1, 1, 1), bool)
        zero = np.zeros((1, 1, 1, 1), "float32")
        self.assertAllClose(jepa_loss(zero + 0.5, zero, mask), 0.125)
        self.assertAllClose(jepa_loss(zero + 3.0, zero, mask), 2.5)

    def test_jepa_loss__unknown_loss_names_the_value(self):
        with self.assertRaisesRegex(ValueError, "loss='l1'"):
            jepa_loss(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1)), np.ones((1, 1, 1), bool), loss="l1")
