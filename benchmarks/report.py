"""Builds BENCHMARKS.md from benchmarks/results/ (write-then-rename)."""

import json
import os
import platform

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _load(name):
    path = os.path.join(HERE, "results", name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def _read(name):
    path = os.path.join(HERE, "results", name)
    return open(path).read().strip() if os.path.exists(path) else "_not measured yet_"


def _forward_table(rows):
    out = ["| backend | device | masker ms | encoder ms | predictor ms |", "|---|---|---|---|---|"]
    for r in rows:
        if r["what"] == "forward":
            out.append(
                f"| {r['backend']} | {r['device']} | {r['masker_ms']:.2f} | {r['encoder_ms']:.1f} | {r['predictor_ms']:.1f} |"
            )
    return "\n".join(out)


def _train_table(rows):
    out = [
        "| backend | device | model | variant | step ms | images/s | first step (compile) s | peak memory MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["what"] == "train":
            out.append(
                f"| {r['backend']} | {r['device']} | ViT-{r['size'].capitalize()}/16 | {r['variant']} | "
                f"{r['step_ms']:.1f} | {r['images_per_s']:.1f} | {r['first_step_s']:.1f} | {r['peak_memory_mb']:.0f} |"
            )
    return "\n".join(out)


def _ratios(rows):
    """StoP over I-JEPA and the EMA's share of a step, per backend and size."""
    out = ["| backend | device | model | StoP / I-JEPA step | EMA share of StoP step |", "|---|---|---|---|---|"]
    index = {(r["backend"], r["device"], r["size"], r["variant"]): r for r in rows if r["what"] == "train"}
    for (backend, device, size, variant), r in sorted(index.items()):
        if variant != "stop":
            continue
        ij = index.get((backend, device, size, "ijepa"))
        no = index.get((backend, device, size, "stop_no_ema"))
        ratio = f"{r['step_ms'] / ij['step_ms']:.3f}" if ij else "-"
        share = f"{(r['step_ms'] - no['step_ms']) / r['step_ms'] * 100:+.1f}%" if no else "-"
        out.append(f"| {backend} | {device} | ViT-{size.capitalize()}/16 | {ratio} | {share} |")
    return "\n".join(out)


def _gpu_goal():
    """The table of `benchmarks/gpu_goal.sh`'s log, with the GPU and peak lines above it."""
    path = os.path.join(HERE, "results", "gpu_goal", "gpu_goal.txt")
    if not os.path.exists(path):
        return "_not measured yet: no GPU has been lent since the script was written (session 27)_"
    from benchmarks.gpu_goal import report

    lines = open(path).read().splitlines()
    header = [line for line in lines[:3] if not line.startswith("RESULT ")]
    return "\n".join(header + [""] + [report(lines)])


def write_benchmarks_md():
    cpu, gpu = _load("cpu.jsonl"), _load("gpu_h100.jsonl")
    text = TEMPLATE.format(
        cpu_section=CPU_SECTION.format(
            cpu_forward=_forward_table(cpu), cpu_train=_train_table(cpu), cpu_ratios=_ratios(cpu)
        )
        if cpu
        else "",
        gpu_forward=_forward_table(gpu) if gpu else "_not measured yet_",
        gpu_train=_train_table(gpu) if gpu else "_not measured yet_",
        gpu_ratios=_ratios(gpu) if gpu else "_not measured yet_",
        gpu_info=_read("gpu_h100_info.txt"),
        gpu_goal=_gpu_goal(),
        masker=_read("masker_statistics.md"),
        compare=_read("compare_official.md"),
        compare_reading=_read("compare_official_reading.md"),
        compare_intel=_read("compare_intel.md"),
        compare_intel_reading=_read("compare_intel_reading.md"),
        compare_epyc=_read("compare_epyc.md"),
        compare_epyc_reading=_read("compare_epyc_reading.md"),
        compare_epyc_buckets=_read("compare_epyc_buckets.md"),
        compare_epyc_buckets_reading=_read("compare_epyc_buckets_reading.md"),
        compare_hugepages=_read("compare_hugepages.md"),
        compare_hugepages_reading=_read("compare_hugepages_reading.md"),
        compare_emitters=_read("compare_emitters.md"),
        compare_emitters_reading=_read("compare_emitters_reading.md"),
        compare_remat=_read("compare_remat.md"),
        compare_remat_tf_only=_read("compare_remat_tf_only.md"),
        compare_remat_reading=_read("compare_remat_reading.md"),
        compare_tf_block_functions=_read("compare_tf_block_functions.md"),
        compare_tf_function_remat=_read("compare_tf_function_remat.md"),
        compare_tf_block_functions_reading=_read("compare_tf_block_functions_reading.md"),
        compare_tf_only=_read("compare_tf_only.md"),
        compare_tf_only_reading=_read("compare_tf_only_reading.md"),
        compare_jax_only=_read("compare_jax_only.md"),
        compare_jax_only_reading=_read("compare_jax_only_reading.md"),
        compare_jax_memory=_read("compare_jax_memory.md"),
        compare_jax_memory_default=_read("compare_jax_memory_default.md"),
        compare_jax_memory_reading=_read("compare_jax_memory_reading.md"),
        compare_zen4_s28=_read("compare_zen4_s28.md"),
        compare_zen4_s28_reading=_read("compare_zen4_s28_reading.md"),
        compare_zen5_s23=_read("compare_zen5_s23.md"),
        compare_zen5_s23_reading=_read("compare_zen5_s23_reading.md"),
        compare_zen5_s22=_read("compare_zen5_s22.md"),
        compare_zen5_s22_reading=_read("compare_zen5_s22_reading.md"),
        compare_zen5_s20=_read("compare_zen5_s20.md"),
        compare_zen5_s20_reading=_read("compare_zen5_s20_reading.md"),
        compare_zen5_s19=_read("compare_zen5_s19.md"),
        compare_zen5_s19_reading=_read("compare_zen5_s19_reading.md"),
        compare_zen5_before=_read("compare_zen5_before.md"),
        compare_zen5_before_reading=_read("compare_zen5_before_reading.md"),
        compare_epyc_s16=_read("compare_epyc_s16.md"),
        compare_epyc_s16_reading=_read("compare_epyc_s16_reading.md"),
        compare_epyc_s15=_read("compare_epyc_s15.md"),
        compare_epyc_s15_reading=_read("compare_epyc_s15_reading.md"),
        compare_epyc_s13=_read("compare_epyc_s13.md"),
        compare_epyc_s13_reading=_read("compare_epyc_s13_reading.md"),
        growth=_read("growth.md"),
        growth_reading=_read("growth_reading.md"),
        growth_zen5_s19=_read("growth_zen5_s19.md"),
        growth_zen5_s19_reading=_read("growth_zen5_s19_reading.md"),
        growth_epyc_s16=_read("growth_epyc_s16.md"),
        growth_epyc_s16_reading=_read("growth_epyc_s16_reading.md"),
        growth_epyc_s13=_read("growth_epyc_s13.md"),
        growth_epyc_s13_reading=_read("growth_epyc_s13_reading.md"),
        growth_intel=_read("growth_intel.md"),
        growth_intel_reading=_read("growth_intel_reading.md"),
        cpu_findings=_read("cpu_findings.md"),
        data=_read("data_pipeline.md"),
        python=platform.python_version(),
    )
    path = os.path.join(ROOT, "BENCHMARKS.md")
    # Imported here: reading the results needs no Keras.
    from keras_flexpredict.utils.atomic_write import atomic_write_text

    atomic_write_text(path, text)
    print(f"wrote {path}")


# `python -m benchmarks.run_all` on CPU (cpu.jsonl); left out until it has run.
CPU_SECTION = """## CPU: 2 cores (the development machine), `benchmarks.run_all`

### Forward, ViT-Tiny/16, batch 8

{cpu_forward}

### Train step

{cpu_train}

{cpu_ratios}

"""

TEMPLATE = """# Benchmarks

Generated by `python -m benchmarks.run_all` (CPU) and `benchmarks/gpu_benchmark.sh` (GPU)
from the raw results in `benchmarks/results/`; rebuild with
`python -m benchmarks.run_all --report`. Numbers are what was measured, once, on the
machines named; no figure here is asserted by a test.

Set-up: ViT-Tiny/16 and ViT-Small/16 encoders at 224 px, batch 8, with the ViT-B recipe's
predictor (width 384, depth 6, heads = encoder heads) and masker (4 targets, 14x14 grid,
`Kc` = 91, `Kt` = 40 static slots). `stop` = StoP (tied covariance, sigma 0.25), `ijepa` =
the deterministic baseline, `stop_no_ema` = StoP with the in-step EMA update removed (to
measure its cost). Train steps run through `model.fit` (JAX: jitted step, the transformer
stacks as one rematerialised scan; TF: `tf.function`, traced once, which Keras runs
without XLA on a CPU-only machine, with TF's fused `ResourceApplyAdam`, each block's
LayerNorms and GELU as small XLA-compiled functions and the padding slots cut in the
graph; torch: eager, the blocks as plain torch functions and a fused CPU Adam);
the step time is the median after the first two steps; the first step includes
compilation. Software: Keras 3.15.1; CPU: jax/jaxlib 0.10.2, torch
2.13.0+cpu, TensorFlow 2.21, Python {python}; GPU: jax 0.11.2, torch 2.11.0+cu130 (no
TensorFlow on that machine).

## GPU: one NVIDIA H100 80GB

{gpu_info}

### Forward, ViT-Tiny/16, batch 8

{gpu_forward}

### Train step

{gpu_train}

{gpu_ratios}

Reading these: at batch 8 an H100 is idle most of a step, so the step times measure
dispatch and launch overhead more than arithmetic; differences of a few percent between
variants are within run-to-run noise (ViT-Tiny I-JEPA coming out *slower* than StoP shows
the size of that noise). What holds up: JAX's compiled step is 10-12x faster than the
torch backend's eager step (13 ms vs 158 ms at ViT-S); the in-step EMA costs JAX about
1.3 ms (9.5% of the ViT-S step, under the 10% budget). The torch EMA row was measured
before the EMA moved to torch's multi-tensor kernels (`torch._foreach_*`), which replace
~150 per-weight eager updates by a few fused launches; it has not been re-measured on a
GPU since.

## GPU: the issue's goal, ViT-B/16 in bfloat16 beside the official step

`bash benchmarks/prepare_gpu_carry.sh` here, then `bash benchmarks/gpu_goal.sh` on a lent
GPU machine (device `run` with `carry=[".whl", ".carry"]` and `timeout_s=590`; planned to
take 6-8 minutes, not yet run; copy the `gpu_goal.txt` it returns into
`benchmarks/results/gpu_goal/` and rebuild this file):
ViT-B/16 at 224 px, the ViT-B recipe's predictor, bfloat16 autocast with float32
weights on both sides (Keras's `mixed_bfloat16`; the official config's `use_float16`),
the official collator's mask distribution on both sides, one batch already on the GPU
fed every step, the batch grown through 256 / 1024 / 4096 until it no longer fits. MFU
is model FLOPs on real tokens over the bfloat16 matmul peak measured on the same GPU.
The official step runs from its own repository's files (`--ckpt off`: activation
checkpointing bypassed as in the CPU comparison; `official`: as shipped).

{gpu_goal}

## CPU: ours beside the official StoP step

`python -m benchmarks.compare_official` (`make compare`): the official StoP `train_step`
(activation checkpointing off) run from its own clone by `../shared/peers`, and ours
through `model.fit` on each backend, one process per cell, in the same run. Masks
`official`: ours replays the exact masks of the official run (same work on the same real
tokens); JAX runs each batch at the cheapest of its compiled slot sizes that holds its
masks (length buckets, since session 12; the tables of sessions 10 and 11 below ran
every JAX batch at the full static slots), eager torch cuts each step's slots to its
longest mask (until session 18; since session 19 it keeps the static slots on AMD CPUs,
where its blocks' Dense layers run as oneDNN matmuls), TensorFlow to its longest mask
rounded up to a multiple of an eighth of the slots. Every implementation runs 10 warm-up steps before the 8 timed ones.
`reference`: `MultiBlockMasker(reference=True)` truncated per batch, as the official code
at this batch. `default`: the library's flaw-free masks (more tokens than the official
ones, so compare their MFU, not their step time, with the official step). MFU = model
FLOPs on real tokens / step time / the fp32 matmul peak measured in the same round
(since session 19 the faster of torch.mm, i.e. MKL, and oneDNN's matmul; before, torch.mm
alone, which on the Zen 4 and Intel VMs ran as fast as any).

### Now: every backend on a 2-core AMD EPYC (Zen 5) VM, official and default masks

`python -m benchmarks.compare_official --masks official,default --backends
torch,jax,tensorflow,tensorflow-keep-activations --torch-only-python
.venv-torch-only/bin/python --jax-only-python .venv-jax-only/bin/python
--tensorflow-only-python .venv-tensorflow-only/bin/python` (`make compare` without the
last backend; two rounds; raw results in `benchmarks/results/compare`), glibc's malloc
(the system allocator) for every cell. Session 26, the code of session 26: TensorFlow's
blocks rematerialised by default, `ours-tensorflow-keep-activations` the same model
built under `keras.RematScope(mode=None)` (session 25's default step); every backend
also in an install of its own (`-only`), and the part of each peak RSS that was mapped
files (shared libraries) in parentheses. The VM of sessions 19-25: a 2-core AMD EPYC of
CPU family 26 (Zen 5, full-width AVX-512), where MKL's `sgemm` (torch.mm, the official
step's matmuls) runs at about half the speed of oneDNN's and XLA's float32 matmuls.

{compare}

{compare_reading}

### Session 28: a 2-core AMD EPYC Zen 4 VM (CPU family 25), each backend installed alone, official masks

`python -m benchmarks.compare_official --masks official --backends none
--torch-only-python .venv-torch-only/bin/python --jax-only-python
.venv-jax-only/bin/python --tensorflow-only-python .venv-tensorflow-only/bin/python
--results benchmarks/results/compare_zen4_s28` (raw results there), the code of session
28, glibc's malloc. The VM of this session: CPU family 25, model 17 (Zen 4, AVX-512 on
256-bit units), where MKL's `sgemm` (the official step's matmuls) runs the model's
shapes about as fast as oneDNN's and XLA's matmuls, so the step's arithmetic speed gives
no backend the lead it has on Zen 5.

{compare_zen4_s28}

{compare_zen4_s28_reading}

### Session 23: every backend, before TensorFlow's step changed in sessions 24-26

The same command without `tensorflow-keep-activations` (raw results in
`benchmarks/results/compare_zen5_s23`), the code of session 22: TensorFlow's blocks
inlined into its step and keeping their activations, before the freed heap was handed
back (session 24).

{compare_zen5_s23}

{compare_zen5_s23_reading}

### Session 25: TensorFlow's blocks as shared functions, called and not inlined

The same VM, the code of session 25: on TensorFlow every transformer block runs as two
functions of its tokens and weights (forward, returning four tensors for the backward
pass; backward, recomputing the LayerNorms, the attention probabilities and the GELU),
shared by every block of the same structure and called, not inlined, from the step
(`utils/_tf_block._BlockFunctions`); under a `keras.RematScope` the backward function
computes the block again from its input. TensorFlow and the official step only,
official masks, two rounds: `python -m benchmarks.compare_official --masks official
--backends tensorflow,tensorflow-remat-blocks --tensorflow-only-python
.venv-tensorflow-only/bin/python --results benchmarks/results/compare_tf_block_functions`:

{compare_tf_block_functions}

The first sitting, with only the rematerialised blocks as functions (`--backends
tensorflow-remat-blocks`, `--results benchmarks/results/compare_tf_function_remat`):

{compare_tf_function_remat}

{compare_tf_block_functions_reading}

### Session 24: the freed heap handed back, and TensorFlow's blocks under a `keras.RematScope`

The same VM, the code of session 24: Keras's own train function (TensorFlow, torch)
hands the C heap's free memory back before its first call and after each of its first
two, and the cells `ours-tensorflow-remat-blocks` / `ours-tensorflow-only-remat-blocks`
build the model under `keras.RematScope(mode="list_of_layers", layer_names=["block_0",
...])`, so every transformer block's backward pass computes its activations again.
Official masks, two rounds each: `python -m benchmarks.compare_official --masks official
--backends torch,tensorflow,tensorflow-remat-blocks --torch-only-python
.venv-torch-only/bin/python --tensorflow-only-python .venv-tensorflow-only/bin/python
--results benchmarks/results/compare_remat`:

{compare_remat}

Then TensorFlow alone, `--backends tensorflow-remat-blocks --tensorflow-only-python
.venv-tensorflow-only/bin/python --results benchmarks/results/compare_remat_tf_only`:

{compare_remat_tf_only}

{compare_remat_reading}

### Session 23: TensorFlow in a TensorFlow-only install, and glibc's malloc with one arena

The same VM and code, TensorFlow and the official step only, official masks, every
cell once with glibc's default arenas and once with `MALLOC_ARENA_MAX=1` (the official
cell too): `python -m benchmarks.compare_official --masks official --backends tensorflow
--tensorflow-only-python .venv-tensorflow-only/bin/python --allocators system,one-arena
--results benchmarks/results/compare_tf_only` (2 rounds; `make tensorflow-only-env`
builds `.venv-tensorflow-only`, the package with its `tensorflow` extra only; `make
compare` adds the cell).

{compare_tf_only}

{compare_tf_only_reading}

### Session 22: JAX in a JAX-only install

The same VM and code, JAX and the official step only, official masks:
`python -m benchmarks.compare_official --masks official --backends jax
--jax-only-python .venv-jax-only/bin/python --results
benchmarks/results/compare_jax_only` (2 rounds; `make jax-only-env` builds
`.venv-jax-only`, the package with its `jax` extra only, as a JAX user installs it;
`make compare` adds the cell).

{compare_jax_only}

{compare_jax_only_reading}

### Session 21: JAX's memory, the default since session 21

The same VM, JAX and the official step only, the code of session 21 (see the reading
below): `python -m benchmarks.compare_official --masks official --backends
jax,jax-fusion-emitters --results benchmarks/results/compare_jax_memory` (2 rounds; run
as `--backends jax,jax-elemental-emitters` while the fusion emitters were still the
default, and relabelled), then the library's default masks, without an official cell:
`--configs tiny224,tiny64 --masks default --results
benchmarks/results/compare_jax_memory_default` (2 rounds).

{compare_jax_memory}

{compare_jax_memory_default}

{compare_jax_memory_reading}

### Session 22: every backend, the development environment's torch, JAX and TensorFlow

The same code, `--masks official,default --torch-only-python .venv-torch-only/bin/python`
(raw results in `benchmarks/results/compare_zen5_s22`), before the JAX-only and
TensorFlow-only cells joined the table and before it showed the mapped files.

{compare_zen5_s22}

{compare_zen5_s22_reading}

### Session 20: every backend, before JAX's elemental emitters

The same command (raw results in `benchmarks/results/compare_zen5_s20`), the code of
session 20: JAX's train step with XLA's fusion emitters, and JAX's compiled-program
caches kept.

{compare_zen5_s20}

{compare_zen5_s20_reading}

### Session 19: the Zen 5 VM, torch's Dense layers as oneDNN matmuls, before the activation-memory change

The same command (raw results in `benchmarks/results/compare_zen5_s19`), the code of
session 19: the eager torch blocks kept every LayerNorm's and GELU's output for the
backward pass.

{compare_zen5_s19}

{compare_zen5_s19_reading}

### Session 19, before the torch change: the Zen 5 VM with session 18's code

`python -m benchmarks.compare_official --configs tiny224 --masks official --allocators
system,hugepages --rounds 1 --results benchmarks/results/compare_zen5_before`.

{compare_zen5_before}

{compare_zen5_before_reading}

### Session 16: every backend on the 2-core AMD EPYC (Zen 4) VM of sessions 11-18

The same command (raw results in `benchmarks/results/compare_epyc_s16`), on the VM of
sessions 11-18, where torch.mm ran as fast as any float32 matmul; eager torch still
cut its slots per step, with MKL's matmuls.

{compare_epyc_s16}

{compare_epyc_s16_reading}

### Session 15: the same comparison, Keras's serializer still importing TensorFlow

The same command, on the Zen 4 VM of session 16 (raw results in
`benchmarks/results/compare_epyc_s15`).
Until session 16 the default-mask cells of torch and JAX imported all of TensorFlow (and
JAX) in the development environment: the harness builds a twin of the model's masker
from `get_config()`, and Keras's serializer asks `tf.available` (session 16:
`utils.keras_import` gives the serializer a view that does not import it). Their peak
memory in this table carries that ~0.5-0.7 GiB; the official-mask cells do not. Session
14's run (our cells fed an array of every step's images, JAX imported by Keras on torch)
is in `benchmarks/results/compare_epyc_s14.md`.

{compare_epyc_s15}

{compare_epyc_s15_reading}

### Session 13: the same comparison before the predictor's last block was cut

The same command, on the Zen 4 VM (raw results in `benchmarks/results/compare_epyc_s13`),
with the predictor's last block still computing every context token's output (session
14 computes only the target tokens' there; `TransformerBlock(outputs_from=...)`).

{compare_epyc_s13}

{compare_epyc_s13_reading}

### Session 10: the 2-core Intel VM of sessions 1-10, official, reference and default masks

`python -m benchmarks.compare_official --torch-only-python .venv-torch-only/bin/python
--results benchmarks/results/compare_intel` (run into the default folder then). JAX ran
every batch at the full static slots.

{compare_intel}

{compare_intel_reading}

### Session 11: the AMD EPYC VM, glibc's malloc and tcmalloc

The same comparison, official masks only, on a 2-core AMD EPYC VM (the machine of
session 11), every cell (the official one too) once with glibc's malloc and once with
tcmalloc preloaded (`scripts/with_tcmalloc.sh`):
`python -m benchmarks.compare_official --masks official --allocators system,tcmalloc
--results benchmarks/results/compare_epyc --torch-only-python .venv-torch-only/bin/python`.

{compare_epyc}

{compare_epyc_reading}

### Session 12: JAX with length buckets, on the same AMD EPYC VM

JAX's train function runs each batch at the cheapest of at most 4 compiled slot sizes
its masks fit (`FlexPredict(length_buckets=...)`, session 12; the table above ran every
batch at the full slots). JAX and the official step only, interleaved, both allocators:
`python -m benchmarks.compare_official --masks official --backends jax
--allocators system,tcmalloc --results benchmarks/results/compare_epyc_buckets`.

{compare_epyc_buckets}

{compare_epyc_buckets_reading}

### Session 17: glibc's malloc with transparent huge pages

The same VM, the official run's masks, every cell (the official one too) once with
glibc's malloc as it comes and once with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35; this VM's kernel has transparent
huge pages in `madvise` mode), interleaved: `python -m benchmarks.compare_official
--configs tiny224 --masks official --allocators system,hugepages
--results benchmarks/results/compare_hugepages` (2 + 2 rounds), then JAX alone at the
other two configurations (`--configs small224,tiny64 --backends jax --first-round 4`).

{compare_hugepages}

{compare_hugepages_reading}

### Session 18: JAX's train step compiled with XLA's elemental emitters

The same VM, the official run's masks, JAX and the official step only, glibc's malloc as
it comes: `ours-jax` compiles its train step with XLA:CPU's default (fusion) emitters,
`ours-jax-elemental-emitters` with `xla_cpu_use_fusion_emitters=False` (the opt-in
`KFP_XLA_FUSION_EMITTERS=0`, `keras_flexpredict/utils/xla_cpu_options.py`),
interleaved: `python -m benchmarks.compare_official --masks official --backends
jax,jax-elemental-emitters --results benchmarks/results/compare_emitters` (2 rounds;
run with the variants' labels swapped, relabelled after the opt-in was chosen), then
`--configs tiny224,tiny64 --first-round 2` (2 more rounds).

{compare_emitters}

{compare_emitters_reading}

## CPU: growth with batch and image size

`python -m benchmarks.growth` (`make growth`; 10 warm-up steps, then 4 timed): our step
alone (no official cell), one process per cell, on the 2-core AMD EPYC (Zen 5) VM of
sessions 19-21 (raw results in `benchmarks/results/growth`), the code of session 20 (the
JAX rows: session 21's; the TensorFlow rows: session 26's, its blocks rematerialised by
default).

{growth}

{growth_reading}

### Session 19: the same VM, before torch's activation-memory change

`python -m benchmarks.growth` (raw results in `benchmarks/results/growth_zen5_s19`);
the eager torch blocks kept every LayerNorm's and GELU's output for the backward pass.

{growth_zen5_s19}

{growth_zen5_s19_reading}

### Session 16: the 2-core AMD EPYC (Zen 4) VM of sessions 11-18

`python -m benchmarks.growth` (raw results in `benchmarks/results/growth_epyc_s16`);
eager torch cut its slots per step and ran MKL's matmuls.

{growth_epyc_s16}

{growth_epyc_s16_reading}

### Session 13: the Zen 4 VM, before the predictor's last block was cut

`python -m benchmarks.growth` (raw results in `benchmarks/results/growth_epyc_s13`).

{growth_epyc_s13}

{growth_epyc_s13_reading}

### Earlier: the Intel VM of sessions 1-10, before JAX's length buckets

`python -m benchmarks.growth --warmup 2` (raw results in
`benchmarks/results/growth_intel`).

{growth_intel}

{growth_intel_reading}

## CPU: what was tried for speed, and what it gave

{cpu_findings}

{cpu_section}## Multi-block masks (static shapes) vs the reference sampler

{masker}

## Input pipeline

{data}
"""
