"""The one module that uses Keras's private API (`keras.src` and private methods).

Everything else in keras_flexpredict uses public Keras API. What has no public
equivalent is imported or reached here, and `PRIVATE_API` lists every private name,
attribute and method the package relies on, with the signature it relies on and the
files that use it. `tests/utils/keras_internals_test.py` checks each entry against the
installed Keras and, when one changes, fails saying what changed and which file to
update; CI also runs it on the newest Keras release (`.ci/run`).

`keras>=3.10,<4` does not protect any of this: read this module first when a Keras
release breaks training.

Example:
>>> with no_autocast():
...     pass
"""

import contextlib
import dataclasses

from keras.src.backend import AutocastScope
from keras.src.layers.preprocessing.data_layer import DataLayer
from keras.src.utils.backend_utils import DynamicBackend
from keras.src.utils.tracking import no_automatic_dependency_tracking

__all__ = [
    "DataLayer",
    "DynamicBackend",
    "PRIVATE_API",
    "PrivateAPI",
    "no_autocast",
    "no_automatic_dependency_tracking",
    "optimizer_distribution_strategy",
    "optimizer_micro_iterations",
    "seed_generator_initial_seed",
    "set_initial_epoch",
    "swap_variable_value",
    "adam_slots",
    "all_layers_built",
    "layer_remat_mode",
    "torch_parallel_adam_step",
    "jax_state_sharding_spec",
    "make_step_function",
    "serializer_tensorflow_module",
    "wrap_serializer_tensorflow_module",
]


@dataclasses.dataclass(frozen=True)
class PrivateAPI:
    """One private Keras symbol, attribute or method we rely on.

    Args:
        owner: dotted path of the module or class that holds it (e.g.
            `"keras.optimizers.AdamW"`, resolved on the installed Keras).
        name: the attribute, method or symbol name.
        kind: `"symbol"` (imported name), `"method"` (a method we call or override;
            `params` is its parameter list) or `"attribute"` (an instance attribute,
            checked on an instance made by `keras_internals_test`).
        params: the parameter names we rely on, `self` included, for methods and
            callables; `None` to skip the signature check.
        users: the files of this repository to update if it changes.
        note: why we rely on it.
        backends: the Keras backends it exists on (`None`: all).
        source: `(dotted function path, text)`: Keras code whose source must contain
            `text` (a call or read we rely on happening), or `None`.
    """

    owner: str
    name: str
    kind: str
    params: tuple = None
    users: tuple = ()
    note: str = ""
    backends: tuple = None
    source: tuple = None


_OPTIMIZER = "keras_flexpredict/optimizers/jepa_adamw.py"
_CHECKPOINT = "recipes/atomic_model_checkpoint.py"
_BACKUP = "recipes/atomic_backup_and_restore.py"
_HERE = "keras_flexpredict/utils/keras_internals.py"
_ADAPTER = "keras_flexpredict/utils/backend_adapter.py"
_BUCKETS = "keras_flexpredict/utils/jax_length_buckets.py"
_IMPORT = "keras_flexpredict/utils/keras_import.py"

