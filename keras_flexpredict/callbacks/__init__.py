"""Callbacks: the EMA target-encoder schedule and the non-finite guard."""

from keras_flexpredict.callbacks.ema_target_callback import EMATargetCallback
from keras_flexpredict.callbacks.non_finite_guard import NonFiniteGuard
from keras_flexpredict.callbacks.non_finite_guard import find_non_finite_weight
from keras_flexpredict.callbacks.non_finite_training_error import NonFiniteTrainingError
