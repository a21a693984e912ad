"""Callbacks: the EMA target-encoder schedule, training diagnostics, an online probe,
and the non-finite guard."""

from keras_flexpredict.callbacks.ema_target_callback import EMATargetCallback
from keras_flexpredict.callbacks.non_finite_guard import NonFiniteGuard
from keras_flexpredict.callbacks.non_finite_guard import find_non_finite_weight
from keras_flexpredict.callbacks.non_finite_training_error import NonFiniteTrainingError
from keras_flexpredict.callbacks.online_probe import OnlineProbe
from keras_flexpredict.callbacks.training_diagnostics import TrainingDiagnostics
