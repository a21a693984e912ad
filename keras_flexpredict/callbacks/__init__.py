"""Callbacks: the EMA target-encoder schedule, training diagnostics, an online probe."""

from keras_flexpredict.callbacks.ema_target_callback import EMATargetCallback
from keras_flexpredict.callbacks.online_probe import OnlineProbe
from keras_flexpredict.callbacks.training_diagnostics import TrainingDiagnostics
