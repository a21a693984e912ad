"""How much of a process's resident memory is mapped files (shared libraries' code and
data), the part of its RSS that no allocation of its own made.

A TensorFlow train step keeps ~0.5 GiB of its shared libraries' pages resident (0.39 GiB
of `libtensorflow_cc.so.2` and `libtensorflow_framework.so.2` from the import on: their
static initialisers touch most of them), the official torch step ~0.1 GiB;
`compare_official` reports this beside each cell's peak RSS, read once at the end of the
run (a train step's mapped files stop growing after its first steps, so the end-of-run
figure is what they held at the peak).

`python -m benchmarks.mapped_file_rss OUT SCRIPT [ARGS...]` runs SCRIPT as `python
SCRIPT ARGS...` would and, as it exits, writes `{"mapped_file_rss_mib": ...}` to OUT:
`compare_official` runs the official harness this way, so both sides are read alike.

>>> value = mapped_file_rss_mib()
>>> value is None or value >= 0
True
"""

import atexit
import json
import os
import runpy
import sys


def mapped_file_rss_mib(smaps_rollup="/proc/self/smaps_rollup"):
    """Resident memory backed by files (`Rss` - `Anonymous` of `smaps_rollup`), MiB; None
    where the kernel has no `smaps_rollup` (not Linux, or Linux < 4.14)."""
    fields = {}
    try:
        with open(smaps_rollup) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] in ("Rss:", "Anonymous:"):
                    fields[parts[0]] = int(parts[1])
    except OSError:
        return None
    if len(fields) < 2:
        return None
    return (fields["Rss:"] - fields["Anonymous:"]) / 1024


def _write_at_exit(out):
    # Read first; written whole or not at all (no Keras import here: it would map more files).
    text = json.dumps(dict(mapped_file_rss_mib=mapped_file_rss_mib()))
    partial = f"{out}.partial"
    with open(partial, "w") as f:
        f.write(text)
    os.replace(partial, out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit("usage: python -m benchmarks.mapped_file_rss OUT SCRIPT [ARGS...]")
    out, script = argv[0], argv[1]
    if not os.path.isfile(script):
        raise SystemExit(f"mapped_file_rss: no script {script!r}")
    atexit.register(_write_at_exit, out)
    # As `python SCRIPT`: its folder first on the path, its arguments in sys.argv.
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    sys.argv = [script] + argv[2:]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
