import numpy as np

from keras_flexpredict.models import JEPAPredictor
from keras_flexpredict.models import ViTEncoder
from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils.length_buckets import choose_length_buckets
from keras_flexpredict.utils.length_buckets import first_fitting_bucket
from keras_flexpredict.utils.length_buckets import token_weights


def expected_cost(buckets, context, target, weights):
    """Mean cost of running each sample at its cheapest fitting bucket."""
    wc, wt = weights
    return np.mean(
        [min(wc * kc + wt * kt for kc, kt in buckets if kc >= c and kt >= t) for c, t in zip(context, target)]
    )


class ChooseLengthBucketsTest(TestCase):
    def test_bimodal_lengths__a_bucket_for_the_short_mode(self):
        rng = np.random.default_rng(0)
        context = np.where(rng.random(400) < 0.5, rng.integers(40, 51, 400), rng.integers(70, 78, 400))
        target = np.full(400, 36)
        buckets = choose_length_buckets(context, target, 77, 36, (1.0, 1.0), max_buckets=2)
        self.assertEqual(buckets, ((50, 36), (77, 36)))

    def test_buckets__cheapest_first_full_slots_last_and_every_sample_fits(self):
        rng = np.random.default_rng(1)
        context, target = rng.integers(50, 78, 500), rng.choice([30, 35, 36], 500)
        weights = (4.0, 3.5)
        for max_buckets in (1, 2, 3, 5):
            buckets = choose_length_buckets(context, target, 77, 36, weights, max_buckets=max_buckets, min_saving=0)
            self.assertEqual(buckets[-1], (77, 36))
            self.assertLessEqual(len(buckets), max_buckets)
            costs = [weights[0] * kc + weights[1] * kt for kc, kt in buckets]
            self.assertEqual(costs, sorted(costs))
        # More buckets never cost more on the samples they were chosen from.
        costs = [
            expected_cost(choose_length_buckets(context, target, 77, 36, weights, max_buckets=k, min_saving=0),
                          context, target, weights)
            for k in (1, 2, 3, 4)
        ]
        self.assertEqual(costs, sorted(costs, reverse=True))
        self.assertLess(costs[-1], costs[0])

    def test_masks_that_fill_their_slots__no_bucket_added(self):
        self.assertEqual(choose_length_buckets([77] * 50, [36] * 50, 77, 36, (1.0, 1.0)), ((77, 36),))

    def test_min_saving__a_bucket_that_saves_too_little_is_left_out(self):
        context = np.array([76] * 50 + [77] * 50)
        target = np.full(100, 36)
        # (76, 36) saves half a slot of 113 on average: under 1%.
        self.assertEqual(choose_length_buckets(context, target, 77, 36, (1.0, 1.0)), ((77, 36),))
        self.assertEqual(
            choose_length_buckets(context, target, 77, 36, (1.0, 1.0), min_saving=0.001),
            ((76, 36), (77, 36)),
        )

    def test_token_weights__encoder_and_predictor_work_per_token(self):
        encoder = ViTEncoder(image_size=32, patch_size=4, hidden_dim=32, depth=3, num_heads=2)
        predictor = JEPAPredictor(encoder_dim=32, hidden_dim=16, depth=2, num_heads=2, grid_size=(8, 8))
        context, target = token_weights(encoder, predictor, num_targets=4)
        self.assertEqual(target, 4 * 16**2 * 2)
        self.assertEqual(context, 32**2 * 3 + 4 * 16**2 * 2)


class FirstFittingBucketTest(TestCase):
    def test_cheapest_bucket_that_holds_both_lengths(self):
        buckets = ((50, 36), (74, 30), (77, 36))
        self.assertEqual(first_fitting_bucket(buckets, 50, 36), (50, 36))
        self.assertEqual(first_fitting_bucket(buckets, 51, 30), (74, 30))
        self.assertEqual(first_fitting_bucket(buckets, 60, 31), (77, 36))
        self.assertEqual(first_fitting_bucket(buckets, 77, 36), (77, 36))
