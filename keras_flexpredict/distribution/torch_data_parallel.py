"""Data-parallel `model.fit` on the torch backend across `torch.distributed` processes.

Moved to `keras_flexpredict.callbacks.torch_data_parallel` (`FlexPredict.fit` adds it,
and models never import `distribution/`). Re-exported here, where it was.
"""

from keras_flexpredict.callbacks.torch_data_parallel import TorchDataParallel

__all__ = ["TorchDataParallel"]
