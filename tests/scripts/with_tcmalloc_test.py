import os
import subprocess

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "with_tcmalloc.sh")
PRINT_PRELOAD = ["bash", "-c", 'echo "preload=[${LD_PRELOAD:-}] args=[$*]"', "_", "a b", "c"]


def _run(args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "KFP_TCMALLOC")}
    full_env.update(env)
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=full_env)


def test_given_library__preloaded_before_existing_preload_and_args_kept(tmp_path):
    # An empty file stands in for the library: the wrapper only sets the variable.
    lib = tmp_path / "libtcmalloc.so"
    lib.write_bytes(b"")
    other = tmp_path / "other.so"
    other.write_bytes(b"")
    result = _run(PRINT_PRELOAD, KFP_TCMALLOC=str(lib), LD_PRELOAD=str(other))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"preload=[{lib} {other}] args=[a b c]"


def test_missing_given_library__refused_naming_the_path(tmp_path):
    missing = tmp_path / "nope.so"
    result = _run(PRINT_PRELOAD, KFP_TCMALLOC=str(missing))
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert result.stdout == ""


def test_exit_status_of_the_command_is_passed_on(tmp_path):
    lib = tmp_path / "libtcmalloc.so"
    lib.write_bytes(b"")
    assert _run(["bash", "-c", "exit 7"], KFP_TCMALLOC=str(lib)).returncode == 7


def test_no_command__usage():
    result = _run([])
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_path_option__prints_the_library_found(tmp_path):
    lib = tmp_path / "libtcmalloc.so"
    lib.write_bytes(b"")
    result = _run(["--path"], KFP_TCMALLOC=str(lib))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(lib)
