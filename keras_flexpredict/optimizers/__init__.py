"""The I-JEPA optimiser (AdamW with scheduled weight decay) and its schedules."""

from keras_flexpredict.optimizers.cosine_weight_decay import CosineWeightDecay
from keras_flexpredict.optimizers.jepa_adamw import JEPAAdamW
from keras_flexpredict.optimizers.make_jepa_optimizer import make_jepa_optimizer
from keras_flexpredict.optimizers.warmup_cosine_decay import WarmupCosineDecay

__all__ = [
    "CosineWeightDecay",
    "JEPAAdamW",
    "WarmupCosineDecay",
    "make_jepa_optimizer",
]
