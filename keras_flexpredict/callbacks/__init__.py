"""Callbacks: the EMA target-encoder schedule."""

from keras_flexpredict.callbacks.ema_target_callback import EMATargetCallback
