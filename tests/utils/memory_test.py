import ctypes
import ctypes.util
from unittest import mock

from keras_flexpredict.testing import TestCase
from keras_flexpredict.testing.tiny_models import structured_images
from keras_flexpredict.testing.tiny_models import tiny_flexpredict
from keras_flexpredict.utils import memory
from keras_flexpredict.utils.memory import release_free_memory
from keras_flexpredict.utils.memory import releasing_free_memory_at_start


def _rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return None


class ReleaseFreeMemoryTest(TestCase):
    def test_freed_heap_memory_goes_back_to_the_os(self):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            self.skipTest("No glibc malloc_trim here.")
        if _rss_mib() is None:
            self.skipTest("No /proc/self/status here.")
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        # 160 MiB in 64 KiB blocks (below glibc's mmap threshold: they come from the
        # heap), touched, then freed except the last, which pins the heap's top: the
        # freed pages stay in the process until they are trimmed.
        blocks = [libc.malloc(64 * 1024) for _ in range(2560)]
        for block in blocks:
            ctypes.memset(block, 1, 64 * 1024)
        for block in blocks[:-1]:
            libc.free(block)
        before = _rss_mib()
        self.assertTrue(release_free_memory())
        after = _rss_mib()
        libc.free(blocks[-1])
        self.assertGreater(before - after, 100, msg=f"RSS {before:.0f} -> {after:.0f} MiB")


class ReleasingFreeMemoryAtStartTest(TestCase):
    def test_released_before_the_first_call_and_after_the_first_calls_only(self):
        events = []
        with mock.patch.object(memory, "release_free_memory", side_effect=lambda: events.append("release")):
            step = releasing_free_memory_at_start(lambda i: events.append(i) or i * 10, calls=2)
            self.assertEqual(events, [])
            self.assertEqual([step(i) for i in range(4)], [0, 10, 20, 30])
        self.assertEqual(events, ["release", 0, "release", 1, "release", 2, 3])

    def test_released_after_a_failing_call_too(self):
        def fail():
            raise RuntimeError("step failed")

        with mock.patch.object(memory, "release_free_memory") as release:
            step = releasing_free_memory_at_start(fail, calls=1)
            with self.assertRaisesRegex(RuntimeError, "step failed"):
                step()
        self.assertEqual(release.call_count, 2)

    def test_bad_calls_named(self):
        with self.assertRaisesRegex(ValueError, "calls"):
            releasing_free_memory_at_start(print, calls=-1)

    def test_fit__released_around_the_first_two_steps(self):
        # Keras's own train function (JAX's length-bucketed one releases around each
        # bucket's compilation instead: jax_length_buckets_test).
        model = tiny_flexpredict(length_buckets=1)
        model.compile()
        with mock.patch.object(memory, "release_free_memory") as release:
            model.fit(structured_images(32), batch_size=8, epochs=1, verbose=0)
            self.assertEqual(release.call_count, 3)
            model.fit(structured_images(16), batch_size=8, epochs=1, verbose=0)
        # The train function is kept between `fit` calls, and so is its count.
        self.assertEqual(release.call_count, 3)
