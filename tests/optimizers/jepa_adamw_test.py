import json
import os
import subprocess
import sys

import keras
import numpy as np
from keras import ops

from keras_flexpredict.optimizers import CosineWeightDecay
from keras_flexpredict.optimizers import JEPAAdamW
from keras_flexpredict.optimizers import WarmupCosineDecay
from keras_flexpredict.testing.test_case import TestCase
from keras_flexpredict.testing.test_case import to_numpy
from optimizer_test_utils import ReferenceCosineWDSchedule
from optimizer_test_utils import ReferenceWarmupCosineSchedule
from optimizer_test_utils import reference_values

TOTAL, WARMUP = 8, 3
START_LR, PEAK_LR, FINAL_LR = 0.05, 0.2, 0.01
START_WD, END_WD = 0.5, 2.0  # large, so that one step of decay is far above float32 noise


MIRRORED_SCRIPT = """
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras import ops
from keras_flexpredict.optimizers import CosineWeightDecay, JEPAAdamW, WarmupCosineDecay

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, bias_initializer="ones", name="dense")]
    )
    model.compile(
        optimizer=JEPAAdamW(
            learning_rate=WarmupCosineDecay(%(total)d, %(warmup)d, %(start_lr)r, %(peak_lr)r, %(final_lr)r),
            weight_decay=CosineWeightDecay(%(total)d, %(start_wd)r, %(end_wd)r),
        ),
        loss=lambda y_true, y_pred: 0.0 * ops.sum(y_pred),
    )
layer = model.get_layer("dense")
w0 = layer.kernel.numpy()
x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
model.fit(x, np.zeros((8, 4), "float32"), batch_size=8, epochs=3, verbose=0)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "iterations": int(model.optimizer.iterations.numpy()),
    "w0": w0.tolist(),
    "kernels": [v.numpy().tolist() for v in layer.kernel.value.values],
    "bias": layer.bias.numpy().tolist(),
}))
"""
SCHEDULE_ARGS = dict(
    total=TOTAL, warmup=WARMUP, start_lr=START_LR, peak_lr=PEAK_LR, final_lr=FINAL_LR, start_wd=START_WD, end_wd=END_WD
)


def make_schedules():
    return (
        WarmupCosineDecay(TOTAL, WARMUP, START_LR, PEAK_LR, FINAL_LR),
        CosineWeightDecay(TOTAL, START_WD, END_WD),
    )


def reference_lr_wd(num_steps):
    lr = reference_values(ReferenceWarmupCosineSchedule(WARMUP, START_LR, PEAK_LR, TOTAL, final_lr=FINAL_LR), num_steps)
    wd = reference_values(ReferenceCosineWDSchedule(START_WD, TOTAL, final_wd=END_WD), num_steps)
    return lr, wd


def expected_decay(initial, num_steps):
    """w_t = w_0 * prod_{s < t} (1 - lr_s * wd_s), for t = 1..num_steps."""
    lr, wd = reference_lr_wd(num_steps)
    factors = np.cumprod(1.0 - lr * wd)
    return [initial * f for f in factors]


def zero_loss(y_true, y_pred):
    # Exactly zero gradients: Adam's own update is then exactly zero, and only
    # the decoupled weight decay moves the weights.
    return 0.0 * ops.sum(y_pred)


def tiny_model():
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, bias_initializer="ones", name="dense"),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(2, name="head"),
        ]
    )


