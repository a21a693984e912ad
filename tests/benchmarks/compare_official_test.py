"""The side-by-side table's bookkeeping (no timing: the cells' results are made up)."""

import json
import os

import pytest

from benchmarks import compare_official


def _row(impl, step_ms, round_=0, allocator=None):
    row = dict(
        impl=impl, config="tiny224", masks="official", round=round_, step_ms=step_ms,
        images_per_s=8e3 / step_ms, model_flops=247e9, matmul_gflops=300.0,
        context_tokens=66.2, target_tokens=31.5, peak_rss_mib=1024.0, first_step_s=None,
    )
    if allocator is not None:
        row["allocator"] = allocator
    return row


@pytest.fixture
def results(tmp_path, monkeypatch):
    folder = tmp_path / "compare_here"
    folder.mkdir()
    monkeypatch.setattr(compare_official, "RESULTS", str(folder))
    return folder


def _write(folder, name, row):
    (folder / f"{name}.json").write_text(json.dumps(row))


def test_table_of_another_folder__written_beside_it(results):
    _write(results, "a__r0", _row("official", 1000.0))
    _write(results, "b__r0", _row("ours-jax", 2000.0))
    compare_official.write_report()
    table = (results.parent / "compare_here.md").read_text()
    assert "| ours-jax | 2000 |" in table
    assert "| 0.50x |" in table


def test_mapped_files__shown_beside_peak_rss_only_where_read(results):
    _write(results, "a__r0", dict(_row("official", 1000.0), mapped_file_rss_mib=102.4))
    _write(results, "b__r0", dict(_row("ours-tensorflow", 800.0), peak_rss_mib=2048.0, mapped_file_rss_mib=450.0))
    _write(results, "c__r1", dict(_row("ours-tensorflow", 800.0, round_=1), peak_rss_mib=2000.0,
                                  mapped_file_rss_mib=460.8))
    _write(results, "d__r0", _row("ours-jax", 900.0))  # written before session 23
    compare_official.write_report()
    table = (results.parent / "compare_here.md").read_text()
    assert "| peak RSS GiB (mapped files) |" in table
    assert "| 1.00 (0.10) |" in table  # the official row
    assert "| 2.00 (0.45) |" in table  # the larger of each over its rounds
    jax = next(line for line in table.splitlines() if "| ours-jax |" in line)
    assert jax.endswith("| 1.00 |")


def test_no_mapped_files_read__header_unchanged(results):
    _write(results, "a__r0", _row("official", 1000.0))
    compare_official.write_report()
    assert "| first step s | peak RSS GiB |" in (results.parent / "compare_here.md").read_text()


def test_ratio_taken_against_the_official_step_of_the_same_allocator(results):
    # Rows without an allocator (written before the option) count as glibc's.
    _write(results, "a__r0", _row("official", 1000.0))
    _write(results, "b__r0", _row("ours-jax", 2000.0))
    _write(results, "c__tcmalloc__r0", _row("official", 800.0, allocator="tcmalloc"))
    _write(results, "d__tcmalloc__r0", _row("ours-jax", 1000.0, allocator="tcmalloc"))
    compare_official.write_report()
    lines = (results.parent / "compare_here.md").read_text().splitlines()
    jax = [line for line in lines if "ours-jax" in line]
    assert len(jax) == 2
    assert "| ours-jax, system | 2000 |" in jax[0] and "| 0.50x |" in jax[0]
    assert "| ours-jax, tcmalloc | 1000 |" in jax[1] and "| 0.80x |" in jax[1]


def test_default_folder__table_read_into_benchmarks_md():
    path = compare_official.table_path(compare_official.DEFAULT_RESULTS)
    assert path.endswith(os.path.join("results", "compare_official.md"))


def test_tcmalloc__given_path_used_and_missing_one_refused(tmp_path, monkeypatch):
    lib = tmp_path / "libtcmalloc.so"
    lib.write_bytes(b"")
    monkeypatch.setenv("KFP_TCMALLOC", str(lib))
    assert compare_official.find_tcmalloc() == str(lib)
    env = compare_official.allocator_env({"LD_PRELOAD": "/x/other.so"}, "tcmalloc")
    assert env["LD_PRELOAD"] == f"{lib} /x/other.so"
    assert compare_official.allocator_env({"A": "1"}, "system") == {"A": "1"}
    monkeypatch.setenv("KFP_TCMALLOC", str(tmp_path / "missing.so"))
    assert compare_official.find_tcmalloc() is None


