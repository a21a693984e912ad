"""Giving the C heap's free memory back to the operating system, and the launch
setting that has glibc's malloc ask for transparent huge pages."""

import ctypes
import ctypes.util
import functools
import os
import sys

from keras_flexpredict.utils.validation import check_int
from keras_flexpredict.utils.validation import check_switch

__all__ = ["hugepage_malloc_environment", "release_free_memory", "releasing_free_memory_at_start"]

HUGEPAGES_TUNABLE = "glibc.malloc.hugetlb=1"
HUGEPAGES_OPT_OUT = "KFP_HUGEPAGES"
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to call
        return None


def release_free_memory():
    """Returns the free pages of the process's C heap to the OS (glibc's
    `malloc_trim(0)`); a no-op where the C library has no `malloc_trim`. True if it ran.

    Why: compiling a large XLA program (e.g. a ViT train step) frees the compiler's
    working memory (~0.6 GB with XLA:CPU's fusion emitters, ~0.15 GB with the
    elemental ones the train step uses on a CPU, `utils.xla_cpu_options`), which glibc
    keeps in its heap; without this the process carries it beside every later step's
    buffers.

    >>> release_free_memory() in (True, False)
    True
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def releasing_free_memory_at_start(function, calls=2):
    """`function`, with the C heap's free pages handed back to the OS
    (`release_free_memory`) before its first call and after each of its first `calls`
    calls; later calls go straight through.

    Why: a model's build, TensorFlow's tracing and optimisation of the train step's
    graph, and the first steps' one-off work free a few hundred MB that glibc keeps
    in its heaps, and the process's peak memory is that beside the later steps'
    buffers. On a 2-core CPU (ViT-Tiny 64/8 b32 and 224/16 b8) this took
    TensorFlow's peak RSS 90-130 MiB lower and torch's 18-54 MiB, at no cost to the step
    (`benchmarks/results/cpu_findings.md`, session 24). A release takes 2-4 ms on
    TensorFlow's heap and 36-70 ms on torch's, so it is not repeated every step.

    >>> calls = []
    >>> step = releasing_free_memory_at_start(lambda x: calls.append(x) or x, calls=1)
    >>> step(1), step(2), calls
    (1, 2, [1, 2])
    """
    calls = check_int("calls", calls, minimum=0)
    remaining = calls
    started = False

    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        nonlocal remaining, started
        if not started:
            started = True
            release_free_memory()
        if remaining == 0:
            return function(*args, **kwargs)
        try:
            return function(*args, **kwargs)
        finally:
            remaining -= 1
            release_free_memory()

    return wrapped


def _glibc_version():
    """(major, minor) of the running glibc, or None (not glibc)."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):
        return None


def _transparent_hugepage_mode(path=_THP_MODE_FILE):
    """The kernel's transparent huge page mode (`always`, `madvise`, `never`), or None."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def hugepage_malloc_environment(environ=None):
    """A copy of `environ` (default `os.environ`) whose `GLIBC_TUNABLES` also holds
    `glibc.malloc.hugetlb=1`, for a process to be started with; None where that would
    change nothing: not Linux, not glibc >= 2.35, the kernel's transparent huge pages
    off (`never`), `GLIBC_TUNABLES` already choosing `glibc.malloc.hugetlb`, or
    `KFP_HUGEPAGES=0` (the opt-out).

    Why: on a CPU, XLA (the JAX backend) takes its ~0.5 GB temporary buffer afresh from
    the kernel at every train step (one `mmap` and `munmap` a step, from a worker
    thread), i.e. ~130k first touches of 4 KiB pages. With the tunable, glibc advises
    the kernel to back what it maps with 2 MiB pages: ~0.7 M instead of ~3.1 M page
    faults in an 18-step ViT-Tiny 224/16 run, and JAX's step 10% faster on a 2-core
    AMD EPYC VM (median of 4 interleaved rounds, 0-14% per round; BENCHMARKS.md,
    session 17), peak memory 1.68 -> 1.73 GiB. torch, TensorFlow and the official step
    did not change beyond the machine's noise. glibc reads its tunables only when a
    process starts, so this is a launch setting: the recipes' command lines relaunch
    themselves with it on JAX (`recipes.cli.run_main`); elsewhere set it yourself:
    `GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python train.py`.

    >>> env = hugepage_malloc_environment({"PATH": "/usr/bin"})
    >>> env is None or env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    True
    """
    environ = os.environ if environ is None else environ
    if check_switch(environ, HUGEPAGES_OPT_OUT) is False:
        return None
    tunables = [t for t in environ.get("GLIBC_TUNABLES", "").split(":") if t]
    if any(t.startswith("glibc.malloc.hugetlb=") for t in tunables):
        return None
    version = _glibc_version()
    if not sys.platform.startswith("linux") or version is None or version < (2, 35):
        return None
    if _transparent_hugepage_mode() not in ("always", "madvise"):
        return None
    return dict(environ, GLIBC_TUNABLES=":".join(tunables + [HUGEPAGES_TUNABLE]))
