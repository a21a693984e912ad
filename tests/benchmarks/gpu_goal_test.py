"""Issue 9's GPU measurement script: its table, its checks, and one tiny cell on a CPU
(no timing is asserted)."""

import json
import os
import subprocess

import keras
import pytest

from benchmarks import gpu_goal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STOP_CLONE = os.path.join(ROOT, "..", ".mirror", "amirbar+StoP", "repo")
PEERS = os.path.join(ROOT, "..", "shared", "peers")
TINY = ["--size", "tiny", "--image", "64", "--patch", "8", "--min-keep", "4", "--batch", "2",
        "--warmup", "0", "--steps", "1", "--precision", "float32"]


def _row(impl, batch, images_per_s, **extra):
    row = dict(impl=impl, batch=batch, oom=False, step_ms=1e3 * batch / images_per_s,
               images_per_s=images_per_s, model_tflops_per_s=100.0, mfu=0.4, peak_memory_mib=4096.0,
               context_tokens=54.0, target_tokens=30.0, first_step_s=None)
    return dict(row, **extra)


def test_report__each_cell_against_the_official_step_at_its_own_batch():
    rows = [_row("official-ckpt-off", 64, 500.0), _row("official-ckpt-off", 128, 600.0),
            _row("ours-torch", 64, 550.0, aten_ops=[3000, 1500]), _row("ours-torch", 128, 540.0),
            _row("ours-jax", 256, 900.0), dict(impl="ours-jax", batch=512, oom=True)]
    lines = gpu_goal.report(["bf16 matmul peak: 790 TFLOP/s"] + ["RESULT " + json.dumps(r) for r in rows])
    lines = lines.splitlines()
    torch_64, torch_128, jax_256, jax_512 = lines[4], lines[5], lines[6], lines[7]
    assert "| 1.10x |" in torch_64 and torch_64.endswith("| 1500 |")
    assert "| 0.90x |" in torch_128
    assert "| - |" in jax_256  # no official cell at that batch
    assert "does not fit" in jax_512


@pytest.mark.parametrize(
    "args, message",
    [(dict(size="huge"), "size='huge'"), (dict(image=225), "image=225"), (dict(batch=0), "batch=0")],
)
def test_config__bad_values_named(args, message):
    kwargs = dict(dict(size="base", image=224, patch=16, batch=64), **args)
    with pytest.raises(ValueError, match=message):
        gpu_goal.config(**kwargs)


def test_official_without_its_source__clear_error_before_any_work(monkeypatch):
    monkeypatch.delenv("OFFICIAL_SRC", raising=False)
    with pytest.raises(SystemExit, match="--official-src"):
        gpu_goal.main(["--impl", "official"] + TINY)


def test_out_of_memory_errors_recognised():
    assert gpu_goal.is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert gpu_goal.is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate"))
    assert not gpu_goal.is_out_of_memory(ValueError("shapes (2, 3) and (4, 5) are incompatible"))


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="one backend is enough for the smoke test")
def test_one_tiny_cell_of_ours__result_line(capsys):
    assert gpu_goal.main(["--impl", "ours", "--count-ops"] + TINY) == 0
    result = json.loads(capsys.readouterr().out.split("RESULT ", 1)[1])
    assert result["impl"] == "ours-torch" and result["oom"] is False
    assert result["images_per_s"] > 0 and result["flops"] > 0
    assert 0 < result["context_tokens"] <= result["context_slots"]
    total, launching = result["aten_ops"]
    assert 0 < launching < total


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the official side runs on torch alone")
@pytest.mark.skipif(not (os.path.isdir(STOP_CLONE) and os.path.isdir(PEERS)), reason="needs ../.mirror and ../shared/peers")
def test_one_tiny_cell_of_the_official_step__result_line(tmp_path, capsys):
    archive = subprocess.run(["git", f"--git-dir={STOP_CLONE}", "archive", "HEAD", "main.py", "src", "configs"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive, check=True)
    assert gpu_goal.main(["--impl", "official", "--official-src", str(tmp_path), "--peers", PEERS] + TINY) == 0
    result = json.loads(capsys.readouterr().out.split("RESULT ", 1)[1])
    assert result["impl"] == "official-ckpt-off" and result["images_per_s"] > 0


def test_masks_the_official_collator_would_redraw_forever__refused_before_any_work():
    with pytest.raises(ValueError, match="min_keep=2"):
        gpu_goal.main(["--impl", "official", "--official-src", "/nonexistent", "--size", "tiny", "--image", "32",
                       "--patch", "8", "--min-keep", "2"])
