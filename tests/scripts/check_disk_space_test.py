import os
import subprocess

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "check_disk_space.sh")


def _run(*args):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True)


def test_enough_space__passes_silently(tmp_path):
    result = _run(str(tmp_path), "0")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_too_little_space__fails_with_free_and_needed_sizes(tmp_path):
    result = _run(str(tmp_path), "999999999")
    assert result.returncode == 1
    assert "Not enough disk space" in result.stderr
    assert "999999999 GiB needed" in result.stderr
    assert "VENV_MIN_FREE_GIB=N" in result.stderr


def test_too_little_space__names_the_given_variable(tmp_path):
    result = _run(str(tmp_path), "999999999", "ONE_BACKEND_MIN_FREE_GIB")
    assert result.returncode == 1
    assert "ONE_BACKEND_MIN_FREE_GIB=N" in result.stderr


def test_bad_size__names_the_value(tmp_path):
    result = _run(str(tmp_path), "5GB")
    assert result.returncode == 2
    assert "'5GB'" in result.stderr
