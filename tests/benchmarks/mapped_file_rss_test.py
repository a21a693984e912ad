"""The file-backed part of a process's RSS, and the wrapper that reads it as a script exits."""

import doctest
import json
import os
import subprocess
import sys

import pytest

from benchmarks import mapped_file_rss

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_docstring_examples():
    result = doctest.testmod(mapped_file_rss)
    assert result.attempted > 0 and result.failed == 0


def test_reads_rss_less_anonymous(tmp_path):
    rollup = tmp_path / "smaps_rollup"
    rollup.write_text(
        "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0 [rollup]\n"
        "Rss:             2097152 kB\nPss:             2000000 kB\nAnonymous:       1572864 kB\n"
    )
    assert mapped_file_rss.mapped_file_rss_mib(str(rollup)) == 512.0


def test_missing_or_short_rollup_gives_none(tmp_path):
    assert mapped_file_rss.mapped_file_rss_mib(str(tmp_path / "absent")) is None
    short = tmp_path / "short"
    short.write_text("Rss: 10 kB\n")
    assert mapped_file_rss.mapped_file_rss_mib(str(short)) is None


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux's smaps_rollup")
def test_wrapper_runs_the_script_with_its_arguments_and_writes_at_exit(tmp_path):
    script = tmp_path / "harness.py"
    helper = tmp_path / "helper_module.py"
    helper.write_text("VALUE = 7\n")
    # The script imports a module beside it (as `python SCRIPT` allows) and exits non-zero.
    script.write_text(
        "import sys, helper_module\n"
        "print(sys.argv[1:], helper_module.VALUE, __name__)\n"
        "sys.exit(3)\n"
    )
    out = tmp_path / "files.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.mapped_file_rss", str(out), str(script), "--a", "1"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.strip() == "['--a', '1'] 7 __main__"
    value = json.loads(out.read_text())["mapped_file_rss_mib"]
    assert value > 0
    assert not (tmp_path / "files.json.partial").exists()


def test_wrapper_refuses_a_missing_script(tmp_path):
    with pytest.raises(SystemExit, match="no script '/nonexistent/harness.py'"):
        mapped_file_rss.main([str(tmp_path / "out.json"), "/nonexistent/harness.py"])
    with pytest.raises(SystemExit, match="usage"):
        mapped_file_rss.main([str(tmp_path / "out.json")])
