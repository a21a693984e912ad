"""Models: the ViT encoder, the JEPA predictor and the trainable FlexPredict system."""

from keras_flexpredict.models.jepa_predictor import JEPAPredictor
from keras_flexpredict.models.vit_encoder import ViTEncoder
from keras_flexpredict.models.flex_predict import FlexPredict
