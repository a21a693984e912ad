"""Reusable layers: patchify, positional embeddings (fixed and stochastic), masks, blocks."""

from keras_flexpredict.layers.patch_embedding import PatchEmbedding
from keras_flexpredict.layers.sincos_positional_embedding import SinCosPositionalEmbedding
from keras_flexpredict.layers.sincos_positional_embedding import sincos_2d_positional_embedding
from keras_flexpredict.layers.stochastic_positional_embedding import StochasticPositionalEmbedding
from keras_flexpredict.layers.transformer_block import TransformerBlock
from keras_flexpredict.layers.multi_block_masker import MultiBlockMasker
