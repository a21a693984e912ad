"""Multi-device and multi-host pretraining through each backend's own engine:
`keras.distribution` (JAX), `tf.distribute` (TensorFlow), `torch.distributed` (torch).

Start with `configure(spec)`; see docs/distribution.md.
"""

from keras_flexpredict.distribution.configure import SPECS
from keras_flexpredict.distribution.configure import configure
from keras_flexpredict.distribution.data import local_batch_rows
from keras_flexpredict.distribution.data import shard_global_batches
from keras_flexpredict.distribution.distribution_context import DistributionContext
from keras_flexpredict.distribution.layout_map import VIT_SHARDING_RULES
from keras_flexpredict.distribution.layout_map import vit_layout_map
from keras_flexpredict.distribution.replicas import fold_seed
from keras_flexpredict.distribution.replicas import replica_context
from keras_flexpredict.distribution.replicas import replica_seed
from keras_flexpredict.distribution.replicas import scale_loss_for_replicas
from keras_flexpredict.distribution.saving import barrier
from keras_flexpredict.distribution.saving import host_state
from keras_flexpredict.distribution.saving import is_chief
from keras_flexpredict.distribution.saving import process_index
from keras_flexpredict.distribution.saving import save_model
from keras_flexpredict.distribution.saving import save_weights
from keras_flexpredict.distribution.torch_data_parallel import TorchDataParallel
