import ctypes
import ctypes.util

from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils.memory import release_free_memory


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
