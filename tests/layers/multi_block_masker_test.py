import math
import os

import keras
import numpy as np
import pytest

from keras_flexpredict.layers.multi_block_masker import MultiBlockMasker
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy

KEYS = ("context_indices", "context_mask", "target_indices", "target_mask")


def reference_block_sizes(scale, aspect_ratio, grid, max_extent, num=100_000):
    """Every (h, w) the I-JEPA `_sample_block_size` formula gives on a fine grid
    of u, written out independently of the layer (plain Python math)."""
    height, width = grid
    sizes = set()
    for i in range(num):
        u = (i + 0.5) / num
        max_keep = int(height * width * (scale[0] + u * (scale[1] - scale[0])))
        ar = aspect_ratio[0] + u * (aspect_ratio[1] - aspect_ratio[0])
        h = min(int(round(math.sqrt(max_keep * ar))), max_extent[0])
        w = min(int(round(math.sqrt(max_keep / ar))), max_extent[1])
        sizes.add((h, w))
    return sizes


def dense(indices, mask, n):
    """(..., K) indices + mask -> (..., n) bool membership."""
    out = np.zeros(indices.shape[:-1] + (n + 1,), dtype=bool)
    np.put_along_axis(out, np.where(mask, indices, n), True, axis=-1)
    return out[..., :n]


def bounding_boxes(indices, mask, width):
    rows, cols = indices // width, indices % width
    top = np.where(mask, rows, 10**6).min(-1)
    left = np.where(mask, cols, 10**6).min(-1)
    h = np.where(mask, rows, -1).max(-1) - top + 1
    w = np.where(mask, cols, -1).max(-1) - left + 1
    return top, left, h, w


