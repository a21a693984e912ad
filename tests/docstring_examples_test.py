"""Runs the `>>>` examples of every public module of `keras_flexpredict` under the
current Keras backend, one test per module.

Private modules (a path component starting with `_`) are skipped. An example that
needs the network, a GPU, a large download or a long training run carries
`# doctest: +SKIP` with a comment saying why; the same behaviour is tested elsewhere.
Examples see their module's globals plus `np`, `keras` and `ops`.
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_flexpredict

# Examples that fail in a module this branch does not own; fixed by its owner.
KNOWN_FAILING = {}


def _public_modules():
    names = []
    for info in pkgutil.walk_packages(keras_flexpredict.__path__, "keras_flexpredict."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]):
            continue
        names.append(info.name)
    return sorted(names)


def _examples(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    globs = dict(vars(module))
    globs.update(np=np, keras=keras, ops=keras.ops)
    tests = finder.find(module, module.__name__, globs=globs)
    # Only docstrings written in this module (not ones of imported objects).
    return [t for t in tests if t.examples and (t.filename or "") == (module.__file__ or "")]


MODULES = _public_modules()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_FAILING[n], strict=False))
        if n in KNOWN_FAILING
        else n
        for n in MODULES
    ],
)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in _examples(module):
        keras.utils.set_random_seed(0)
        keras.config.set_dtype_policy("float32")
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)


def test_every_public_module_is_collected():
    assert "keras_flexpredict.layers.transformer_block" in MODULES
    assert "keras_flexpredict.utils.validation" in MODULES
    assert not [n for n in MODULES if "._" in n]
