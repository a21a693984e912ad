"""Saving from distributed runs: gather to the host, write once, atomically.

Moved to `keras_flexpredict.utils.distributed_saving` (models export through it, and
models never import `distribution/`); the per-backend process facts live in
`keras_flexpredict.utils.backend_adapter`. Re-exported here, where they were.
"""

from keras_flexpredict.utils.distributed_saving import barrier
from keras_flexpredict.utils.distributed_saving import host_state
from keras_flexpredict.utils.distributed_saving import is_chief
from keras_flexpredict.utils.distributed_saving import process_index
from keras_flexpredict.utils.distributed_saving import save_model
from keras_flexpredict.utils.distributed_saving import save_weights
from keras_flexpredict.utils.distributed_saving import tf_config

__all__ = ["barrier", "host_state", "is_chief", "process_index", "save_model", "save_weights", "tf_config"]
