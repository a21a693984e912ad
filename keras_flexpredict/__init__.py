"""keras_flexpredict: stochastic positional embeddings (StoP / FlexPredict) on I-JEPA, for Keras 3."""

from keras_flexpredict import callbacks
from keras_flexpredict import layers
from keras_flexpredict import models
from keras_flexpredict import optimizers
from keras_flexpredict.version import __version__
