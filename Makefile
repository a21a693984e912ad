# Two commands do all the set-up from a fresh clone:
#   make demo   create .venv, then pretrain StoP and I-JEPA on built-in data, probe, print, plot
#   make test   create .venv, then run the whole test suite once per backend
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# torch, JAX and TensorFlow take ~4.1 GiB in .venv; pip needs room to unpack on top.
VENV_MIN_FREE_GIB ?= 5
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv torch-only-env jax-only-env tensorflow-only-env test demo benchmark compare growth clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	@bash scripts/check_disk_space.sh . $(VENV_MIN_FREE_GIB)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[all]"
	touch $@

test: venv
	PYTHON=$(PY) bash scripts/run_tests.sh

demo: venv
	$(PY) -m recipes.demo

benchmark: venv
	$(PY) -m benchmarks.run_all

# Environments with one backend only, as its users install the package: `make compare`
# adds their cells `ours-torch-only`, `ours-jax-only` and `ours-tensorflow-only`
# (import-time memory differs).
# torch first from TORCH_SPEC (its CPU build), then the package with the backend's extra.
ONE_BACKEND_MIN_FREE_GIB ?= 2
TORCH_ONLY_VENV := .venv-torch-only
JAX_ONLY_VENV := .venv-jax-only
TENSORFLOW_ONLY_VENV := .venv-tensorflow-only
torch-only-env: $(TORCH_ONLY_VENV)/.installed
jax-only-env: $(JAX_ONLY_VENV)/.installed
tensorflow-only-env: $(TENSORFLOW_ONLY_VENV)/.installed

.venv-%-only/.installed: pyproject.toml requirements/constraints.txt
	@bash scripts/check_disk_space.sh . $(ONE_BACKEND_MIN_FREE_GIB) ONE_BACKEND_MIN_FREE_GIB
	$(PYTHON) -m venv .venv-$*-only
	.venv-$*-only/bin/python -m pip install --quiet --upgrade pip
	$(if $(filter torch,$*),.venv-$*-only/bin/python -m pip install --quiet "$(TORCH_SPEC)")
	.venv-$*-only/bin/python -m pip install --quiet -c requirements/constraints.txt -e ".[$*]"
	touch $@

# Our step beside the official StoP step (needs its clone in ../.mirror, see benchmarks/compare_official.py).
compare: venv torch-only-env jax-only-env tensorflow-only-env
	$(PY) -m benchmarks.compare_official --torch-only-python $(TORCH_ONLY_VENV)/bin/python \
		--jax-only-python $(JAX_ONLY_VENV)/bin/python --tensorflow-only-python $(TENSORFLOW_ONLY_VENV)/bin/python
	$(PY) -m benchmarks.run_all --report

# Our step against batch (8, 32, 64) and image size (128, 160, 224), per backend.
growth: venv
	$(PY) -m benchmarks.growth
	$(PY) -m benchmarks.run_all --report

clean:
	rm -rf $(VENV) $(TORCH_ONLY_VENV) $(JAX_ONLY_VENV) $(TENSORFLOW_ONLY_VENV) demo_output .pytest_cache
