import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX on CPU spends most of a small test compiling; the tests build the same tiny
# programs again and again, so a persistent compilation cache cuts the suite's time
# several-fold (first run fills it).
_cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_reports", "jax_cache")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _cache)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