PRIVATE_API = (
    # -- imported names ------------------------------------------------------------
    PrivateAPI(
        "keras.src.backend", "AutocastScope", "symbol", ("self", "dtype"), (_HERE,),
        "no_autocast(): the EMA reads float32 weights in their own precision under a mixed policy",
    ),
    PrivateAPI(
        "keras.src.layers.preprocessing.data_layer", "DataLayer", "symbol", None,
        ("keras_flexpredict/layers/multi_block_masker.py",),
        "MultiBlockMasker runs inside tf.data on every backend (self.backend)",
    ),
    PrivateAPI(
        "keras.src.utils.backend_utils", "DynamicBackend", "symbol", ("self", "backend"),
        ("keras_flexpredict/layers/multi_block_masker.py",),
        "the masker samples with the ops of its DataLayer backend",
    ),
    PrivateAPI(
        "keras.src.saving.serialization_lib", "tf", "symbol", None, (_IMPORT, _HERE),
        "the serializer's lazy tensorflow module, whose `available` imports TensorFlow: "
        "wrapped so that serializing does not import it (utils.keras_import)",
        source=("keras.src.saving.serialization_lib.serialize_keras_object", "tf.available"),
    ),
    PrivateAPI(
        "keras.src.utils.tracking", "no_automatic_dependency_tracking", "symbol", ("fn",),
        ("keras_flexpredict/layers/multi_block_masker.py",),
        "save_own_variables stores the seed state without tracking it",
    ),
    PrivateAPI(
        "keras.src.backend.torch.optimizers.torch_adam.Adam", "_parallel_update_step", "method",
        ("self", "grads", "variables", "learning_rate"), (_ADAPTER, _HERE),
        "JEPAAdamW's fused multi-tensor Adam step on torch (falls back to the slow path if gone)",
        ("torch",),
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_get_variable_index", "method", ("self", "variable"), (_ADAPTER, _HERE),
        "adam_slots(): the fused CPU Adam step finds each weight's moment estimates",
    ),
    # -- private methods we override -----------------------------------------------
    PrivateAPI(
        "keras.optimizers.AdamW", "_apply_weight_decay", "method", ("self", "variables"), (_OPTIMIZER,),
        "overridden: scheduled decoupled weight decay inside the compiled step",
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_backend_update_step", "method",
        ("self", "grads", "trainable_variables", "learning_rate"), (_OPTIMIZER,),
        "overridden: the fused torch Adam step for the subclass",
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_use_weight_decay", "method", ("self", "variable"), (_OPTIMIZER,),
        "overridden: no decay on 1-D weights",
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_get_current_learning_rate", "method", ("self",), (_OPTIMIZER,),
        "overridden: schedules count real updates under gradient accumulation",
    ),
    PrivateAPI(
        "keras.callbacks.ModelCheckpoint", "_get_file_path", "method", ("self", "epoch", "batch", "logs"),
        (_CHECKPOINT,), "overridden: Keras writes to a temporary name",
    ),
    PrivateAPI(
        "keras.callbacks.ModelCheckpoint", "_save_model", "method", ("self", "epoch", "batch", "logs"),
        (_CHECKPOINT,), "overridden: the temporary file is renamed into place",
    ),
    PrivateAPI(
        "keras.callbacks.BackupAndRestore", "_save_model", "method", ("self",), (_BACKUP,),
        "overridden: one atomic backup file per epoch",
    ),
    # -- public methods patched or called in a way Keras does not document ----------
    PrivateAPI(
        "keras.optimizers.Optimizer", "apply", "method", ("self", "grads", "trainable_variables"),
        ("keras_flexpredict/callbacks/torch_data_parallel.py",),
        "patched per instance by TorchDataParallel: the torch trainer must call optimizer.apply",
        ("torch",), ("keras.src.backend.torch.trainer.TorchTrainer.train_step", "self.optimizer.apply("),
    ),
    PrivateAPI(
        "keras.src.backend.jax.trainer.JAXTrainer", "_make_function", "method",
        ("self", "step_function", "concatenate_outputs"), (_BUCKETS, _HERE),
        "make_step_function(): the length-bucketed JAX train function is wrapped as Keras wraps its "
        "jitted train step (steps_per_execution, the iterator)",
        ("jax",), ("keras.src.backend.jax.trainer.JAXTrainer.make_train_function", "self._make_function("),
    ),
    PrivateAPI(
        "keras.src.backend.jax.trainer.JAXTrainer", "_get_state_sharding_spec", "method", ("self",),
        (_BUCKETS, _HERE),
        "jax_state_sharding_spec(): the length-bucketed train steps keep Keras's output shardings "
        "under a keras.distribution",
        ("jax",),
        ("keras.src.backend.jax.trainer.JAXTrainer.make_train_function", "self._get_state_sharding_spec()"),
    ),
    # -- private attributes ---------------------------------------------------------
    PrivateAPI(
        "keras.optimizers.AdamW", "_iterations", "attribute", None, ("keras_flexpredict/models/flex_predict.py",),
        "optimizer_micro_iterations(): micro-batch counter under gradient accumulation",
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_learning_rate", "attribute", None, (_OPTIMIZER,),
        "the schedule object behind `learning_rate`",
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_distribution_strategy", "attribute", None, (_ADAPTER, _HERE),
        "optimizer_distribution_strategy(): the tf.distribute strategy of the TF optimizer",
        ("tensorflow",),
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_momentums", "attribute", None, (_ADAPTER, _HERE),
        "adam_slots(): first-moment estimates, indexed by `_get_variable_index`",
    ),
    PrivateAPI(
        "keras.optimizers.AdamW", "_velocities", "attribute", None, (_ADAPTER, _HERE),
        "adam_slots(): second-moment estimates, indexed by `_get_variable_index`",
    ),
    PrivateAPI(
        "keras.Model", "_flatten_layers", "method", None, (_ADAPTER, _HERE),
        "all_layers_built(): the TF optimiser is built before `fit` only once every layer is "
        "(Keras's own test before its symbolic build)",
    ),
    PrivateAPI(
        "keras.layers.Dense", "_remat_mode", "attribute", None, (_ADAPTER, _HERE),
        "layer_remat_mode(): whether a block was created under a RematScope (eager torch then runs it through its Keras call)",
    ),
    PrivateAPI(
        "keras.random.SeedGenerator", "_initial_seed", "attribute", None,
        ("keras_flexpredict/utils/replicas.py",), "seed_generator_initial_seed(): the replica view's config",
    ),
    PrivateAPI(
        "keras.Variable", "_value", "attribute", None, ("keras_flexpredict/utils/distributed_saving.py",),
        "swap_variable_value(): a gathered host copy is swapped in without re-sharding",
    ),
    PrivateAPI(
        "keras.Model", "_initial_epoch", "attribute", None, (_BACKUP,),
        "set_initial_epoch(): the epoch `fit` resumes from, as Keras's BackupAndRestore sets it",
        None, ("keras.Model.fit", "self._initial_epoch"),
    ),
)


