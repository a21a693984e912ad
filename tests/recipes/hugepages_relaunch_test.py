"""The recipes' command lines relaunch themselves on JAX with glibc's malloc asking for
transparent huge pages (`recipes.cli.relaunch_with_hugepages`), and only there."""

import json
import os
import subprocess
import sys

import keras

from keras_flexpredict.testing import TestCase
from keras_flexpredict.utils import memory
from recipes import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class HugepageMallocEnvironmentTest(TestCase):
    def setUp(self):
        super().setUp()
        self.mode, self.version = "madvise", (2, 36)
        patches = {"_transparent_hugepage_mode": lambda: self.mode, "_glibc_version": lambda: self.version}
        for name, fake in patches.items():
            original = getattr(memory, name)
            setattr(memory, name, fake)
            self.addCleanup(setattr, memory, name, original)

    def test_adds_the_tunable_and_keeps_the_others(self):
        if not sys.platform.startswith("linux"):
            self.skipTest("glibc tunables are Linux's")
        env = memory.hugepage_malloc_environment({"A": "1", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
        self.assertEqual(env, {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"})

    def test_none_where_it_would_change_nothing(self):
        self.assertIsNone(memory.hugepage_malloc_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}))
        self.assertIsNone(memory.hugepage_malloc_environment({"KFP_HUGEPAGES": "0"}))
        self.mode = "never"
        self.assertIsNone(memory.hugepage_malloc_environment({}))
        self.mode, self.version = "always", (2, 34)
        self.assertIsNone(memory.hugepage_malloc_environment({}))
        self.version = None  # not glibc
        self.assertIsNone(memory.hugepage_malloc_environment({}))

    def test_bad_opt_out_value__names_it(self):
        with self.assertRaisesRegex(ValueError, "KFP_HUGEPAGES='sometimes'"):
            memory.hugepage_malloc_environment({"KFP_HUGEPAGES": "sometimes"})


class RelaunchWithHugepagesTest(TestCase):
    def _relaunch(self, environ, supported=True):
        calls = []
        original = memory.hugepage_malloc_environment
        memory.hugepage_malloc_environment = lambda env: dict(env, GLIBC_TUNABLES="x") if supported else None
        try:
            cli.relaunch_with_hugepages(environ, execve=lambda *args: calls.append(args))
        finally:
            memory.hugepage_malloc_environment = original
        return calls

    def test_jax_relaunches_the_same_command_with_the_tunable(self):
        (call,) = self._relaunch({"KERAS_BACKEND": "jax"})
        self.assertEqual(call, (sys.executable, list(sys.orig_argv), {"KERAS_BACKEND": "jax", "GLIBC_TUNABLES": "x"}))

    def test_other_backends_and_unsupported_machines_run_on(self):
        self.assertEqual(self._relaunch({"KERAS_BACKEND": "torch"}), [])
        self.assertEqual(self._relaunch({"KERAS_BACKEND": "tensorflow"}), [])
        self.assertEqual(self._relaunch({"KERAS_BACKEND": "jax"}, supported=False), [])

    def test_backend_read_from_keras_json_without_the_variable(self):
        home = self.get_temp_dir()
        with open(os.path.join(home, "keras.json"), "w") as f:
            json.dump({"backend": "jax"}, f)
        self.assertEqual(len(self._relaunch({"KERAS_HOME": home})), 1)
        with open(os.path.join(home, "keras.json"), "w") as f:
            json.dump({"backend": "torch"}, f)
        self.assertEqual(self._relaunch({"KERAS_HOME": home}), [])

    def test_a_real_relaunch_sees_the_tunable_once(self):
        # A JAX process that calls the relaunch and prints what it then runs with.
        if keras.backend.backend() != "jax":
            self.skipTest("one subprocess check is enough: run on the JAX backend")
        env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "KFP_HUGEPAGES")}
        env.update(KERAS_BACKEND="jax", PYTHONPATH=ROOT)
        expected = memory.hugepage_malloc_environment(env)
        code = (
            "import os; from recipes import cli; cli.relaunch_with_hugepages(); "
            "print('tunables', os.environ.get('GLIBC_TUNABLES'))"
        )
        proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        printed = [line for line in proc.stdout.splitlines() if line.startswith("tunables")]
        self.assertEqual(printed, [f"tunables {expected['GLIBC_TUNABLES'] if expected else None}"])
        self.assertEqual(proc.stderr.count("relaunching with GLIBC_TUNABLES"), 1 if expected else 0)
