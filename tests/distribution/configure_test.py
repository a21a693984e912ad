import os
from unittest import mock

import keras

from keras_flexpredict import distribution as kd
from keras_flexpredict.testing import TestCase

OTHER_BACKEND_SPEC = {"jax": "mirrored", "tensorflow": "model_parallel:1x1", "torch": "tpu"}


class ConfigureTest(TestCase):
    def tearDown(self):
        if self.backend == "jax":
            keras.distribution.set_distribution(None)
        super().tearDown()

    def test_configure__none_is_one_replica_and_chief(self):
        context = kd.configure("none")
        self.assertIsInstance(context, kd.DistributionContext)
        self.assertEqual((context.num_replicas, context.num_processes, context.process_index), (1, 1, 0))
        self.assertTrue(context.is_chief)
        self.assertIsNone(context.strategy)
        with context.scope():
            pass
        if self.backend == "jax":
            self.assertIsNone(keras.distribution.distribution())
        # One process: the dataset passes through unchanged.
        sentinel = object()
        self.assertIs(context.distribute_dataset(sentinel), sentinel)

    def test_configure__bad_specs_raise_naming_the_spec(self):
        with self.assertRaisesRegex(ValueError, "spec='data_paralel'"):
            kd.configure("data_paralel")
        with self.assertRaisesRegex(ValueError, "spec=8"):
            kd.configure(8)
        with self.assertRaisesRegex(ValueError, "spec='mirrored:2'"):
            kd.configure("mirrored:2")
        spec = OTHER_BACKEND_SPEC[self.backend]
        with self.assertRaisesRegex(ValueError, f"KERAS_BACKEND={self.backend}.*spec='{spec}'"):
            kd.configure(spec)

    def test_configure__jax_data_parallel_and_model_parallel_meshes(self):
        if self.backend != "jax":
            self.skipTest("keras.distribution meshes are JAX-only.")
        devices = len(keras.distribution.list_devices())
        context = kd.configure("data_parallel")
        self.assertIsInstance(keras.distribution.distribution(), keras.distribution.DataParallel)
        self.assertEqual(context.num_replicas, devices)
        context = kd.configure(f"model_parallel:1x{devices}")
        distribution = keras.distribution.distribution()
        self.assertIsInstance(distribution, keras.distribution.ModelParallel)
        self.assertEqual(tuple(distribution.device_mesh.shape), (1, devices))
        self.assertEqual(context.num_replicas, 1)
        self.assertEqual(tuple(context.distribution.device_mesh.axis_names), ("batch", "model"))
        with self.assertRaisesRegex(ValueError, "spec='model_parallel:3x5'"):
            kd.configure("model_parallel:3x5")
        with self.assertRaisesRegex(ValueError, "spec='model_parallel:two'"):
            kd.configure("model_parallel:two")
        kd.configure("none")
        self.assertIsNone(keras.distribution.distribution())

    def test_configure__torch_ddp_needs_torchrun_environment(self):
        if self.backend != "torch":
            self.skipTest("DDP is the torch engine.")
        import torch.distributed as dist

        if dist.is_initialized():
            self.skipTest("A process group already exists.")
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        with mock.patch.dict(os.environ, env, clear=True):
            with self.assertRaisesRegex(ValueError, "torchrun.*MASTER_ADDR"):
                kd.configure("ddp")

    def test_configure__tensorflow_mirrored_strategy(self):
        if self.backend != "tensorflow":
            self.skipTest("tf.distribute is the TensorFlow engine.")
        import tensorflow as tf

        context = kd.configure("mirrored")
        self.assertIsInstance(context.strategy, tf.distribute.MirroredStrategy)
        self.assertEqual(context.num_replicas, context.strategy.num_replicas_in_sync)
        with context.scope():
            self.assertIs(tf.distribute.get_strategy(), context.strategy)

    def test_tf_config__invalid_json_raises(self):
        with mock.patch.dict(os.environ, {"TF_CONFIG": "{not json"}):
            with self.assertRaisesRegex(ValueError, "TF_CONFIG"):
                kd.saving.tf_config()
        with mock.patch.dict(
            os.environ,
            {"TF_CONFIG": '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}'},
        ):
            if self.backend == "tensorflow":
                self.assertEqual(kd.process_index(), 1)
                self.assertFalse(kd.is_chief())
