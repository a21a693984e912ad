"""Starting, watching and cleaning up the worker processes of the multi-device tests."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TIMEOUT_S = 420


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def out_dir(test):
    directory = tempfile.mkdtemp(prefix="kfp_dist_")
    test.addCleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
    return directory


def base_env(backend, **extra):
    env = dict(os.environ)
    for key in list(env):
        # A fresh runtime per worker: no inherited distribution settings.
        if key.startswith(("KERAS_DISTRIBUTION_", "TF_CONFIG", "MASTER_", "LOCAL_RANK")) or key in (
            "RANK", "WORLD_SIZE", "XLA_FLAGS",
        ):
            env.pop(key)
    env.update(
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""),
        PYTHONUNBUFFERED="1",
        JAX_PLATFORMS="cpu",
        CUDA_VISIBLE_DEVICES="",
        OMP_NUM_THREADS="1",
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start(script, args, env, log_path):
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, os.path.join(HERE, script), *args],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    process.log_path = log_path
    process._log = log
    return process


def _tail(process, n=4000):
    process._log.flush()
    with open(process.log_path, errors="replace") as f:
        text = f.read()
    lines = [l for l in text.splitlines() if not l.startswith(("WARNING: All log", "I0000", "W0000"))]
    return "\n".join(lines)[-n:]


def wait_all(processes, timeout=TIMEOUT_S):
    """Waits for every process; on the first failure (or the timeout) kills the others
    (a JAX / torch peer would otherwise wait minutes in a collective) and raises with
    the failed process's log."""
    deadline = time.time() + timeout
    pending = dict(processes)
    try:
        while pending:
            for name, process in list(pending.items()):
                code = process.poll()
                if code is None:
                    continue
                del pending[name]
                if code != 0:
                    raise AssertionError(f"{name} failed (exit {code}):\n{_tail(process)}")
            if pending and time.time() > deadline:
                name = next(iter(pending))
                raise AssertionError(f"{name} timed out after {timeout}s:\n{_tail(pending[name])}")
            time.sleep(0.2)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            process._log.close()


def read_json(directory, name):
    with open(os.path.join(directory, name)) as f:
        return json.load(f)
