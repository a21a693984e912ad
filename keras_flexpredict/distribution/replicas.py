"""Which data-parallel replica is running, per-replica seeds and loss scaling.

Moved: the replica context and loss scaling live in `keras_flexpredict.utils.backend_adapter`
and the per-replica seeds in `keras_flexpredict.utils.replicas` (layers use them, and
layers never import `distribution/`). Re-exported here, where they were.
"""

from keras_flexpredict.utils.replicas import _GOLDEN  # noqa: F401
from keras_flexpredict.utils.replicas import _ReplicaSeedGenerator  # noqa: F401
from keras_flexpredict.utils.replicas import fold_seed
from keras_flexpredict.utils.replicas import replica_context
from keras_flexpredict.utils.replicas import replica_seed
from keras_flexpredict.utils.replicas import scale_loss_for_replicas

__all__ = ["fold_seed", "replica_context", "replica_seed", "scale_loss_for_replicas"]
