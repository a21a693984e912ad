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

.PHONY: venv torch-only-env jax-only-env test demo benchmark compare growth clean

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

# A second environment with torch but no JAX or TensorFlow, as a torch user installs the
# package: `make compare` adds its cell `ours-torch-only` (import-time memory differs).
TORCH_ONLY_VENV ?= .venv-torch-only
TORCH_ONLY_MIN_FREE_GIB ?= 2
torch-only-env: $(TORCH_ONLY_VENV)/.installed

$(TORCH_ONLY_VENV)/.installed: pyproject.toml requirements/constraints.txt
	@bash scripts/check_disk_space.sh . $(TORCH_ONLY_MIN_FREE_GIB) TORCH_ONLY_MIN_FREE_GIB
	$(PYTHON) -m venv $(TORCH_ONLY_VENV)
	$(TORCH_ONLY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TORCH_ONLY_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(TORCH_ONLY_VENV)/bin/python -m pip install --quiet -c requirements/constraints.txt -e .
	touch $@

# The same with JAX alone (the package's `jax` extra): `make compare` adds `ours-jax-only`.
JAX_ONLY_VENV ?= .venv-jax-only
JAX_ONLY_MIN_FREE_GIB ?= 1
jax-only-env: $(JAX_ONLY_VENV)/.installed

$(JAX_ONLY_VENV)/.installed: pyproject.toml requirements/constraints.txt
	@bash scripts/check_disk_space.sh . $(JAX_ONLY_MIN_FREE_GIB) JAX_ONLY_MIN_FREE_GIB
	$(PYTHON) -m venv $(JAX_ONLY_VENV)
	$(JAX_ONLY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(JAX_ONLY_VENV)/bin/python -m pip install --quiet -c requirements/constraints.txt -e ".[jax]"
	touch $@

# Our step beside the official StoP step (needs its clone in ../.mirror, see benchmarks/compare_official.py).
compare: venv torch-only-env jax-only-env
	$(PY) -m benchmarks.compare_official --torch-only-python $(TORCH_ONLY_VENV)/bin/python \
		--jax-only-python $(JAX_ONLY_VENV)/bin/python
	$(PY) -m benchmarks.run_all --report

# Our step against batch (8, 32, 64) and image size (128, 160, 224), per backend.
growth: venv
	$(PY) -m benchmarks.growth
	$(PY) -m benchmarks.run_all --report

clean:
	rm -rf $(VENV) $(TORCH_ONLY_VENV) $(JAX_ONLY_VENV) demo_output .pytest_cache
