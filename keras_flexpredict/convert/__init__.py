"""Pretrained weights in: official I-JEPA / StoP `.pth.tar` checkpoints and Hugging
Face I-JEPA folders to Keras models (`python -m keras_flexpredict.convert` is the CLI).

Most users call `kfp.models.ViTEncoder.from_preset(source)`,
`ViTEncoder.from_official_checkpoint(path)` or
`FlexPredict.from_official_checkpoint(path)`; see docs/pretrained.md.
"""

from keras_flexpredict.convert.huggingface import hf_encoder
from keras_flexpredict.convert.official import official_encoder
from keras_flexpredict.convert.official import official_flexpredict
from keras_flexpredict.convert.official import read_official_checkpoint
from keras_flexpredict.convert.positional_tables import positional_table_for_grid
from keras_flexpredict.convert.sources import load_encoder
from keras_flexpredict.convert.sources import load_flexpredict