@contextlib.contextmanager
def no_autocast():
    """Reads float variables in their own dtype within the block, whatever the dtype
    policy (Keras would autocast float32 weights to bfloat16 under a mixed policy)."""
    with AutocastScope(None):
        yield


def torch_parallel_adam_step():
    """Keras's multi-tensor torch Adam step (`_parallel_update_step(optimizer, grads,
    variables, learning_rate)`), or None where this Keras has none."""
    try:
        from keras.src.backend.torch.optimizers import torch_adam
    except ImportError:  # pragma: no cover - Keras layout changed
        return None
    return getattr(getattr(torch_adam, "Adam", None), "_parallel_update_step", None)


def adam_slots(optimizer, variables):
    """`(momentums, velocities)`: the backend variables (torch tensors, `tf.Variable`s) of
    a built Adam(W) optimiser's first- and second-moment estimates of `variables`, in
    their order."""
    slots = [optimizer._get_variable_index(v) for v in variables]
    return [optimizer._momentums[i].value for i in slots], [optimizer._velocities[i].value for i in slots]


def all_layers_built(model):
    """Whether `model` and every layer inside it are built (Keras's own test before it
    builds a model's state from the first batch)."""
    return all(layer.built for layer in model._flatten_layers())


def layer_remat_mode(layer):
    """The `keras.RematScope` the layer was created under (Keras's `RematMode`, whose
    `mode` is None under `keras.RematScope(mode=None)`), or None outside any scope."""
    return getattr(layer, "_remat_mode", None)


def optimizer_micro_iterations(optimizer):
    """The optimiser's call counter (micro-batches under gradient accumulation;
    `optimizer.iterations` counts real updates)."""
    return optimizer._iterations


def optimizer_distribution_strategy(optimizer):
    """The `tf.distribute` strategy a TensorFlow-backend optimiser was created in."""
    return optimizer._distribution_strategy


def seed_generator_initial_seed(generator):
    """The seed a `keras.random.SeedGenerator` was created with (its config's `seed`)."""
    return generator._initial_seed


def swap_variable_value(variable, value):
    """Puts `value` behind `variable` without `assign` (which would re-shard or cast)."""
    variable._value = value


def make_step_function(model, step_function):
    """Keras's JAX wrapper around a train step `step_function(state, data)`: the
    function `fit` calls with `(state, iterator)` (`steps_per_execution` batches)."""
    return model._make_function(step_function)


def jax_state_sharding_spec(model):
    """The shardings of the JAX train state under the current `keras.distribution`."""
    return model._get_state_sharding_spec()


def set_initial_epoch(model, epoch):
    """Makes the next `model.fit` start at `epoch`, as Keras's `BackupAndRestore` does."""
    model._initial_epoch = int(epoch)


def serializer_tensorflow_module():
    """The lazy `tensorflow` module Keras's serializer (`serialize_keras_object`) reads,
    or None if this Keras has none there."""
    from keras.src.saving import serialization_lib

    return getattr(serialization_lib, "tf", None)


def wrap_serializer_tensorflow_module(wrap):
    """Replaces the serializer's lazy `tensorflow` module by `wrap(module)`."""
    from keras.src.saving import serialization_lib

    serialization_lib.tf = wrap(serialization_lib.tf)
