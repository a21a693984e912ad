import keras
import numpy as np

from keras_flexpredict import distribution as kd
from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict


class TorchDataParallelTest(TestCase):
    def test_config_round_trip_and_validation(self):
        callback = kd.TorchDataParallel(bucket_mb=4.0, verify_replicas=False, tolerance=0.0)
        config = callback.get_config()
        self.assertEqual(config, {"bucket_mb": 4.0, "verify_replicas": False, "tolerance": 0.0})
        self.assertEqual(kd.TorchDataParallel(**config).get_config(), config)
        with self.assertRaisesRegex(ValueError, "bucket_mb=0"):
            kd.TorchDataParallel(bucket_mb=0)
        with self.assertRaisesRegex(ValueError, "tolerance=-1"):
            kd.TorchDataParallel(tolerance=-1)

    def test_fit__refuses_other_backends_and_missing_process_group(self):
        model = tiny_flexpredict()
        model.compile()
        images = structured_images(8)
        if self.backend != "torch":
            with self.assertRaisesRegex(ValueError, f"backend='{self.backend}'"):
                model.fit(images, batch_size=8, verbose=0, callbacks=[kd.TorchDataParallel()])
            return
        import torch.distributed as dist

        if dist.is_initialized():
            self.skipTest("A process group already exists.")
        with self.assertRaisesRegex(ValueError, "is_initialized"):
            model.fit(images, batch_size=8, verbose=0, callbacks=[kd.TorchDataParallel()])

    def test_all_reduce_gradients__buckets_keep_shapes_order_and_nones(self):
        if self.backend != "torch":
            self.skipTest("torch.distributed only.")
        import torch
        import torch.distributed as dist

        if dist.is_initialized():
            self.skipTest("A process group already exists.")
        # A one-process gloo group: the mean over one process is the gradient itself,
        # so the test checks bucketing (tiny buckets: one tensor each, mixed dtypes).
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        self.addCleanup(dist.destroy_process_group)
        callback = kd.TorchDataParallel(bucket_mb=1e-4)
        grads = [
            torch.arange(6, dtype=torch.float32).reshape(2, 3),
            None,
            torch.ones(40, dtype=torch.float32),
            torch.full((3,), 2.0, dtype=torch.float64),
        ]
        out = callback.all_reduce_gradients(grads)
        self.assertIsNone(out[1])
        for a, b in zip(out, grads):
            if b is not None:
                self.assertEqual(a.shape, b.shape)
                self.assertEqual(a.dtype, b.dtype)
                np.testing.assert_array_equal(a.numpy(), b.numpy())
        # One process: fit runs and adds nothing (no wrapping, no broadcast needed).
        model = tiny_flexpredict()
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.fit(structured_images(8), batch_size=8, verbose=0, callbacks=[callback])
        self.assertNotIn("apply", vars(model.optimizer))
