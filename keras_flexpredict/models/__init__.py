"""Models: the ViT encoder, the JEPA predictor, the trainable FlexPredict system and
a classifier for fine-tuning."""

from keras_flexpredict.models.jepa_predictor import JEPAPredictor
from keras_flexpredict.models.vit_encoder import ViTEncoder
from keras_flexpredict.models.flex_predict import FlexPredict
from keras_flexpredict.models.vit_classifier import ViTClassifier
