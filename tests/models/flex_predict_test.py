import keras
import numpy as np
import pytest
from keras import ops

import keras_flexpredict as kfp
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from keras_flexpredict.testing.test_case import torch_onednn_linear_switch
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict


def weights_np(layer):
    return [to_numpy(w) for w in layer.weights]


class CountingFlexPredict(kfp.models.FlexPredict):
    """Counts how often `call(training=True)` is traced/run (Python executions)."""

    training_calls = 0

    def call(self, images, training=None):
        if training:
            CountingFlexPredict.training_calls += 1
        return super().call(images, training=training)


class FlexPredictTest(TestCase):
    def test_fit__loss_finite_and_falls_and_teacher_moves(self):
        model = tiny_flexpredict()
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=2e-3))
        images = structured_images(64)
        teacher_before = weights_np(model.target_encoder)
        losses = []

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                losses.append(float(logs["loss"]))

        # 32 steps of batch 8.
        model.fit(images, batch_size=8, epochs=4, verbose=0, shuffle=False, callbacks=[Record()])
        self.assertTrue(np.all(np.isfinite(losses)))
        # Keras logs a running mean per epoch: compare the first and last epoch means.
        first, last = np.mean(losses[:8]), np.mean(losses[-8:])
        self.assertLess(last, 0.9 * first, msg=f"loss did not fall: {losses}")
        moved = [np.abs(a - b).max() for a, b in zip(teacher_before, weights_np(model.target_encoder))]
        self.assertGreater(max(moved), 1e-4)

    def test_fit__one_step_teacher_is_ema_of_new_student(self):
        model = tiny_flexpredict()
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2))
        old_teacher = weights_np(model.target_encoder)
        m = 0.5  # far from 1 so the check is sharp
        model.fit(
            structured_images(8), batch_size=8, epochs=1, verbose=0,
            callbacks=[kfp.callbacks.EMATargetCallback(start_momentum=m, end_momentum=1.0, total_steps=10)],
        )
        new_student = weights_np(model.encoder)
        new_teacher = weights_np(model.target_encoder)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(new_student, old_teacher)), 1e-3)
        for old, student, teacher, var in zip(old_teacher, new_student, new_teacher, model.target_encoder.weights):
            np.testing.assert_allclose(teacher, m * old + (1 - m) * student, rtol=1e-5, atol=1e-6, err_msg=var.path)
        self.assertEqual(int(to_numpy(model.train_steps)), 1)
        self.assertEqual(int(to_numpy(model.ema_updates)), 1)

    def test_fit__gradient_accumulation__ema_and_schedules_follow_real_updates(self):
        # 8 batches accumulated in pairs: 4 real updates. The teacher must be one EMA
        # per real update (momentum of that update) of the student after it, computed
        # here by hand; the schedules and every counter must advance once per update.
        k, batches, m0 = 2, 8, 0.5
        model = tiny_flexpredict()
        optimizer = kfp.optimizers.make_jepa_optimizer(
            total_steps=batches // k, warmup_steps=1, start_lr=1e-2, peak_lr=2e-2, final_lr=1e-3,
            start_weight_decay=0.1, end_weight_decay=0.3, gradient_accumulation_steps=k,
        )
        model.compile(optimizer=optimizer)
        records = []

        class Record(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self._sync()
                records.append({"lr": float(to_numpy(optimizer.learning_rate)),
                                "wd": float(to_numpy(optimizer.current_weight_decay()))})

            def on_train_batch_end(self, batch, logs=None):
                self._sync()
                records[-1].update(
                    student=weights_np(self.model.encoder),
                    counters=[int(to_numpy(v)) for v in (
                        optimizer.iterations, self.model.train_steps, self.model.ema_updates)],
                )

            def _sync(self):
                if hasattr(self.model, "jax_state_sync"):
                    self.model.jax_state_sync()

        teacher = weights_np(model.target_encoder)
        student0 = weights_np(model.encoder)
        model.fit(
            structured_images(8 * batches), batch_size=8, epochs=1, verbose=0, shuffle=False,
            callbacks=[Record(), kfp.callbacks.EMATargetCallback(start_momentum=m0, end_momentum=1.0)],
        )
        # The EMA ramp is inferred in real updates: 8 batches // 2.
        self.assertAllClose(model.ema_total_steps, batches // k)
        for b, r in enumerate(records):
            real = (b + 1) // k  # real updates done after batch b
            self.assertEqual(r["counters"], [real, real, b // k], msg=f"batch {b}")
            # Schedules of the update under way: update number b // k.
            self.assertAllClose(r["lr"], optimizer._learning_rate(b // k), rtol=1e-6, msg=f"batch {b}")
            self.assertAllClose(r["wd"], optimizer.weight_decay(b // k), rtol=1e-6, msg=f"batch {b}")
        # The student moves on the last batch of each update only.
        for a, b in zip(student0, records[0]["student"]):
            np.testing.assert_array_equal(a, b)
        self.assertGreater(max(np.abs(a - b).max() for a, b in zip(student0, records[1]["student"])), 1e-4)
        # The last update reached final_lr: the schedules ran over real updates.
        self.assertAllClose(records[-1]["lr"], 1e-3, rtol=1e-6)
        for j in range(batches // k):
            m = m0 + (1.0 - m0) * j / (batches // k)
            student = records[k * j + k - 1]["student"]
            teacher = [m * t + (1 - m) * s for t, s in zip(teacher, student)]
        self.assertEqual(int(to_numpy(model.ema_updates)), batches // k)
        for want, have, var in zip(teacher, weights_np(model.target_encoder), model.target_encoder.weights):
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6, err_msg=var.path)

    def test_call_training_outside_fit__advances_no_schedule(self):
        # As after 5 steps of `fit` (which applies the last owed EMA update at its end).
        model = tiny_flexpredict()
        model.set_ema_schedule(0.5, 1.0, 10)
        model.train_steps.assign(5)
        model.ema_updates.assign(5)
        teacher = weights_np(model.target_encoder)
        momentum = float(to_numpy(model.momentum_at(model.train_steps.value)))
        model(structured_images(4), training=True)
        self.assertEqual([int(to_numpy(v)) for v in (model.train_steps, model.ema_updates)], [5, 5])
        self.assertEqual(float(to_numpy(model.momentum_at(model.train_steps.value))), momentum)
        for a, b in zip(teacher, weights_np(model.target_encoder)):
            np.testing.assert_array_equal(a, b)
        # The train step counts in `compute_loss(training=True)`, once per call.
        y_pred = model(structured_images(4), training=True)
        model.compute_loss(y_pred=y_pred, training=True)
        self.assertEqual(int(to_numpy(model.train_steps)), 6)
        model.compute_loss(y_pred=y_pred, training=False)
        self.assertEqual(int(to_numpy(model.train_steps)), 6)

    def test_remat_scope__blocks_rematerialised_and_training_unchanged(self):
        # `keras.RematScope` over the transformer blocks (by name; `full` on TensorFlow
        # fails inside Keras's own Dense, keras-team/keras#21207): the same losses and
        # weights as without it, in `fit`'s compiled step on every backend.
        images = structured_images(16)
        deep = dict(encoder=dict(depth=2), predictor=dict(depth=2))
        plain = tiny_flexpredict(**deep)
        with keras.RematScope(mode="list_of_layers", layer_names=["block_0", "block_1"]):
            remat = tiny_flexpredict(**deep)
        for model in (plain, remat):
            model.build(images.shape)
        remat.set_weights(plain.get_weights())
        histories, weights = [], []
        for model in (plain, remat):
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2))
            history = model.fit(images, batch_size=8, epochs=2, verbose=0, shuffle=False)
            histories.append(history.history["loss"])
            weights.append(weights_np(model))
        self.assertAllClose(histories[1], histories[0], atol=1e-5, rtol=1e-4)
        for got, want, variable in zip(weights[1], weights[0], remat.weights):
            self.assertAllClose(got, want, atol=1e-5, rtol=1e-4, msg=variable.path)
        blocks = [b for b in remat._flatten_layers() if isinstance(b, kfp.layers.TransformerBlock)]
        self.assertLen(blocks, 6)
        x = ops.zeros((2, 3, blocks[0].hidden_dim))
        self.assertTrue(all(b.rematerializes(x) for b in blocks if b.hidden_dim == blocks[0].hidden_dim))

    def test_remat_scope_full__composites_not_rematerialised_whole(self):
        # The models, the masker and the StoP embedding are never wrapped whole (their
        # whole call would run twice, the noise be drawn anew); their layers are.
        with keras.RematScope(mode="full"):
            model = tiny_flexpredict()
        stop = [l for l in model._flatten_layers() if isinstance(l, kfp.layers.StochasticPositionalEmbedding)]
        self.assertLen(stop, 1)
        for layer in (model, model.encoder, model.predictor, model.masker, stop[0]):
            call = layer.call
            self.assertIs(layer.rematerialized_call(call, None), call, msg=layer.name)
        if keras.backend.backend() != "tensorflow":  # keras-team/keras#21207 on TF
            model.compile()
            history = model.fit(structured_images(8), batch_size=8, epochs=1, verbose=0)
            self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_fit__no_gradient_reaches_teacher(self):
        model = tiny_flexpredict()
        self.assertEqual(model.target_encoder.trainable_weights, [])
        teacher_ids = {id(v) for v in model.target_encoder.weights}
        self.assertFalse(teacher_ids & {id(v) for v in model.trainable_weights})
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0))
        before = weights_np(model.target_encoder)
        # Momentum 1: the teacher may change only through gradients, which must not exist.
        model.fit(
            structured_images(16), batch_size=8, epochs=1, verbose=0,
            callbacks=[kfp.callbacks.EMATargetCallback(start_momentum=1.0, end_momentum=1.0)],
        )
        for a, b in zip(before, weights_np(model.target_encoder)):
            np.testing.assert_array_equal(a, b)

    def test_fit__adds_ema_callback_and_momentum_follows_schedule(self):
        model = tiny_flexpredict()
        model.compile(optimizer="adamw")
        model.fit(structured_images(16), batch_size=8, epochs=2, verbose=0)
        self.assertAllClose(model.ema_total_steps, 4.0)
        self.assertAllClose(model.momentum_at(0), 0.996)
        self.assertAllClose(model.momentum_at(2), 0.996 + 0.004 * 0.5, atol=1e-7)
        self.assertAllClose(model.momentum_at(10), 1.0)

    def test_predictor__noise_only_in_training_and_sigma_zero_is_mean(self):
        images = structured_images(4)
        for sigma, expect_noise in ((0.25, True), (0.0, False)):
            model = tiny_flexpredict(sigma=sigma)
            masks = model.masker(images)
            context = model.encoder(images, context_indices=masks["context_indices"], context_mask=masks["context_mask"])
            train_a = to_numpy(model.predictor(context, masks, training=True))
            train_b = to_numpy(model.predictor(context, masks, training=True))
            infer_a = to_numpy(model.predictor(context, masks, training=False))
            infer_b = to_numpy(model.predictor(context, masks, training=False))
            np.testing.assert_array_equal(infer_a, infer_b)
            if expect_noise:
                self.assertGreater(np.abs(train_a - train_b).max(), 1e-4)
                self.assertGreater(np.abs(train_a - infer_a).max(), 1e-4)
            else:
                np.testing.assert_allclose(train_a, infer_a, atol=1e-6)

    def test_loss__padding_never_counts(self):
        model = tiny_flexpredict()
        preds = np.zeros((1, 2, 3, 4), "float32")
        targets = np.ones((1, 2, 3, 4), "float32")
        targets[0, 1, 2] = 100.0  # a padded slot with a huge error
        mask = np.array([[[True, True, True], [True, True, False]]])
        loss = model.compute_loss(y_pred={"predictions": preds, "targets": targets, "target_mask": mask})
        self.assertAllClose(loss, 0.5)  # smooth-L1 of |1| everywhere that counts
        mse = tiny_flexpredict(loss="mse")
        loss = mse.compute_loss(y_pred={"predictions": preds, "targets": 2 * targets, "target_mask": mask})
        self.assertAllClose(loss, 4.0)

    def test_fit__accepts_image_label_pairs(self):
        model = tiny_flexpredict()
        model.compile(optimizer="adamw")
        history = model.fit(structured_images(8), np.arange(8), batch_size=8, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_call__bad_images_raise_clear_errors(self):
        model = tiny_flexpredict()
        with self.assertRaisesRegex(ValueError, r"shape=\(2, 16, 16, 3\)"):
            model(np.zeros((2, 16, 16, 3), "float32"))
        with self.assertRaisesRegex(ValueError, "shape=\\(32, 32, 3\\)"):
            model(np.zeros((32, 32, 3), "float32"))
        with self.assertRaisesRegex(ValueError, "dtype=uint8"):
            model(np.zeros((2, 32, 32, 3), "uint8"))
        with self.assertRaisesRegex(ValueError, "loss='l3'"):
            tiny_flexpredict(loss="l3")
        with self.assertRaisesRegex(ValueError, "Unknown preset"):
            kfp.models.FlexPredict.from_preset("stop_vit_base_patch16_225")

    def test_fit__compiles_train_step_once(self):
        if self.backend not in ("jax", "tensorflow"):
            self.skipTest("Only JAX and TF compile the train step.")
        images = structured_images(8 * 50)
        counts = []
        for steps in (1, 50):
            CountingFlexPredict.training_calls = 0
            base = tiny_flexpredict()
            model = CountingFlexPredict.from_config(base.get_config())
            model.compile(optimizer="adamw")
            model.fit(images[: 8 * steps], batch_size=8, epochs=1, verbose=0)
            counts.append(CountingFlexPredict.training_calls)
        if self.backend == "jax":
            # One trace per length bucket the 50 batches needed (`length_buckets`), at
            # most the model's buckets, however many distinct masks the steps drew.
            used = model.train_function.length_bucketed_step.steps
            self.assertEqual(counts[1], len(used), msg=f"traces {counts[1]}, buckets run {sorted(used)}")
            self.assertLessEqual(len(used), len(model.train_length_buckets(8)))
        else:
            # 50 steps with fresh masks every step trace the step exactly as often as 1 step.
            self.assertEqual(counts[1], counts[0], msg=f"traces for 1 and 50 steps: {counts}")
        # One trace: on TF the optimiser is built before `fit` traces the step, else
        # tf.function sees its variables created and traces the whole step again.
        self.assertEqual(counts[0], 1, msg=f"traces for 1 step: {counts[0]}")

    def test_config_and_saving_round_trip(self):
        model = tiny_flexpredict()
        config = model.get_config()
        clone = kfp.models.FlexPredict.from_config(config)
        self.assertEqual(clone.get_config(), config)
        images = structured_images(2)
        path = self.get_temp_dir() + "/model.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        self.assertIsInstance(loaded, kfp.models.FlexPredict)
        self.assertAllClose(loaded.target_encoder(images), model.target_encoder(images), atol=1e-6)
        # Same masker and noise seed state: identical outputs in training mode too.
        out_a = model(images, training=False)
        out_b = loaded(images, training=False)
        self.assertAllEqual(out_a["target_mask"], out_b["target_mask"])
        self.assertAllClose(out_a["predictions"], out_b["predictions"], atol=1e-5)

    def test_length_buckets__in_the_config_bounded_and_checked(self):
        model = tiny_flexpredict(length_buckets=2)
        config = model.get_config()
        self.assertEqual(config["length_buckets"], 2)
        self.assertEqual(kfp.models.FlexPredict.from_config(config).length_buckets, 2)
        buckets = model.train_length_buckets(8)
        self.assertLessEqual(len(buckets), 2)
        self.assertEqual(buckets[-1], (model.masker.num_context_tokens, model.masker.num_target_tokens))
        self.assertEqual(tiny_flexpredict(length_buckets=1).train_length_buckets(8), (buckets[-1],))
        for bad in (0, 1.5):
            with self.assertRaisesRegex(ValueError, "length_buckets"):
                tiny_flexpredict(length_buckets=bad)

    def test_export_target_encoder__reloads_with_identical_features(self):
        model = tiny_flexpredict()
        model.compile(optimizer="adamw")
        model.fit(structured_images(8), batch_size=8, epochs=1, verbose=0)
        path = self.get_temp_dir() + "/encoder.keras"
        model.export_target_encoder(path)
        encoder = keras.saving.load_model(path)
        self.assertIsInstance(encoder, kfp.models.ViTEncoder)
        images = structured_images(3, seed=5)
        self.assertAllClose(encoder(images), model.target_encoder(images), atol=0, rtol=0)
        with self.assertRaisesRegex(ValueError, "encoder.h5"):
            model.export_target_encoder(self.get_temp_dir() + "/encoder.h5")

    def test_presets__paper_runs(self):
        presets = kfp.models.FlexPredict.presets()
        for size in ("base_patch16", "large_patch16", "huge_patch14"):
            for method in ("stop", "ijepa"):
                self.assertIn(f"{method}_vit_{size}_224_imagenet", presets)
        from keras_flexpredict.models.flex_predict_presets import FLEXPREDICT_PRESETS as P

        self.assertEqual(P["stop_vit_base_patch16_224_imagenet"]["predictor"]["depth"], 6)
        self.assertEqual(P["stop_vit_large_patch16_224_imagenet"]["predictor"]["depth"], 12)
        self.assertEqual(P["stop_vit_huge_patch14_224_imagenet"]["predictor"]["sigma"], 0.2)
        self.assertEqual(P["ijepa_vit_base_patch16_224_imagenet"]["predictor"]["positional_noise"], "none")

    def test_mixed_bfloat16__trains(self):
        self.skip_if_no_mixed_precision()
        keras.config.set_dtype_policy("mixed_bfloat16")
        model = tiny_flexpredict()
        model.compile(optimizer="adamw")
        history = model.fit(structured_images(8), batch_size=8, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
        self.assertEqual(model.encoder.compute_dtype, "bfloat16")


class PaddingSlotsTest(TestCase):
    """Padding slots never change a real token's result, so eager torch may drop the
    ones no image uses (`trim_padding`) and the stacks zero padding only once."""

    def test_call__padding_slots_never_change_real_outputs(self):
        model = tiny_flexpredict(masker=dict(reference=False, num_context_tokens=45))
        images = structured_images(4)
        masks = to_numpy(model.masker(images))
        kc = int(masks["context_mask"].sum(-1).max())
        kt = int(masks["target_mask"].sum(-1).max())
        self.assertLess(kc, masks["context_mask"].shape[-1])  # there is padding to drop
        cut = {
            "context_indices": masks["context_indices"][:, :kc],
            "context_mask": masks["context_mask"][:, :kc],
            "target_indices": masks["target_indices"][:, :, :kt],
            "target_mask": masks["target_mask"][:, :, :kt],
        }
        outputs = []
        for m in (masks, cut):
            context = model.encoder(images, context_indices=m["context_indices"], context_mask=m["context_mask"])
            predictions = model.predictor(context, m, training=False)
            outputs.append((to_numpy(context), to_numpy(predictions)))
        (full_ctx, full_pred), (cut_ctx, cut_pred) = outputs
        np.testing.assert_allclose(full_ctx[:, :kc], cut_ctx, atol=1e-5)
        np.testing.assert_allclose(full_pred[:, :, :kt], cut_pred, atol=1e-5)
        # Padding slots come out as zeros, although no block inside zeroes them.
        self.assertEqual(np.abs(full_ctx[~masks["context_mask"]]).sum(), 0.0)
        self.assertEqual(np.abs(full_pred[~masks["target_mask"]]).sum(), 0.0)

    def test_trim_padding__cuts_to_the_longest_mask_on_eager_torch_and_tf_graphs(self):
        from keras_flexpredict.utils.padding import graph_length_multiple
        from keras_flexpredict.utils.padding import trim_padding

        masker = kfp.layers.MultiBlockMasker(grid_size=(14, 14), min_keep=4, seed=0)
        masks = masker(6)
        with torch_onednn_linear_switch("0"):  # (AMD CPUs turn it on by default)
            trimmed = to_numpy(trim_padding(masks))
        masks = to_numpy(masks)
        if self.backend == "jax":  # compiled: static shapes
            for key in masks:
                np.testing.assert_array_equal(trimmed[key], masks[key])
            return
        kc = masks["context_mask"].sum(-1).max()
        kt = masks["target_mask"].sum(-1).max()
        if self.backend == "tensorflow":  # rounded up, at most the static slots
            slots_c, slots_t = masks["context_mask"].shape[-1], masks["target_mask"].shape[-1]
            step_c, step_t = graph_length_multiple(slots_c), graph_length_multiple(slots_t)
            self.assertLess(1, step_c)  # the rounding is exercised
            kc = min(-(-kc // step_c) * step_c, slots_c)
            kt = min(-(-kt // step_t) * step_t, slots_t)
        self.assertLess(kt, masks["target_mask"].shape[-1])  # something was cut
        self.assertEqual(trimmed["context_indices"].shape, (6, kc))
        self.assertEqual(trimmed["target_mask"].shape, (6, 4, kt))
        self.assertEqual(trimmed["context_mask"].sum(), masks["context_mask"].sum())
        self.assertEqual(trimmed["target_mask"].sum(), masks["target_mask"].sum())
        np.testing.assert_array_equal(trimmed["context_indices"], masks["context_indices"][:, :kc])

    def test_trim_padding__static_slots_where_torch_runs_onednn_matmuls(self):
        from keras_flexpredict.utils.padding import trim_padding

        if self.backend != "torch":
            self.skipTest("eager torch only")
        masks = kfp.layers.MultiBlockMasker(grid_size=(14, 14), min_keep=4, seed=0)(6)
        with torch_onednn_linear_switch("1"):
            from keras_flexpredict.utils import _torch_onednn_linear

            if not _torch_onednn_linear.runs_for("cpu", "float32"):
                self.skipTest("this torch has no oneDNN linear op")
            static = to_numpy(trim_padding(masks))
            # A bfloat16 model keeps F.linear, so its slots are cut.
            cut = to_numpy(trim_padding(masks, compute_dtype="bfloat16"))
        for key, value in to_numpy(masks).items():
            np.testing.assert_array_equal(static[key], value)
        self.assertLess(cut["target_mask"].shape[-1], static["target_mask"].shape[-1])

    def test_trim_padding__to_a_length_bucket_where_torch_runs_onednn_matmuls(self):
        from keras_flexpredict.utils.padding import trim_padding

        if self.backend != "torch":
            self.skipTest("eager torch only")
        masks = kfp.layers.MultiBlockMasker(grid_size=(14, 14), min_keep=4, seed=0)(6)
        numpy_masks = to_numpy(masks)
        kc = int(numpy_masks["context_mask"].sum(-1).max())
        kt = int(numpy_masks["target_mask"].sum(-1).max())
        slots = (numpy_masks["context_mask"].shape[-1], numpy_masks["target_mask"].shape[-1])
        buckets = ((kc - 1, kt), (kc, kt + 1), (kc + 1, kt + 1), slots)  # the 2nd is the first that fits
        with torch_onednn_linear_switch("1"):
            from keras_flexpredict.utils import _torch_onednn_linear

            if not _torch_onednn_linear.runs_for("cpu", "float32"):
                self.skipTest("this torch has no oneDNN linear op")
            cut = to_numpy(trim_padding(masks, length_buckets=buckets))
            one = to_numpy(trim_padding(masks, length_buckets=(slots,)))
        self.assertEqual(cut["context_mask"].shape, (6, kc))
        self.assertEqual(cut["target_mask"].shape, (6, 4, kt + 1))
        self.assertEqual(cut["target_mask"].sum(), numpy_masks["target_mask"].sum())
        np.testing.assert_array_equal(cut["target_indices"], numpy_masks["target_indices"][..., : kt + 1])
        self.assertEqual(one["target_mask"].shape, numpy_masks["target_mask"].shape)

    def test_call__eager_torch_with_onednn_matmuls_runs_at_a_length_bucket_when_asked(self):
        if self.backend != "torch":
            self.skipTest("eager torch only")
        from keras_flexpredict.utils.length_buckets import first_fitting_bucket

        model = tiny_flexpredict()
        # The model's masker with a seed whose masks fit a bucket with fewer target slots.
        fixed = to_numpy(kfp.layers.MultiBlockMasker(**dict(model.masker.get_config(), seed=3))(8))

        class FixedMasks(kfp.models.FlexPredict):
            def draw_masks(self, images):
                return {k: ops.convert_to_tensor(v) for k, v in fixed.items()}

        config = model.get_config()
        static = FixedMasks.from_config(config)  # length_buckets=None: the static slots
        bucketed = FixedMasks.from_config(dict(config, length_buckets=4))
        buckets = bucketed.train_length_buckets(8)
        bucket = first_fitting_bucket(
            buckets, fixed["context_mask"].sum(-1).max(), fixed["target_mask"].sum(-1).max()
        )
        self.assertLess(bucket[1], buckets[-1][1])  # the test cuts target slots
        with torch_onednn_linear_switch("1"):
            from keras_flexpredict.utils import _torch_onednn_linear

            if not _torch_onednn_linear.runs_for("cpu", "float32"):
                self.skipTest("this torch has no oneDNN linear op")
            static_out = to_numpy(static(structured_images(8), training=False))
            out = to_numpy(bucketed(structured_images(8), training=False))
        self.assertEqual(static_out["target_mask"].shape[-1], static.masker.num_target_tokens)
        self.assertEqual(out["target_mask"].shape[-1], bucket[1])
        np.testing.assert_array_equal(out["target_mask"], fixed["target_mask"][..., : bucket[1]])

    def test_trim_padding__in_a_tf_graph_only_outside_xla(self):
        if self.backend != "tensorflow":
            self.skipTest("TensorFlow graphs only")
        import tensorflow as tf

        from keras_flexpredict.utils.padding import trim_padding

        masks = kfp.layers.MultiBlockMasker(grid_size=(14, 14), min_keep=4, seed=0)(6)
        static = masks["target_indices"].shape[-1]
        graph = tf.function(lambda m: trim_padding(m)["target_indices"])
        xla = tf.function(lambda m: trim_padding(m)["target_indices"], jit_compile=True)
        self.assertLess(graph(masks).shape[-1], static)
        self.assertEqual(xla(masks).shape[-1], static)

    def test_draw_masks__override_supplies_the_step_masks(self):
        fixed = to_numpy(kfp.layers.MultiBlockMasker(grid_size=(8, 8), min_keep=4, seed=3)(4))

        class FixedMasks(kfp.models.FlexPredict):
            def draw_masks(self, images):
                return {k: ops.convert_to_tensor(v) for k, v in fixed.items()}

        model = tiny_flexpredict()
        clone = FixedMasks.from_config(model.get_config())
        with torch_onednn_linear_switch("0"):  # eager torch cuts its slots
            out = to_numpy(clone(structured_images(4), training=False))
        kt = fixed["target_mask"].sum(-1).max() if self.backend == "torch" else fixed["target_mask"].shape[-1]
        if self.backend == "tensorflow":
            kt = out["target_mask"].shape[-1]  # cut and rounded up (`trim_padding`)
            self.assertGreaterEqual(kt, fixed["target_mask"].sum(-1).max())
        np.testing.assert_array_equal(out["target_mask"], fixed["target_mask"][:, :, :kt])