class MultiBlockMaskerTest(TestCase):
    def assertMasksEqual(self, a, b):
        a, b = to_numpy(a), to_numpy(b)
        self.assertEqual(sorted(a), sorted(b))
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    def check_layout(self, masks, masker, leading):
        """Shapes, dtypes, index range, ascending real indices then padding 0."""
        height, width = masker.grid_size
        m, kc, kt = masker.num_targets, masker.num_context_tokens, masker.num_target_tokens
        expected = {
            "context_indices": (leading + (kc,), np.int32),
            "context_mask": (leading + (kc,), np.bool_),
            "target_indices": (leading + (m, kt), np.int32),
            "target_mask": (leading + (m, kt), np.bool_),
        }
        for key, (shape, dtype) in expected.items():
            self.assertEqual(masks[key].shape, shape, key)
            self.assertEqual(masks[key].dtype, dtype, key)
        for name in ("context", "target"):
            idx, valid = masks[f"{name}_indices"], masks[f"{name}_mask"]
            self.assertTrue(((idx >= 0) & (idx < height * width)).all(), name)
            self.assertTrue((idx[~valid] == 0).all(), f"{name}: padding slots hold index 0")
            self.assertTrue((valid[..., 1:] <= valid[..., :-1]).all(), f"{name}: padding at the end")
            both = valid[..., 1:] & valid[..., :-1]
            self.assertTrue((np.diff(idx, axis=-1)[both] > 0).all(), f"{name}: sorted, unique")
            self.assertTrue((valid.sum(-1) >= masker.min_keep).all(), f"{name}: min_keep")

    def check_blocks(self, masks, masker):
        """Masks of shape (G, B, ...): the I-JEPA multi-block contract."""
        height, width = masker.grid_size
        n = height * width
        ti, tm = masks["target_indices"], masks["target_mask"]
        top, left, h, w = bounding_boxes(ti, tm, width)
        # Each target block is a full axis-aligned rectangle ...
        self.assertTrue((tm.sum(-1) == h * w).all())
        # ... of one size per batch, shared by all images and blocks ...
        self.assertTrue((h == h[:, :1, :1]).all() and (w == w[:, :1, :1]).all())
        # ... that the reference size formula can produce.
        extent = (height - 1, width - 1) if masker.reference_clip else (height, width)
        allowed = reference_block_sizes(
            masker.target_scale, masker.target_aspect_ratio, masker.grid_size, extent
        )
        seen = set(zip(h[:, 0, 0].tolist(), w[:, 0, 0].tolist()))
        self.assertLessEqual(seen, allowed)
        # Scale and aspect within the configured ranges, up to the formula's rounding.
        lo, hi = masker.target_scale
        alo, ahi = masker.target_aspect_ratio
        self.assertTrue(((h - 0.5) * (w - 0.5) <= n * hi).all())
        self.assertTrue(((h + 0.5) * (w + 0.5) >= math.floor(n * lo)).all())
        self.assertTrue(((h - 0.5) / (w + 0.5) <= ahi).all() and ((h + 0.5) / (w - 0.5) >= alo).all())
        # Every valid start row/column is used: 0..H-h, the last one included.
        for size in np.unique(h):
            self.assertEqual(set(top[h == size].tolist()), set(range(height - size + 1)), f"h={size}")
        for size in np.unique(w):
            self.assertEqual(set(left[w == size].tolist()), set(range(width - size + 1)), f"w={size}")
        # No target token in the context.
        context = dense(masks["context_indices"], masks["context_mask"], n)
        targets = dense(ti, tm, n).any(axis=2)
        self.assertFalse((context & targets).any())
        # Every grid row and column is reachable by the context.
        rows = context.reshape(context.shape[:2] + (height, width))
        self.assertTrue(rows.any(axis=(0, 1, 3)).all() and rows.any(axis=(0, 1, 2)).all())
        return seen

    def sample(self, masker, num_batches, batch_size):
        masks = to_numpy(masker.sample_batches(num_batches, batch_size))
        self.check_layout(masks, masker, (num_batches, batch_size))
        return masks

    def test_sample_batches__paper_config_over_1000_batches(self):
        # 1,000 independent per-batch size draws of 4 images at 224/16.
        masker = MultiBlockMasker(seed=1)
        self.assertEqual((masker.num_context_tokens, masker.num_target_tokens), (91, 40))
        masks = self.sample(masker, 1000, 4)
        seen = self.check_blocks(masks, masker)
        # At 224/16 a target block holds 30-40 tokens, as in the reference; all sizes occur.
        self.assertEqual({h * w for h, w in seen}, {30, 35, 36, 40})
        self.assertEqual(seen, reference_block_sizes((0.15, 0.2), (0.75, 1.5), (14, 14), (14, 14)))
        # More real context tokens on average than the reference keeps at batch 64 (54).
        self.assertGreaterEqual(masks["context_mask"].sum(-1).mean(), 54)
        self.assertLess(1 - masks["context_mask"].mean(), 0.2)
        self.assertLess(1 - masks["target_mask"].mean(), 0.2)

    def test_sample_batches__small_grid_with_fallback_and_reference_clip(self):
        # Small context blocks and one candidate: the fallback (all non-target
        # tokens) is taken often; min_keep and disjointness must still hold.
        masker = MultiBlockMasker(
            grid_size=(8, 8), context_scale=(0.3, 0.5), min_keep=6,
            num_context_candidates=1, reference_clip=True, seed=2,
        )
        masks = self.sample(masker, 1000, 4)
        self.check_blocks(masks, masker)
        _, _, ch, cw = bounding_boxes(masks["context_indices"], masks["context_mask"], 8)
        fallback = (ch > 6) | (cw > 6)  # wider than any context block (at most 6x6 here)
        self.assertTrue(fallback.any() and not fallback.all())

    def test_call__context_block_spans_the_grid_unless_reference_clip(self):
        # Context scale 1: the block is the whole 8x8 grid, or 7x7 (at row and
        # column 0 or 1; the reference only ever starts it at 0) with reference_clip.
        config = dict(grid_size=(8, 8), num_targets=1, context_scale=(1.0, 1.0), min_keep=6)
        full = self.sample(MultiBlockMasker(**config, seed=4), 50, 4)
        top, left, h, w = bounding_boxes(full["context_indices"], full["context_mask"], 8)
        self.assertTrue((h == 8).all() and (w == 8).all())
        clipped = self.sample(MultiBlockMasker(**config, reference_clip=True, seed=4), 50, 4)
        top, left, h, w = bounding_boxes(clipped["context_indices"], clipped["context_mask"], 8)
        self.assertTrue((h <= 7).all() and (w <= 7).all())
        self.assertEqual((set(top.ravel().tolist()), set(left.ravel().tolist())), ({0, 1}, {0, 1}))

    def test_call__budget_cut_keeps_a_uniform_subset(self):
        # Full-grid context, 16 slots: every context is cut. The kept tokens must
        # be spread like the free tokens, not the first 16 in raster order.
        masker = MultiBlockMasker(
            grid_size=(8, 8), num_targets=1, context_scale=(1.0, 1.0), min_keep=6,
            num_context_tokens=16, seed=3,
        )
        masks = self.sample(masker, 250, 4)
        self.assertTrue(masks["context_mask"].all())
        kept_rows = (masks["context_indices"] // 8).mean()
        free = ~dense(masks["target_indices"], masks["target_mask"], 64).any(axis=2)
        free_rows = (free * (np.arange(64) // 8)).sum() / free.sum()
        self.assertAlmostEqual(kept_rows, free_rows, delta=0.2)
        context = dense(masks["context_indices"], masks["context_mask"], 64)
        self.assertFalse((context & ~free).any())

    def test_call__same_seed_same_masks_and_matches_sample_batches(self):
        a, b, c = MultiBlockMasker(seed=7), MultiBlockMasker(seed=7), MultiBlockMasker(seed=8)
        images = np.zeros((4, 32, 32, 3), "float32")
        first = to_numpy(a(images))
        self.check_layout(first, a, (4,))
        self.assertMasksEqual(first, {k: v[0] for k, v in to_numpy(b.sample_batches(1, 4)).items()})
        self.assertMasksEqual(to_numpy(a(4)), to_numpy(b(4)))
        other = to_numpy(c(4))
        self.assertFalse(np.array_equal(first["context_indices"], other["context_indices"]))
        self.assertFalse(np.array_equal(first["context_indices"], to_numpy(a(4))["context_indices"]))

    def test_longest_mask_samples__as_the_layer_draws_and_seed_untouched(self):
        for reference in (False, True):
            masker = MultiBlockMasker(
                grid_size=(8, 8), min_keep=4, seed=0, reference=reference, reference_group_size=4
            )
            state = to_numpy(masker.seed_generator.state)
            context, target = masker.longest_mask_samples(4)
            self.assertAllEqual(masker.seed_generator.state, state)
            self.assertEqual((len(context), len(target)), (8192 // 4, 8192 // 4))
            again = masker.longest_mask_samples(4)
            self.assertAllEqual(again[0], context)
            # The simulation's distribution is the layer's: its batches' longest masks.
            drawn = to_numpy(masker.sample_batches(1000, 4))
            drawn_context = drawn["context_mask"].sum(-1).max(-1)
            drawn_target = drawn["target_mask"].sum(-1).max((-1, -2))
            self.assertLessEqual(context.max(), masker.num_context_tokens)
            self.assertLessEqual(target.max(), masker.num_target_tokens)
            self.assertAlmostEqual(context.mean(), drawn_context.mean(), delta=0.3, msg=f"reference={reference}")
            self.assertAlmostEqual(target.mean(), drawn_target.mean(), delta=0.3, msg=f"reference={reference}")
        with self.assertRaisesRegex(ValueError, "batch_size"):
            masker.longest_mask_samples(0)

    def test_init__unsatisfiable_config_raises_naming_the_value(self):
        cases = [
            (dict(target_scale=(0.0, 0.2)), r"target_scale=\(0.0, 0.2\)"),
            (dict(target_scale=(0.15, 1.5)), r"target_scale=\(0.15, 1.5\)"),
            (dict(context_scale=(0.9, 0.8)), r"context_scale=\(0.9, 0.8\)"),
            (dict(target_aspect_ratio=(0.0, 1.5)), r"target_aspect_ratio=\(0.0, 1.5\)"),
            (dict(context_aspect_ratio=(-1.0, 1.0)), r"context_aspect_ratio=\(-1.0, 1.0\)"),
            (dict(min_keep=31), r"min_keep=31"),  # the smallest target block holds 30
            (dict(num_targets=8, target_scale=(0.2, 0.3)), r"min_keep=10"),  # targets can cover the grid
            (dict(grid_size=(2, 2)), r"grid_size=\(2, 2\)"),  # blocks would be empty
            (dict(grid_size=(14,)), r"grid_size=\(14,\)"),
            (dict(num_targets=0), r"num_targets=0"),
            (dict(num_context_tokens=5), r"num_context_tokens=5"),
            (dict(num_target_tokens=500), r"num_target_tokens=500"),
        ]
        for kwargs, pattern in cases:
            with self.subTest(**kwargs), self.assertRaisesRegex(ValueError, pattern):
                MultiBlockMasker(**kwargs)
        masker = MultiBlockMasker(seed=0)
        with self.assertRaisesRegex(ValueError, r"inputs=0"):
            masker(0)
        with self.assertRaisesRegex(ValueError, r"inputs.shape=\(32, 32, 3\)"):
            masker(np.zeros((32, 32, 3), "float32"))

    def test_call__symbolic_and_mixed_precision_give_int32_and_bool(self):
        masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=0)
        kc, kt = masker.num_context_tokens, masker.num_target_tokens
        shapes = [(None, kc), (None, kc), (None, 4, kt), (None, 4, kt)]
        dtypes = ["int32", "bool", "int32", "bool"]
        self.run_symbolic_call_test(masker, [((None, 32, 32, 3), "float32")], shapes, dtypes)
        keras.config.set_dtype_policy("mixed_bfloat16")
        masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=0)
        self.run_symbolic_call_test(masker, [((None, 32, 32, 3), "bfloat16")], shapes, dtypes)
        self.check_layout(to_numpy(masker(np.zeros((2, 32, 32, 3)))), masker, (2,))

    def test_layer__shared_checks(self):
        # Build, shapes, no weights, config and `.keras` / `.weights.h5` round trips (the
        # seed state travels: equal masks), symbolic call, int/bool outputs under bfloat16.
        masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=5)
        kc, kt = masker.num_context_tokens, masker.num_target_tokens
        self.run_layer_test(
            MultiBlockMasker,
            dict(grid_size=(8, 8), min_keep=4, seed=5),
            np.zeros((2, 32, 32, 3), "float32"),
            expected_output_shape=[(2, kc), (2, kc), (2, 4, kt), (2, 4, kt)],
            expected_num_trainable_weights=0,
            run_keras_file_saving=False,  # the stream continues: checked below
            atol=0,
        )

    def test_config_round_trip_and_saving__same_seed_same_masks(self):
        masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=5)
        clone = self.run_config_round_trip_test(masker)
        self.assertEqual(clone.num_context_tokens, masker.num_context_tokens)
        from keras import saving as saving_lib  # accepts any layer, not only models

        masker(3)  # advance the stream: the saved seed state must carry on from here
        path = os.path.join(self.get_temp_dir(), "masker.keras")
        saving_lib.save_model(masker, path)
        loaded = saving_lib.load_model(path)
        self.assertIsInstance(loaded, MultiBlockMasker)
        self.assertEqual(loaded.get_config(), masker.get_config())
        self.assertMasksEqual(loaded(3), masker(3))
        self.assertMasksEqual(loaded(3), masker(3))

    def test_call__inside_compiled_predict_step(self):
        masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=0)
        inputs = keras.Input((16, 16, 3))
        model = keras.Model(inputs, masker(inputs))
        out = model.predict(np.zeros((6, 16, 16, 3), "float32"), batch_size=3, verbose=0)
        out = {k: np.asarray(v) for k, v in out.items()}
        self.check_layout(out, masker, (6,))
        # Two batches of 3 with independent draws.
        self.assertFalse(np.array_equal(out["context_indices"][:3], out["context_indices"][3:]))

    def test_call__jitted(self):
        masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=0)
        images = np.zeros((3, 16, 16, 3), "float32")
        if self.backend == "jax":
            import jax

            @jax.jit
            def step(state, x):
                with keras.StatelessScope(state_mapping=[(masker.seed_generator.state, state)]) as scope:
                    out = masker(x)
                return out, scope.get_current_value(masker.seed_generator.state)

            state = masker.seed_generator.state.value
            first, state_1 = step(state, images)
            again, _ = step(state, images)
            second, _ = step(state_1, images)
        elif self.backend == "tensorflow":
            import tensorflow as tf

            step = tf.function(masker, jit_compile=True)
            first, second = step(images), step(images)
            again = first
        else:
            self.skipTest("torch.compile of the masker takes minutes on CPU; eager and predict are tested.")
        first, again, second = to_numpy(first), to_numpy(again), to_numpy(second)
        self.check_layout(first, masker, (3,))
        self.assertMasksEqual(first, again)
        self.assertFalse(np.array_equal(first["context_indices"], second["context_indices"]))

    def test_call__in_tf_data_map_on_any_backend(self):
        tf = pytest.importorskip("tensorflow")
        images = np.zeros((8, 16, 16, 3), "float32")

        def batches(seed):
            masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=seed)
            ds = tf.data.Dataset.from_tensor_slices(images).batch(4).map(masker)
            return masker, [{k: v.numpy() for k, v in m.items()} for m in ds]

        masker, first = batches(11)
        _, again = batches(11)
        self.assertEqual(len(first), 2)
        for a, b in zip(first, again):
            self.check_layout(a, masker, (4,))
            self.assertMasksEqual(a, b)
            context = dense(a["context_indices"], a["context_mask"], 64)
            self.assertFalse((context & dense(a["target_indices"], a["target_mask"], 64).any(1)).any())
        self.assertFalse(np.array_equal(first[0]["context_indices"], first[1]["context_indices"]))

    def test_sample_batches__reference_matches_the_official_collator_statistics(self):
        # The official collator (a NumPy port in benchmarks/, kept flaws and all),
        # 224/16, batches of 64: mean context 53-55 tokens (54.5 measured on the
        # official code), packed top-left, no target on the last row or column.
        from benchmarks.reference_ijepa_masks import ReferenceMaskCollator

        collator = ReferenceMaskCollator(seed=3)
        official_rows = np.zeros(14)
        official_lengths = []
        for _ in range(150):
            enc, _, _ = collator.sample(64)
            official_lengths += [enc.shape[-1]] * 64
            official_rows += np.bincount((enc[0] // 14).ravel(), minlength=14)
        official_rows /= len(official_lengths)

        masker = MultiBlockMasker(reference=True, reference_group_size=64, seed=3)
        self.assertEqual(masker.num_target_tokens, 40)
        masks = self.sample(masker, 150, 64)
        ci, cm = masks["context_indices"], masks["context_mask"]
        lengths = cm.sum(-1)
        # Block sizes are drawn once per batch, so a batch mean varies by several
        # tokens: 150 batches here, 4,096 images in `expected_context_tokens`.
        self.assertAlmostEqual(lengths.mean(), np.mean(official_lengths), delta=2.0)
        self.assertAlmostEqual(masker.expected_context_tokens, 54.5, delta=2.0)
        # Truncation per group: every image of a batch keeps the same length.
        self.assertTrue((lengths == lengths[:, :1]).all())
        rows = np.array([((ci // 14 == r) & cm).sum(-1).mean() for r in range(14)])
        np.testing.assert_allclose(rows, official_rows, atol=0.6)
        self.assertGreater(rows[0], 9.5)
        self.assertEqual(rows[13], 0.0)
        # The padded share follows the truncated lengths, not the untruncated maximum.
        self.assertLess(1 - cm.mean(), 0.2)
        # Target blocks: whole rectangles that never start on the last valid row/column,
        # so never touch the last grid row or column.
        seen = self.check_reference_targets(masks, masker)
        self.assertEqual({h * w for h, w in seen}, {30, 35, 36, 40})

    def check_reference_targets(self, masks, masker):
        height, width = masker.grid_size
        ti, tm = masks["target_indices"], masks["target_mask"]
        top, left, h, w = bounding_boxes(ti, tm, width)
        self.assertTrue((tm.sum(-1) == h * w).all())
        self.assertTrue((h == h[:, :1, :1]).all() and (w == w[:, :1, :1]).all())
        for size in np.unique(h):
            self.assertEqual(set(top[h == size].tolist()), set(range(height - size)), f"h={size}")
        for size in np.unique(w):
            self.assertEqual(set(left[w == size].tolist()), set(range(width - size)), f"w={size}")
        return set(zip(h[:, 0, 0].tolist(), w[:, 0, 0].tolist()))

    def test_call__reference_groups_truncate_separately_and_relax_like_the_reference(self):
        # Groups of 4 in a batch of 8: each group's contexts share their own length
        # and are the first tokens in raster order of context block minus targets.
        masker = MultiBlockMasker(reference=True, reference_group_size=4, seed=5)
        masks = self.sample(masker, 40, 8)
        lengths = masks["context_mask"].sum(-1).reshape(40, 2, 4)
        self.assertTrue((lengths == lengths[..., :1]).all())
        self.assertFalse((lengths[:, 0, 0] == lengths[:, 1, 0]).all())
        n = 196
        context = dense(masks["context_indices"], masks["context_mask"], n)
        targets = dense(masks["target_indices"], masks["target_mask"], n).any(axis=2)
        self.assertFalse((context & targets).any())
        # Relaxation: a context block too small to avoid the targets overlaps them
        # instead of failing (the reference lets one more target overlap after each
        # round of failures).
        small = MultiBlockMasker(
            grid_size=(6, 6), num_targets=4, target_scale=(0.3, 0.3), target_aspect_ratio=(1.0, 1.0),
            context_scale=(0.5, 0.5), min_keep=8, reference=True, seed=1,
        )
        masks = self.sample(small, 200, 4)
        context = dense(masks["context_indices"], masks["context_mask"], 36)
        targets = dense(masks["target_indices"], masks["target_mask"], 36).any(axis=2)
        self.assertTrue((context & targets).any())
        self.assertTrue((masks["context_mask"].sum(-1) > 8).all())

    def test_init__reference_config_round_trip_and_errors(self):
        masker = MultiBlockMasker(grid_size=(8, 8), min_keep=4, reference=True, reference_group_size=2, seed=0)
        clone = self.run_config_round_trip_test(masker)
        self.assertEqual(
            (clone.reference, clone.reference_group_size, clone.num_context_tokens),
            (True, 2, masker.num_context_tokens),
        )
        with self.assertRaisesRegex(ValueError, r"reference_group_size=0"):
            MultiBlockMasker(reference=True, reference_group_size=0)
        with self.assertRaisesRegex(ValueError, r"min_keep=30"):
            MultiBlockMasker(reference=True, min_keep=30)  # smallest target block: 30 tokens
