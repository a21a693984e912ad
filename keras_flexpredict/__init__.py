"""keras_flexpredict: stochastic positional embeddings (StoP / FlexPredict) on I-JEPA, for Keras 3."""

import importlib

from keras_flexpredict.utils.keras_import import import_keras

import_keras()  # before any module of ours imports Keras: see `utils.keras_import`

from keras_flexpredict import callbacks
from keras_flexpredict import distribution
from keras_flexpredict import layers
from keras_flexpredict import losses
from keras_flexpredict import models
from keras_flexpredict import optimizers
from keras_flexpredict.version import __version__

_LAZY = ("data", "evaluation", "convert")  # imported on first use (TensorFlow / scikit-learn / torch)


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"keras_flexpredict.{name}")
    raise AttributeError(f"module 'keras_flexpredict' has no attribute {name!r}")
