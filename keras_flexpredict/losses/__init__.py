"""Losses: the JEPA regression loss over predicted and target tokens."""

from keras_flexpredict.losses.jepa_loss import LOSSES
from keras_flexpredict.losses.jepa_loss import jepa_loss
