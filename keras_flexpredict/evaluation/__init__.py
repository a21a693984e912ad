"""Evaluation of frozen encoders: feature extraction, linear probe (on fixed features, or
VISSL-style through the frozen encoder on augmented images), low-shot logistic
regression, kNN (optionally past the features' top principal directions), and JSON
results. The probe CLI is `keras_flexpredict.evaluation.cli`."""

from keras_flexpredict.evaluation.augmented_linear_probing import augmented_linear_probe
from keras_flexpredict.evaluation.feature_extraction import extract_features
from keras_flexpredict.evaluation.feature_extraction import extract_features_of_splits
from keras_flexpredict.evaluation.frozen_encoder_classifier import FrozenEncoderClassifier
from keras_flexpredict.evaluation.knn import knn_classifier
from keras_flexpredict.evaluation.linear_probing import linear_probe
from keras_flexpredict.evaluation.logistic_regression import logistic_regression_probe
from keras_flexpredict.evaluation.principal_components import remove_top_principal_components
from keras_flexpredict.evaluation.result_io import write_result_json
