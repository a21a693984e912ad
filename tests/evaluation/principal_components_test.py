import numpy as np

from keras_flexpredict.evaluation import knn_classifier
from keras_flexpredict.evaluation import remove_top_principal_components
from keras_flexpredict.testing.test_case import TestCase


def covariance_reference(train, test, n):
    """The same projection from an eigendecomposition of the training covariance."""
    mean = train.mean(0)
    train, test = train - mean, test - mean
    values, vectors = np.linalg.eigh(train.T @ train)
    top = vectors[:, np.argsort(values)[::-1][:n]]  # (F, n)
    keep = np.eye(train.shape[1]) - top @ top.T
    return train @ keep, test @ keep


class RemoveTopPrincipalComponentsTest(TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        scales = np.array([9.0, 5.0, 3.0, 1.0, 0.5, 0.2])  # distinct variances: unique directions
        basis = np.linalg.qr(rng.normal(size=(6, 6)))[0]
        self.train = (rng.normal(size=(50, 6)) * scales) @ basis.T + 3.0
        self.test = (rng.normal(size=(20, 6)) * scales) @ basis.T + 3.0

    def test_matches_the_covariance_reference(self):
        for n in (0, 1, 2, 5):
            got = remove_top_principal_components(self.train, self.test, n)
            want = covariance_reference(self.train, self.test, n)
            self.assertAllClose(got[0], want[0], atol=1e-4)
            self.assertAllClose(got[1], want[1], atol=1e-4)
            self.assertEqual((got[0].dtype, got[1].dtype), (np.float32, np.float32))

    def test_removed_directions_carry_nothing_and_zero_only_centres(self):
        train, test = remove_top_principal_components(self.train, self.test, 2)
        self.assertAllClose(train.mean(0), np.zeros(6), atol=1e-5)
        # What is left has the training split's 3rd-largest variance at the most.
        variances = np.linalg.svd(self.train - self.train.mean(0), compute_uv=False) ** 2
        self.assertLess(np.linalg.svd(train, compute_uv=False)[0] ** 2, variances[2] * 1.0001)
        self.assertEqual(np.linalg.matrix_rank(train, tol=1e-3), 4)
        centred, _ = remove_top_principal_components(self.train, self.test, 0)
        self.assertAllClose(centred, self.train - self.train.mean(0), atol=1e-5)

    def test_lets_a_knn_see_past_a_large_nuisance_direction(self):
        rng = np.random.default_rng(1)
        y = np.arange(400) % 4
        nuisance = 10.0 * rng.normal(size=(400, 8)) * (np.arange(8) < 3)  # large, on axes 0-2
        x = np.eye(8)[y + 3] + nuisance + 0.2 * rng.normal(size=(400, 8))
        raw = knn_classifier(x[:300], y[:300], x[300:], y[300:], k=10)["top1"]
        train, test = remove_top_principal_components(x[:300], x[300:], 3)
        cleaned = knn_classifier(train, y[:300], test, y[300:], k=10)["top1"]
        self.assertLess(raw, 0.4)  # chance 0.25
        self.assertGreater(cleaned, 0.95)

    def test_bad_arguments__named_in_the_error(self):
        with self.assertRaisesRegex(ValueError, "num_components=6"):
            remove_top_principal_components(self.train, self.test, 6)
        with self.assertRaisesRegex(ValueError, "num_components=-1"):
            remove_top_principal_components(self.train, self.test, -1)
        with self.assertRaisesRegex(ValueError, "num_components=1.5"):
            remove_top_principal_components(self.train, self.test, 1.5)
        with self.assertRaisesRegex(ValueError, r"test_features.shape=\(20, 5\)"):
            remove_top_principal_components(self.train, self.test[:, :5], 1)
        with self.assertRaisesRegex(ValueError, "train_features.shape"):
            remove_top_principal_components(self.train[0], self.test, 1)