def test_hugepages__adds_glibc_tunable_keeping_the_others():
    env = compare_official.allocator_env({"A": "1"}, "hugepages")
    assert env == {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    env = compare_official.allocator_env(
        {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"}, "hugepages"
    )
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


def test_one_arena__sets_malloc_arena_max_keeping_the_rest():
    assert compare_official.allocator_env({"A": "1", "MALLOC_ARENA_MAX": "8"}, "one-arena") == {
        "A": "1", "MALLOC_ARENA_MAX": "1",
    }


def test_unknown_allocator_refused_with_the_choices(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["compare_official", "--allocators", "system,two-arenas"])
    monkeypatch.setattr(compare_official, "drive", lambda args: pytest.fail("ran cells"))
    with pytest.raises(SystemExit):
        compare_official.main()
    err = capsys.readouterr().err
    assert "unknown allocator 'two-arenas'" in err and "'one-arena'" in err


def test_slots_column__names_jax_length_buckets(results):
    _write(results, "a__r0", _row("official", 1000.0))
    jax = dict(_row("ours-jax", 1200.0), context_slots=77, target_slots=36,
               length_buckets=[[57, 36], [65, 36], [74, 30], [77, 36]])
    torch = dict(_row("ours-torch", 900.0), context_slots=77, target_slots=36, length_buckets=None)
    _write(results, "b__r0", jax)
    _write(results, "c__r0", torch)
    compare_official.write_report()
    table = (results.parent / "compare_here.md").read_text()
    assert "66.2 / 31.5 (77 / 36, 4 length buckets) |" in table
    assert "66.2 / 31.5 (77 / 36) |" in table


def test_single_backend_cells__each_right_after_its_backend():
    assert compare_official.implementations(["jax", "tensorflow"], ["ours-jax-only"]) == [
        "official", "ours-jax", "ours-jax-only", "ours-tensorflow",
    ]
    assert compare_official.implementations(["tensorflow"], ["ours-torch-only"]) == [
        "official", "ours-torch-only", "ours-tensorflow",
    ]
    assert compare_official.implementations(["torch"]) == ["official", "ours-torch"]
    assert compare_official.implementations(
        ["torch", "tensorflow"], ["ours-tensorflow-only", "ours-torch-only"]
    ) == ["official", "ours-torch", "ours-torch-only", "ours-tensorflow", "ours-tensorflow-only"]


def test_single_backend_cells__missing_interpreter_refused_before_any_run(monkeypatch, capsys):
    missing = "/nonexistent/.venv-jax-only/bin/python"
    monkeypatch.setattr("sys.argv", ["compare_official", "--jax-only-python", missing])
    monkeypatch.setattr(compare_official, "drive", lambda args: pytest.fail("ran cells"))
    with pytest.raises(SystemExit):
        compare_official.main()
    assert f"--jax-only-python {missing!r} does not exist (make jax-only-env)" in capsys.readouterr().err
    missing = "/nonexistent/.venv-tensorflow-only/bin/python"
    monkeypatch.setattr("sys.argv", ["compare_official", "--tensorflow-only-python", missing])
    with pytest.raises(SystemExit):
        compare_official.main()
    assert (
        f"--tensorflow-only-python {missing!r} does not exist (make tensorflow-only-env)"
        in capsys.readouterr().err
    )


def _fake_workers(monkeypatch):
    """Worker processes replaced by a result written at once; returns the list each
    worker call appends `(python, KERAS_BACKEND, label)` to."""
    calls = []
    real_run = compare_official.subprocess.run

    def fake_run(cmd, **kwargs):
        if "--worker" not in cmd:
            return real_run(cmd, **kwargs)
        out = next(a.split("=", 1)[1] for a in cmd if a.startswith("--out="))
        label = next(a.split("=", 1)[1] for a in cmd if a.startswith("--label="))
        calls.append((cmd[0], kwargs["env"]["KERAS_BACKEND"], label))
        with open(out, "w") as f:
            json.dump(dict(_row(label, 1000.0), masks="default"), f)

        class Done:
            returncode = 0

        return Done()

    monkeypatch.setattr(compare_official, "matmul_peak", lambda: {"torch_mm": 150.0, "onednn": 300.0})
    monkeypatch.setattr(compare_official.subprocess, "run", fake_run)
    return calls


def test_single_backend_cell__runs_with_its_interpreter_and_backend(results, tmp_path, monkeypatch):
    jax_only = tmp_path / "python"
    jax_only.write_text("")
    calls = _fake_workers(monkeypatch)
    monkeypatch.setattr(
        "sys.argv",
        ["compare_official", "--configs", "tiny64", "--masks", "default", "--backends", "jax", "--rounds", "1",
         "--jax-only-python", str(jax_only), "--results", str(results)],
    )
    monkeypatch.setattr(compare_official, "run_official", lambda *a: None)
    compare_official.main()
    assert calls == [
        (compare_official.sys.executable, "jax", "ours-jax"),
        (str(jax_only), "jax", "ours-jax-only"),
    ]


def test_backends_none__only_the_one_backend_cells(results, tmp_path, monkeypatch):
    torch_only = tmp_path / "python"
    torch_only.write_text("")
    calls = _fake_workers(monkeypatch)
    monkeypatch.setattr(compare_official, "run_official", lambda *a: None)
    monkeypatch.setattr(
        "sys.argv",
        ["compare_official", "--configs", "tiny64", "--masks", "default", "--backends", "none", "--rounds", "1",
         "--torch-only-python", str(torch_only), "--results", str(results)],
    )
    compare_official.main()
    assert calls == [(str(torch_only), "torch", "ours-torch-only")]


def test_backends_none_without_a_one_backend_python__refused(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["compare_official", "--backends", "none"])
    monkeypatch.setattr(compare_official, "drive", lambda args: pytest.fail("ran cells"))
    with pytest.raises(SystemExit):
        compare_official.main()
    assert "--backends none runs only the one-backend cells" in capsys.readouterr().err


def test_remat_blocks_variant__its_environment_and_its_one_backend_cell_only_beside_it():
    env = compare_official.backend_environment({}, "tensorflow-remat-blocks")
    assert env == {"KERAS_BACKEND": "tensorflow", compare_official.REMAT_BLOCKS: "1"}
    pythons = {"tensorflow_only_python": "py", "torch_only_python": None}
    assert compare_official.one_backend_cells(["tensorflow"], pythons) == ["ours-tensorflow-only"]
    cells = compare_official.one_backend_cells(["tensorflow", "tensorflow-remat-blocks"], pythons)
    assert cells == ["ours-tensorflow-only", "ours-tensorflow-only-remat-blocks"]
    assert compare_official.implementations(["tensorflow", "tensorflow-remat-blocks"], cells) == [
        "official", "ours-tensorflow", "ours-tensorflow-only", "ours-tensorflow-remat-blocks",
        "ours-tensorflow-only-remat-blocks",
    ]