class RecordWeights(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.kernels, self.biases, self.gammas = [], [], []

    def on_epoch_end(self, epoch, logs=None):
        self.kernels.append(to_numpy(self.model.get_layer("dense").kernel))
        self.biases.append(to_numpy(self.model.get_layer("dense").bias))
        self.gammas.append(to_numpy(self.model.get_layer("norm").gamma))


def numpy_adamw(w0, grads, lr, wd, decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
    """Keras's Adam step (epsilon hat) after torch-style decoupled decay."""
    w, m, v = w0.astype(np.float64), np.zeros_like(w0, np.float64), np.zeros_like(w0, np.float64)
    for s, g in enumerate(grads):
        if decay:
            w = w * (1.0 - lr[s] * wd[s])
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        alpha = lr[s] * np.sqrt(1 - beta_2 ** (s + 1)) / (1 - beta_1 ** (s + 1))
        w = w - alpha * m / (np.sqrt(v) + epsilon)
    return w


class JEPAAdamWTest(TestCase):
    def test_apply_gradients__weight_decay_follows_schedule_and_skips_1d(self):
        learning_rate, weight_decay = make_schedules()
        optimizer = JEPAAdamW(learning_rate=learning_rate, weight_decay=weight_decay)
        rng = np.random.default_rng(0)
        w0, t0, b0 = (rng.normal(size=s).astype("float32") for s in [(3, 4), (1, 2, 4), (4,)])
        kernel, token, bias = keras.Variable(w0), keras.Variable(t0), keras.Variable(b0)
        expected_kernel, expected_token = expected_decay(w0, 6), expected_decay(t0, 6)
        for step in range(6):
            optimizer.apply_gradients([(ops.zeros(v.shape), v) for v in (kernel, token, bias)])
            self.assertAllClose(kernel, expected_kernel[step], rtol=1e-5, atol=0)
            self.assertAllClose(token, expected_token[step], rtol=1e-5, atol=0)
            self.assertAllEqual(bias, b0)
        self.assertEqual(int(to_numpy(optimizer.iterations)), 6)
        # The decay really changes from step to step (this test can fail).
        lr, wd = reference_lr_wd(6)
        self.assertGreater(np.ptp(lr * wd), 0.05)

    def test_apply_gradients__matches_numpy_adamw_with_schedules(self):
        learning_rate, weight_decay = make_schedules()
        optimizer = JEPAAdamW(learning_rate=learning_rate, weight_decay=weight_decay)
        rng = np.random.default_rng(1)
        w0, b0 = rng.normal(size=(3, 4)).astype("float32"), rng.normal(size=(4,)).astype("float32")
        grads_w = [rng.normal(size=(3, 4)).astype("float32") for _ in range(5)]
        grads_b = [rng.normal(size=(4,)).astype("float32") for _ in range(5)]
        kernel, bias = keras.Variable(w0), keras.Variable(b0)
        for gw, gb in zip(grads_w, grads_b):
            optimizer.apply_gradients([(ops.convert_to_tensor(gw), kernel), (ops.convert_to_tensor(gb), bias)])
        lr, wd = reference_lr_wd(5)
        # Keras computes Adam's bias correction `1 - beta_2**t` in float32, which
        # costs ~1e-5 of relative precision in the first steps.
        self.assertAllClose(kernel, numpy_adamw(w0, grads_w, lr, wd, decay=True), rtol=1e-4, atol=2e-5)
        self.assertAllClose(bias, numpy_adamw(b0, grads_b, lr, wd, decay=False), rtol=1e-4, atol=2e-5)

    def test_apply_gradients__float_weight_decay_matches_keras_adamw(self):
        rng = np.random.default_rng(2)
        shapes = [(3, 4), (4,), (2, 2, 3)]
        values = [rng.normal(size=s).astype("float32") for s in shapes]
        grads = [[rng.normal(size=s).astype("float32") for s in shapes] for _ in range(3)]
        ours = JEPAAdamW(learning_rate=0.01, weight_decay=0.3, exclude_1d_from_weight_decay=False)
        keras_adamw = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.3, epsilon=1e-8)
        ours_vars = [keras.Variable(v) for v in values]
        keras_vars = [keras.Variable(v) for v in values]
        for step_grads in grads:
            ours.apply_gradients([(ops.convert_to_tensor(g), v) for g, v in zip(step_grads, ours_vars)])
            keras_adamw.apply_gradients([(ops.convert_to_tensor(g), v) for g, v in zip(step_grads, keras_vars)])
        for a, b in zip(ours_vars, keras_vars):
            self.assertAllClose(a, b, rtol=1e-6, atol=1e-7)
        self.assertGreater(np.abs(to_numpy(ours_vars[1]) - values[1]).max(), 1e-3)

    def test_apply_gradients__exclusion_options(self):
        optimizer = JEPAAdamW(learning_rate=0.1, weight_decay=0.5, exclude_1d_from_weight_decay=False)
        optimizer.exclude_from_weight_decay(var_names=["skip_me"])
        bias = keras.Variable(np.ones((4,), "float32"), name="bias")
        excluded = keras.Variable(np.ones((2, 2), "float32"), name="skip_me_kernel")
        optimizer.apply_gradients([(ops.zeros(v.shape), v) for v in (bias, excluded)])
        self.assertAllClose(bias, np.full((4,), 0.95), rtol=1e-6)  # 1-D decays when not excluded
        self.assertAllEqual(excluded, np.ones((2, 2), "float32"))

    def test_apply_gradients__mask_token_decays_like_the_reference(self):
        # The reference decays every parameter but biases and 1-D ones; its mask
        # token is (1, 1, Dp), ours (Dp,): decayed by name.
        values = {name: np.ones((4,), "float32") for name in ("mask_token", "bias", "gamma")}
        for names, decayed in [(("mask_token",), {"mask_token"}), ((), set())]:
            with self.subTest(decayed_1d_names=names):
                optimizer = JEPAAdamW(learning_rate=0.1, weight_decay=0.5, decayed_1d_names=names)
                variables = {n: keras.Variable(v, name=n) for n, v in values.items()}
                optimizer.apply_gradients([(ops.zeros(v.shape), v) for v in variables.values()])
                for name, variable in variables.items():
                    want = 0.95 if name in decayed else 1.0
                    self.assertAllClose(variable, np.full((4,), want), rtol=1e-6, msg=name)

    def test_mask_token__of_ijepa_predictor_is_decayed_and_its_biases_are_not(self):
        from keras_flexpredict.testing.tiny_models import tiny_flexpredict

        model = tiny_flexpredict(positional_noise="none")
        optimizer = JEPAAdamW()
        decayed = {v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)}
        tokens = [v.path for v in model.trainable_variables if v.name == "mask_token"]
        self.assertEqual(len(tokens), 1)
        self.assertIn(tokens[0], decayed)
        for v in model.trainable_variables:
            if len(v.shape) < 2 and v.name != "mask_token":
                self.assertNotIn(v.path, decayed)
            if len(v.shape) >= 2:
                self.assertIn(v.path, decayed)

    def test_apply_gradients__accumulation_equals_one_update_of_the_mean_gradient(self):
        # Two micro-batches accumulated == one update with their mean gradient,
        # schedules (learning rate, weight decay) and Adam's bias correction
        # included: all count real updates.
        rng = np.random.default_rng(4)
        shapes = [(3, 4), (4,), (4,)]
        names = ["kernel", "bias", "mask_token"]
        values = [rng.normal(size=s).astype("float32") for s in shapes]
        updates = 5
        grads = [[rng.normal(size=s).astype("float32") for s in shapes] for _ in range(2 * updates)]

        def run(accumulation):
            learning_rate, weight_decay = make_schedules()
            optimizer = JEPAAdamW(
                learning_rate=learning_rate, weight_decay=weight_decay, gradient_accumulation_steps=accumulation
            )
            variables = [keras.Variable(v, name=n) for v, n in zip(values, names)]
            history = []
            if accumulation:
                steps = grads
            else:
                steps = [[(a + b) / 2 for a, b in zip(grads[2 * j], grads[2 * j + 1])] for j in range(updates)]
            for step_grads in steps:
                lr = float(to_numpy(optimizer.learning_rate))
                optimizer.apply_gradients([(ops.convert_to_tensor(g), v) for g, v in zip(step_grads, variables)])
                history.append((lr, [to_numpy(v) for v in variables]))
            return optimizer, history

        accumulating, micro = run(2)
        plain, real = run(None)
        self.assertEqual(int(to_numpy(accumulating.iterations)), updates)
        for j in range(updates):
            # The first micro-batch changes nothing; the second applies update j.
            previous = values if j == 0 else micro[2 * j - 1][1]
            for a, b in zip(previous, micro[2 * j][1]):
                self.assertAllEqual(a, b)
            self.assertAllClose(micro[2 * j][0], real[j][0], rtol=1e-6)
            self.assertAllClose(micro[2 * j + 1][0], real[j][0], rtol=1e-6)
            for a, b, name in zip(micro[2 * j + 1][1], real[j][1], names):
                self.assertAllClose(a, b, rtol=1e-5, atol=1e-6, msg=f"update {j}, {name}")

    def test_apply_gradients__keras_clipping_is_applied(self):
        rng = np.random.default_rng(3)
        w0 = rng.normal(size=(3, 4)).astype("float32")
        g0 = 100.0 * rng.normal(size=(3, 4)).astype("float32")  # clipped to norm 1
        g1 = 0.1 * rng.normal(size=(3, 4)).astype("float32")  # norm < 1: untouched
        self.assertLess(np.linalg.norm(g1), 1.0)
        # Adam's first step is scale-free, so the clipping shows in the second.
        for kwargs in [dict(global_clipnorm=1.0), dict(clipnorm=1.0)]:
            with self.subTest(**kwargs):
                clipping, plain = JEPAAdamW(learning_rate=0.1, **kwargs), JEPAAdamW(learning_rate=0.1)
                a, b = keras.Variable(w0), keras.Variable(w0)
                for ga, gb in [(g0, g0 / np.linalg.norm(g0)), (g1, g1)]:
                    clipping.apply_gradients([(ops.convert_to_tensor(ga), a)])
                    plain.apply_gradients([(ops.convert_to_tensor(gb), b)])
                self.assertAllClose(a, b, rtol=1e-5, atol=1e-6)
                unclipped = keras.Variable(w0)
                other = JEPAAdamW(learning_rate=0.1)
                for g in (g0, g1):
                    other.apply_gradients([(ops.convert_to_tensor(g), unclipped)])
                self.assertGreater(np.abs(to_numpy(unclipped) - to_numpy(a)).max(), 1e-3)
        self.assertIsNone(JEPAAdamW().clipnorm)
        self.assertIsNone(JEPAAdamW().global_clipnorm)

    def test_fit__kernel_decay_follows_schedule_bias_and_norm_do_not(self):
        # Default compilation (JAX: jit; TF on CPU: tf.function graph; torch:
        # eager), and XLA on TF too.
        jit_options = ["auto", True] if self.backend == "tensorflow" else ["auto"]
        for jit_compile in jit_options:
            with self.subTest(jit_compile=jit_compile):
                learning_rate, weight_decay = make_schedules()
                model = tiny_model()
                model.compile(
                    optimizer=JEPAAdamW(learning_rate=learning_rate, weight_decay=weight_decay),
                    loss=zero_loss,
                    jit_compile=jit_compile,
                )
                w0 = to_numpy(model.get_layer("dense").kernel)
                x = np.random.default_rng(4).normal(size=(8, 3)).astype("float32")
                y = np.zeros((8, 2), "float32")
                record = RecordWeights()
                model.fit(x, y, batch_size=8, epochs=5, verbose=0, shuffle=False, callbacks=[record])
                expected = expected_decay(w0, 5)
                for step in range(5):
                    self.assertAllClose(record.kernels[step], expected[step], rtol=1e-5, atol=0)
                    self.assertAllEqual(record.biases[step], np.ones((4,), "float32"))
                    self.assertAllEqual(record.gammas[step], np.ones((4,), "float32"))
                self.assertEqual(int(to_numpy(model.optimizer.iterations)), 5)

    def test_fit__mixed_float16_with_loss_scale_optimizer(self):
        keras.config.set_dtype_policy("mixed_float16")
        learning_rate, weight_decay = make_schedules()
        model = tiny_model()
        model.compile(optimizer=JEPAAdamW(learning_rate=learning_rate, weight_decay=weight_decay), loss=zero_loss)
        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        self.assertIsInstance(model.optimizer.inner_optimizer, JEPAAdamW)
        w0 = to_numpy(model.get_layer("dense").kernel)
        x = np.random.default_rng(5).normal(size=(8, 3)).astype("float32")
        record = RecordWeights()
        model.fit(x, np.zeros((8, 2), "float32"), batch_size=8, epochs=3, verbose=0, callbacks=[record])
        expected = expected_decay(w0, 3)
        for step in range(3):
            self.assertAllClose(record.kernels[step], expected[step], rtol=1e-5, atol=0)
            self.assertAllEqual(record.biases[step], np.ones((4,), "float32"))

    def test_loss_scale_optimizer__skipped_step_does_not_advance_schedules(self):
        learning_rate, weight_decay = make_schedules()
        optimizer = keras.optimizers.LossScaleOptimizer(
            JEPAAdamW(learning_rate=learning_rate, weight_decay=weight_decay)
        )
        w0 = np.random.default_rng(6).normal(size=(3, 4)).astype("float32")
        kernel = keras.Variable(w0)
        optimizer.build([kernel])

        def apply(gradient):
            if self.backend == "jax":
                # Eager `apply` of LossScaleOptimizer leaks tracers on JAX; `fit`
                # uses `stateless_apply`, so test that.
                new_vars, new_opt_vars = optimizer.stateless_apply(
                    [v.value for v in optimizer.variables], [gradient], [kernel.value]
                )
                kernel.assign(new_vars[0])
                for variable, value in zip(optimizer.variables, new_opt_vars):
                    variable.assign(value)
            else:
                optimizer.apply([gradient], [kernel])

        apply(ops.convert_to_tensor(np.full((3, 4), np.inf, "float32")))
        self.assertAllEqual(kernel.numpy(), w0)
        self.assertEqual(int(to_numpy(optimizer.iterations)), 0)
        expected = expected_decay(w0, 2)
        for step in range(2):
            apply(ops.zeros((3, 4)))
            self.assertAllClose(kernel.numpy(), expected[step], rtol=1e-5, atol=0)

    def test_fit__under_tf_mirrored_strategy_with_two_replicas(self):
        if self.backend != "tensorflow":
            self.skipTest("tf.distribute is TensorFlow only.")
        # Two logical CPUs must be configured before TF starts: own process.
        result = subprocess.run(
            [sys.executable, "-c", MIRRORED_SCRIPT % SCHEDULE_ARGS],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
            env={**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        out = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertEqual(out["replicas"], 2)
        self.assertEqual(out["iterations"], 3)
        w0 = np.asarray(out["w0"])
        expected = expected_decay(w0, 3)[-1]
        for kernel in out["kernels"]:  # every replica's copy, decayed once a step
            self.assertAllClose(np.asarray(kernel), expected, rtol=1e-5, atol=0)
        self.assertAllEqual(np.asarray(out["bias"]), np.ones((4,)))

    def test_get_config__round_trip_with_schedules(self):
        learning_rate, weight_decay = make_schedules()
        optimizer = JEPAAdamW(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            exclude_1d_from_weight_decay=False,
            global_clipnorm=2.0,
            name="jepa",
        )
        clone = self.run_config_round_trip_test(optimizer)
        self.assertIsInstance(clone._learning_rate, WarmupCosineDecay)
        self.assertIsInstance(clone.weight_decay, CosineWeightDecay)
        self.assertEqual(clone.weight_decay.get_config(), weight_decay.get_config())
        self.assertFalse(clone.exclude_1d_from_weight_decay)
        self.assertEqual(clone.decayed_1d_names, ("mask_token",))
        self.assertEqual(
            self.run_config_round_trip_test(JEPAAdamW(decayed_1d_names=["token", "scale"])).decayed_1d_names,
            ("token", "scale"),
        )
        self.assertEqual(clone.global_clipnorm, 2.0)
        # Float weight decay and the loss-scale wrapper round-trip too.
        self.run_config_round_trip_test(JEPAAdamW(weight_decay=0.1))
        wrapped = keras.optimizers.LossScaleOptimizer(JEPAAdamW(learning_rate=learning_rate, weight_decay=weight_decay))
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(wrapped))
        self.assertIsInstance(revived.inner_optimizer, JEPAAdamW)
        self.assertIsInstance(revived.inner_optimizer.weight_decay, CosineWeightDecay)

    def test_saving__compiled_model_restores_optimizer_and_resumes(self):
        learning_rate, weight_decay = make_schedules()
        model = tiny_model()
        model.compile(optimizer=JEPAAdamW(learning_rate=learning_rate, weight_decay=weight_decay), loss="mse")
        rng = np.random.default_rng(8)
        x, y = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        self.assertIsInstance(loaded.optimizer, JEPAAdamW)
        self.assertEqual(loaded.optimizer._learning_rate.get_config(), learning_rate.get_config())
        self.assertEqual(loaded.optimizer.weight_decay.get_config(), weight_decay.get_config())
        self.assertEqual(int(to_numpy(loaded.optimizer.iterations)), 2)
        # A resumed run continues the same curve.
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        loaded.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        self.assertAllClose(loaded.get_weights(), model.get_weights(), atol=1e-6, rtol=1e-6)

    def test_init__rejects_bad_values(self):
        for kwargs in [
            dict(weight_decay=-0.1),
            dict(weight_decay="big"),
            dict(exclude_1d_from_weight_decay="yes"),
            dict(decayed_1d_names="mask_token"),
            dict(decayed_1d_names=[3]),
        ]:
            name = next(iter(kwargs))
            with self.subTest(**kwargs):
                with self.assertRaisesRegex(ValueError, name):
                    JEPAAdamW(**kwargs)
