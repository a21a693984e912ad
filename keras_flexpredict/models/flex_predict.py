"""FlexPredict: the trainable StoP / I-JEPA system (context encoder, EMA target
encoder, multi-block masker, predictor) driven by `model.fit`."""

import copy

import keras
from keras import ops

from keras_flexpredict.layers.multi_block_masker import MultiBlockMasker
from keras_flexpredict.losses.jepa_loss import LOSSES
from keras_flexpredict.losses.jepa_loss import jepa_loss
from keras_flexpredict.models import ema_teacher
from keras_flexpredict.models.flex_predict_presets import FLEXPREDICT_PRESETS
from keras_flexpredict.models.jepa_predictor import JEPAPredictor
from keras_flexpredict.models.target_features import layer_norm_no_affine
from keras_flexpredict.models.target_features import target_features
from keras_flexpredict.models.vit_encoder import ViTEncoder
from keras_flexpredict.models.vit_presets import VIT_PRESETS
from keras_flexpredict.utils import backend_adapter
from keras_flexpredict.utils import keras_internals
from keras_flexpredict.utils.length_buckets import choose_length_buckets
from keras_flexpredict.utils.length_buckets import token_weights
from keras_flexpredict.utils.memory import releasing_free_memory_at_start
from keras_flexpredict.utils.padding import trim_padding
from keras_flexpredict.utils.rematerialization import RematerializedBySublayers
from keras_flexpredict.utils.validation import check_int

__all__ = ["DEFAULT_LENGTH_BUCKETS", "FlexPredict", "LOSSES"]

# JAX on CPU: the most length buckets `length_buckets=None` lets a train step use.
DEFAULT_LENGTH_BUCKETS = 4


def _deserialize(obj, cls):
    if isinstance(obj, dict):
        obj = keras.saving.deserialize_keras_object(obj) if "class_name" in obj else cls(**obj)
    if not isinstance(obj, cls):
        raise ValueError(f"Expected a {cls.__name__}. Received: {obj!r}")
    return obj


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class FlexPredict(RematerializedBySublayers, keras.Model):
    """StoP (or the I-JEPA baseline) as a Keras model that `fit` pretrains.

    One training step (all inside Keras's compiled step, on every backend):
    draw multi-block masks; encode the whole image with the target encoder, normalise
    its tokens (LayerNorm, no affine) and gather the target blocks; encode the context
    tokens with the context encoder; predict the target blocks with the predictor
    (StoP noise on the masked tokens when the predictor's `positional_noise="stop"`);
    smooth-L1 (or MSE) loss averaged over real target tokens, features and blocks.
    Each job has its own module: `models.target_features`, `losses.jepa_loss`,
    `models.ema_teacher` (docs/flexpredict_step.md).

    The target encoder starts as a copy of the context encoder and is updated only by
    EMA, `w_bar <- m w_bar + (1 - m) w`, with `m` rising linearly from
    `start_momentum` to `end_momentum` over the run. The schedule belongs to
    `kfp.callbacks.EMATargetCallback` (`fit` adds one with the paper's defaults if you
    pass none). The update runs inside the compiled train step, one step late: step `k`
    first applies the update owed for step `k - 1` (with `m_{k-1}`), so the targets of
    every step come from exactly the teacher of the reference code, and the callback
    applies the last owed update when `fit` ends. `train_steps` and `ema_updates`
    (non-trainable variables, saved with the weights) keep this exact across resumes.

    `train_steps` advances in `compute_loss(training=True)`, which Keras calls from
    its train step only (`fit`, `train_on_batch`), once per optimiser call. A forward
    pass `model(images, training=True)` outside them therefore moves no schedule: it
    draws masks and StoP noise (advancing the masker's and predictor's seed
    generators), and applies an EMA update only if one is owed for an optimiser
    update already made (none is once `fit` has returned); `train_steps`,
    `ema_updates`, the EMA momentum and the optimiser's schedules stay where they are.
    A step whose update an optimiser skips (e.g. `LossScaleOptimizer` on non-finite
    float16 gradients) still counts here.

    Gradient accumulation (`gradient_accumulation_steps=k` on the optimiser): the
    student changes on every `k`-th batch only, so `train_steps` counts real optimiser
    updates (equal to `optimizer.iterations`), the EMA runs once per real update with
    the momentum of that update, and the teacher stays fixed over the `k` batches of
    one update, as it would for one batch of `k` times the size.
    `accumulated_batches` (0 to `k - 1`) counts the batches of the update under way.
    Use `JEPAAdamW` (or `kfp.optimizers.make_jepa_optimizer`) so that the learning-rate
    and weight-decay schedules count real updates too.

    The released StoP / I-JEPA weights load with `from_official_checkpoint`; a model
    goes out with `save_to_preset` (docs/pretrained.md).

    Args:
        encoder: a `ViTEncoder` (or its config). The context encoder.
        predictor: a `JEPAPredictor` (or its config).
        masker: a `MultiBlockMasker` (or its config), on the encoder's patch grid.
        loss: `"smooth_l1"` (beta 1, as both official codes; the default) or `"mse"`
            (the paper's L2).
        length_buckets: int >= 1 or None. The most static slot sizes (length
            buckets) a JAX train step chooses between, batch by batch, so that it
            does not pay for padding slots no image of the batch uses.
            `train_length_buckets` says which; each compiles the first time a batch
            needs it, and choosing costs one host read of two numbers per step. `1`
            runs every batch at the masker's slots. `None` (the default): 4 where JAX
            runs on CPU, 1 elsewhere (on accelerators the per-step host read is not
            measured yet). TensorFlow graphs and eager torch cut each batch to its
            own masks, except eager torch where its Dense layers run as oneDNN
            matmuls (float32 on AMD CPUs): there oneDNN keeps a compiled primitive
            per shape, so the slots stay static unless this is set above 1, which
            cuts each batch to its bucket (ViT-Tiny 224/16 batch 8 with 4 buckets:
            5-14% faster, 0.11-0.16 GiB more peak memory; BENCHMARKS.md).

    Call arguments:
        images: float `(B, H, W, C)` normalised images (a dataset may yield
            `(images, labels)`; labels are ignored).
        training: bool.

    Returns:
        dict with `predictions` and `targets` `(B, M, Kt, De)` and `target_mask`.

    Example:
    >>> model = FlexPredict.from_preset(
    ...     "stop_vit_base_patch16_224_imagenet",
    ...     encoder=dict(image_size=32, patch_size=4, hidden_dim=32, depth=1, num_heads=2),
    ...     predictor=dict(hidden_dim=16, depth=1, num_heads=2),
    ...     masker=dict(min_keep=4, reference=False))
    >>> model.compile(optimizer="adamw")
    >>> images = np.random.rand(8, 32, 32, 3).astype("float32")
    >>> history = model.fit(images, batch_size=4, epochs=1, verbose=0)
    >>> tuple(model.target_encoder(images[:2]).shape)
    (2, 64, 32)

    References:
        - [Bar et al., 2024, StoP](https://arxiv.org/abs/2308.00566)
        - [Assran et al., 2023, I-JEPA](https://arxiv.org/abs/2301.08243)
    """

    def __init__(self, encoder, predictor, masker, loss="smooth_l1", length_buckets=None, **kwargs):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}. Received: loss={loss!r}")
        if length_buckets is not None:
            length_buckets = check_int("length_buckets", length_buckets, minimum=1)
        self.length_buckets = length_buckets
        self._eager_buckets = {}  # batch size -> `train_length_buckets` (eager torch)
        self.encoder = _deserialize(encoder, ViTEncoder)
        self.predictor = _deserialize(predictor, JEPAPredictor)
        self.masker = _deserialize(masker, MultiBlockMasker)
        self.loss_name = loss
        self.check_parts(self.encoder, self.predictor, self.masker)
        # Created trainable and frozen in `build`: on TF, `trainable=False` here would
        # leave the sublayers' variables trainable. `architecture()`, not `get_config()`:
        # Keras's serialiser would import TensorFlow (0.4 GiB) on every backend.
        self.target_encoder = ViTEncoder(
            **self.encoder.architecture(), dtype=self.encoder.dtype_policy, name="target_encoder"
        )

        scalar = dict(shape=(), trainable=False, aggregation="only_first_replica")
        self.train_steps = self.add_weight(name="train_steps", initializer="zeros", dtype="int32", **scalar)
        self.ema_updates = self.add_weight(name="ema_updates", initializer="zeros", dtype="int32", **scalar)
        self.accumulated_batches = self.add_weight(
            name="accumulated_batches", initializer="zeros", dtype="int32", **scalar
        )
        self.ema_start_momentum = self.add_weight(
            name="ema_start_momentum",
            initializer=keras.initializers.Constant(ema_teacher.DEFAULT_START_MOMENTUM),
            dtype="float32",
            **scalar,
        )
        self.ema_end_momentum = self.add_weight(
            name="ema_end_momentum",
            initializer=keras.initializers.Constant(ema_teacher.DEFAULT_END_MOMENTUM),
            dtype="float32",
            **scalar,
        )
        self.ema_total_steps = self.add_weight(
            name="ema_total_steps", initializer="zeros", dtype="float32", **scalar
        )
        self.build((None, *self.encoder.image_size, self.encoder.num_channels))

    @staticmethod
    def check_parts(encoder, predictor, masker):
        """Raises a `ValueError` unless the parts fit together: the predictor's
        `encoder_dim` equals the encoder's `hidden_dim`, and encoder, predictor and
        masker share one patch grid. Needs no weights, so recipes call it on the
        unbuilt parts before anything is written."""
        if predictor.encoder_dim != encoder.hidden_dim:
            raise ValueError(
                "The predictor's `encoder_dim` must equal the encoder's `hidden_dim`. Received: "
                f"encoder_dim={predictor.encoder_dim}, hidden_dim={encoder.hidden_dim}"
            )
        grids = {
            "encoder": tuple(encoder.grid_size),
            "predictor": tuple(predictor.grid_size),
            "masker": tuple(masker.grid_size),
        }
        if len(set(grids.values())) != 1:
            raise ValueError(f"Encoder, predictor and masker must share one patch grid. Received: {grids}")

    def build(self, images_shape):
        images_shape = tuple(images_shape)
        for part, shape in (
            (self.encoder, images_shape),
            (self.target_encoder, images_shape),
            (self.predictor, (None, None, self.encoder.hidden_dim)),
        ):
            if not part.built:  # parts deserialised from a config come built
                part.build(shape)
        # The teacher learns only by EMA: freeze every sublayer variable too, and the
        # variables themselves (on torch a trainable variable records the autograd graph
        # of the whole target forward pass, activations included, for no gradient).
        self.target_encoder.trainable = False
        for variable in self.target_encoder.weights:
            variable.trainable = False
        ema_teacher.copy_student_(self._teacher_student_pairs())
        self.built = True

    def _teacher_student_pairs(self):
        return ema_teacher.teacher_student_pairs(self.target_encoder, self.encoder)

    # ------------------------------------------------------------ one step
    def _check_images(self, images):
        expected = (*self.encoder.image_size, self.encoder.num_channels)
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[1:] != expected:
            raise ValueError(
                f"FlexPredict expects image batches of shape (batch, {expected[0]}, {expected[1]}, "
                f"{expected[2]}). Received: shape={shape}"
            )
        dtype = keras.backend.standardize_dtype(images.dtype)
        if "float" not in dtype:
            raise ValueError(
                "FlexPredict expects float images (normalised, e.g. with the ImageNet mean/std). "
                f"Received: dtype={dtype}"
            )

    def call(self, images, training=None):
        # The data path of one step: image -> masker -> target features (the EMA
        # teacher) and context encoder -> predictor; the loss is `compute_loss`.
        if isinstance(images, (tuple, list)):
            images = images[0]
        self._check_images(images)
        if training:
            # The one side effect, in training only: the teacher first takes the EMA
            # update owed for the last optimiser update (see `update_target_encoder`).
            self.update_target_encoder()
        # Eager torch and TF graphs without XLA drop the padding slots no image uses
        # (the work of the official code's variable-length masks); XLA keeps the static
        # slots (so does eager torch where its Dense layers run as oneDNN matmuls,
        # unless asked for length buckets: `_eager_length_buckets`).
        masks = self.draw_masks(images)
        masks = trim_padding(masks, self.compute_dtype, self._eager_length_buckets(masks["context_mask"]))
        targets = target_features(self.target_encoder, images, masks["target_indices"])
        context = self.encoder(
            images,
            context_indices=masks["context_indices"],
            context_mask=masks["context_mask"],
            training=training,
        )
        predictions = self.predictor(context, masks, training=training)
        return {"predictions": predictions, "targets": targets, "target_mask": masks["target_mask"]}

    def draw_masks(self, images):
        """The masks of one training step: `self.masker(images)`. Override to supply
        masks from elsewhere (e.g. replayed from another implementation); they must
        have the masker's layout (real tokens first in every row)."""
        return self.masker(images)

    def train_length_buckets(self, batch_size):
        """The slot sizes `(kc, kt)` a compiled JAX train step on batches of
        `batch_size` chooses between (cheapest first; the last is the masker's slots):
        at most `length_buckets`, picked from the masker's simulated mask lengths
        (`utils.length_buckets.choose_length_buckets`). One bucket means none is cut.

        >>> model = FlexPredict.from_preset(
        ...     "stop_vit_base_patch16_224_imagenet",
        ...     encoder=dict(image_size=32, patch_size=4, hidden_dim=32, depth=1, num_heads=2),
        ...     predictor=dict(hidden_dim=16, depth=1, num_heads=2),
        ...     masker=dict(min_keep=4, reference=True, reference_group_size=8))
        >>> buckets = model.train_length_buckets(8)
        >>> buckets[-1] == (model.masker.num_context_tokens, model.masker.num_target_tokens)
        True
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        context, target = self.masker.longest_mask_samples(batch_size)
        return choose_length_buckets(
            context,
            target,
            self.masker.num_context_tokens,
            self.masker.num_target_tokens,
            token_weights(self.encoder, self.predictor, self.masker.num_targets),
            max_buckets=self._max_length_buckets(),
        )

    def make_train_function(self, force=False):
        # JAX: a train function that runs each batch at the cheapest length bucket its
        # masks fit (`utils.jax_length_buckets`; it hands the C heap's free memory back
        # around each bucket's compilation). Elsewhere Keras's own, which hands it back
        # around its first calls (`utils.memory.releasing_free_memory_at_start`);
        # `trim_padding` in `call` cuts the padding where shapes may vary.
        if self.train_function is not None and not force:
            return self.train_function
        function = None
        if backend_adapter.runs_on("jax") and self._max_length_buckets() > 1:
            from keras_flexpredict.utils.jax_length_buckets import make_length_bucketed_train_function

            function = make_length_bucketed_train_function(self)
        if function is None:
            # TensorFlow's trainer sets `self.train_function` and returns None.
            function = releasing_free_memory_at_start(super().make_train_function(force) or self.train_function)
        self.train_function = function
        return function

    def _max_length_buckets(self):
        if self.length_buckets is not None:
            return self.length_buckets
        return DEFAULT_LENGTH_BUCKETS if backend_adapter.jax_runs_on_cpu() else 1

    def _eager_length_buckets(self, context_mask):
        # Eager torch cuts each batch's slots to its masks, except where its Dense
        # layers run as oneDNN matmuls: oneDNN compiles and keeps a primitive per
        # matmul shape, so there the slots stay static, or, with `length_buckets` set
        # above 1, are cut to a length bucket as a compiled JAX step's.
        if self._max_length_buckets() < 2:
            return None
        if not backend_adapter.eager_slots_stay_static(context_mask, self.compute_dtype):
            return None
        batch_size = int(context_mask.shape[0])
        if batch_size not in self._eager_buckets:
            self._eager_buckets[batch_size] = self.train_length_buckets(batch_size)
        return self._eager_buckets[batch_size]

    # Kept for callers of the former private helper (the conversion tests).
    _normalize = staticmethod(layer_norm_no_affine)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = jepa_loss(y_pred["predictions"], y_pred["targets"], y_pred["target_mask"], self.loss_name)
        if self.losses:
            loss = loss + ops.sum([ops.cast(l, "float32") for l in self.losses])
        if training:
            # Counted here, not in `call`: Keras calls `compute_loss(training=True)`
            # from its train step only, once per optimiser call, so a forward pass
            # `model(x, training=True)` outside `fit` advances no schedule. The EMA
            # update this step owes runs at the start of the next one.
            self._count_batch()
        # tf.distribute sums the replicas' gradients: divide this replica-local mean by
        # the replica count there (a no-op on JAX, torch and outside a strategy), so the
        # loss and gradients are right on any replica count.
        return backend_adapter.scale_loss_for_replicas(loss)

    # ------------------------------------------------------------------ EMA
    def update_target_encoder(self):
        """Applies the EMA update owed for the last completed optimiser update, if any.

        Runs inside the train step, and eagerly from `EMATargetCallback` when `fit`
        ends. A no-op when the teacher is up to date (`ema_updates == train_steps`),
        e.g. on the later batches of one accumulated update."""
        ema_teacher.apply_owed_update(
            self._teacher_student_pairs(),
            self.train_steps,
            self.ema_updates,
            self.ema_start_momentum,
            self.ema_end_momentum,
            self.ema_total_steps,
        )

    def momentum_at(self, step):
        """EMA momentum after optimiser step `step` (0-based), as the reference's
        `start + step * (end - start) / total_steps` (clipped at the end)."""
        return ema_teacher.momentum_at(step, self.ema_start_momentum, self.ema_end_momentum, self.ema_total_steps)

    def set_ema_schedule(self, start_momentum, end_momentum, total_steps):
        """Sets the momentum schedule (called by `EMATargetCallback`)."""
        self.ema_start_momentum.assign(float(start_momentum))
        self.ema_end_momentum.assign(float(end_momentum))
        self.ema_total_steps.assign(float(total_steps))

    def gradient_accumulation_steps(self):
        """Batches per real optimiser update: the compiled optimiser's
        `gradient_accumulation_steps` (also inside a `LossScaleOptimizer`), else 1."""
        optimizer = getattr(self, "optimizer", None)
        while optimizer is not None:
            steps = getattr(optimizer, "gradient_accumulation_steps", None)
            if steps:
                return int(steps)
            optimizer = getattr(optimizer, "inner_optimizer", None)
        return 1

    def _count_batch(self):
        """Advances `train_steps` when this batch completes a real optimiser update."""
        k = self.gradient_accumulation_steps()
        if k == 1:
            self.train_steps.assign_add(1)
            return
        # Traceable on every backend: no Python branch on a tensor.
        batches = self.accumulated_batches + 1
        boundary = ops.cast(batches >= k, "int32")
        self.train_steps.assign(self.train_steps + boundary)
        self.accumulated_batches.assign(batches * (1 - boundary))

    def sync_accumulation(self):
        """Aligns `accumulated_batches` with the optimiser's micro-batch counter, which
        decides when the real update happens (called by `EMATargetCallback` when `fit`
        starts; a no-op without gradient accumulation)."""
        k = self.gradient_accumulation_steps()
        if k == 1:
            self.accumulated_batches.assign(0)
            return
        optimizer = self.optimizer
        while getattr(optimizer, "gradient_accumulation_steps", None) is None:
            optimizer = optimizer.inner_optimizer
        micro = int(ops.convert_to_numpy(keras_internals.optimizer_micro_iterations(optimizer)))
        self.accumulated_batches.assign(micro % k)

    # ------------------------------------------------------------- training
    def compile(self, optimizer="jepa_adamw", **kwargs):
        """As `keras.Model.compile`; the loss is the model's own (`loss` is refused).
        The default optimiser is `JEPAAdamW` (lr 1e-3, weight decay 0.04, none on 1-D
        weights); recipes pass `kfp.optimizers.make_jepa_optimizer(...)` instead."""
        if kwargs.get("loss") is not None:
            raise ValueError(
                "FlexPredict computes its own loss (set `loss=` on the model). "
                f"Received: loss={kwargs['loss']!r}"
            )
        if optimizer == "jepa_adamw":
            from keras_flexpredict.optimizers import JEPAAdamW

            optimizer = JEPAAdamW(learning_rate=1e-3, weight_decay=0.04)
        super().compile(optimizer=optimizer, **kwargs)

    def fit(self, *args, callbacks=None, **kwargs):
        """As `keras.Model.fit`; adds an `EMATargetCallback` with the paper's momentum
        schedule (0.996 -> 1.0 over the run) when `callbacks` has none. On torch inside
        an initialised `torch.distributed` group of several processes it also adds
        `kfp.distribution.TorchDataParallel` (Keras's torch trainer never all-reduces
        gradients, so replicas would drift apart silently)."""
        from keras_flexpredict.callbacks.ema_target_callback import EMATargetCallback
        from keras_flexpredict.callbacks.torch_data_parallel import TorchDataParallel

        callbacks = list(callbacks or [])
        if not any(isinstance(c, EMATargetCallback) for c in callbacks):
            callbacks.append(EMATargetCallback())
        torch_ddp = backend_adapter.torch_world_size() > 1
        if torch_ddp and not any(isinstance(c, TorchDataParallel) for c in callbacks):
            # Last: its broadcast from rank 0 then follows any state restored at the start
            # of `fit` (e.g. by BackupAndRestore).
            callbacks.append(TorchDataParallel())
        backend_adapter.build_optimizer_before_fit(self)  # TF: one trace, not two
        return super().fit(*args, callbacks=callbacks, **kwargs)

    # ------------------------------------------------------ presets and export
    @classmethod
    def from_preset(cls, preset, encoder=None, predictor=None, masker=None, **kwargs):
        """A randomly initialised model of a paper run, e.g.
        `"stop_vit_base_patch16_224_imagenet"` or `"ijepa_vit_huge_patch14_224_imagenet"`.
        `encoder`, `predictor`, `masker` are dicts overriding constructor arguments.

        `preset` may also be a preset folder written by `save_to_preset` (or an
        `hf://` handle of one), an official `.pth.tar` checkpoint (as
        `from_official_checkpoint`, `kwargs` passed on) or a `.keras` file."""
        if not (isinstance(preset, str) and preset in FLEXPREDICT_PRESETS):
            from keras_flexpredict.convert.sources import load_flexpredict

            pretrained = dict(kwargs)
            for key, value in (("encoder", encoder), ("predictor", predictor), ("masker", masker)):
                if value is not None:
                    pretrained[key] = value
            try:
                return load_flexpredict(preset, **pretrained)
            except ValueError as e:
                if "Unknown model source" in str(e):
                    raise ValueError(
                        f"Unknown preset. Choose one of {sorted(FLEXPREDICT_PRESETS)}, or pass a preset "
                        f"folder, an hf:// handle, an official checkpoint or a .keras file. "
                        f"Received: preset={preset!r}"
                    ) from None
                raise
        spec = copy.deepcopy(FLEXPREDICT_PRESETS[preset])
        encoder_config = dict(VIT_PRESETS[spec["encoder"]], **(encoder or {}))
        vit = ViTEncoder(name="context_encoder", **encoder_config)
        predictor_config = dict(
            encoder_dim=vit.hidden_dim, num_heads=vit.num_heads, grid_size=vit.grid_size
        )
        predictor_config.update(spec["predictor"], **(predictor or {}))
        masker_config = dict(spec["masker"], grid_size=vit.grid_size)
        masker_config.update(masker or {})
        return cls(
            encoder=vit,
            predictor=JEPAPredictor(name="predictor", **predictor_config),
            masker=MultiBlockMasker(name="masker", **masker_config),
            **kwargs,
        )

    @classmethod
    def presets(cls):
        return sorted(FLEXPREDICT_PRESETS)

    @classmethod
    def from_official_checkpoint(
        cls, path, positional_noise="stop", num_heads=None, image_size=None, verbose=True, **overrides
    ):
        """The whole system of an official StoP or I-JEPA `.pth.tar` checkpoint:
        context encoder, target encoder and predictor with their trained weights.

        The architecture comes from the tensors (patch, widths, depths, MLP widths,
        grid); the heads from the encoder width (192: 3, 384: 6, 768: 12, 1024 / 1280
        / 1408: 16) or `num_heads` (the predictor uses the encoder's, as the official
        code). A missing, extra or mis-shaped key raises, naming the key and both
        shapes, before any model is built. The file is memory-mapped and copied one
        tensor at a time. Needs PyTorch to read the file (any Keras backend).

        Args:
            path: the checkpoint (`encoder`, `predictor`, `target_encoder`, with or
                without DDP's `module.` prefix).
            positional_noise: `"stop"` (StoP checkpoints: masked tokens are
                `psi + A n + b`; StoP's unused mask token is ignored) or `"none"`
                (I-JEPA checkpoints: loads the predictor's `mask_token`).
                Defaults to `"stop"`.
            num_heads: int or None.
            image_size: int, `(h, w)` or None. Another resolution (the sin-cos tables
                are recomputed for the new grid, other tables resampled bicubically).
            verbose: bool. Progress bar. Defaults to True.
            **overrides: `encoder`, `predictor`, `masker` (dicts of constructor
                arguments, e.g. `predictor=dict(sigma=0.2)`, `masker=dict(min_keep=4)`;
                sigma defaults to 0.2 for width 1280 and 0.25 otherwise; the masker to
                the paper's) and `FlexPredict` arguments (`loss`, `name`).

        Example:
        >>> model = FlexPredict.from_official_checkpoint("vit-b16.pth.tar")  # doctest: +SKIP
        >>> model.compile()  # doctest: +SKIP
        >>> model.fit(images, epochs=1)  # continue pretraining  # doctest: +SKIP
        """
        from keras_flexpredict.convert.official import official_flexpredict

        return official_flexpredict(
            path, positional_noise=positional_noise, num_heads=num_heads, image_size=image_size,
            verbose=verbose, **overrides,
        )

    def save_to_preset(self, directory):
        """Writes the model (both encoders, predictor, masker, EMA state) as a preset
        folder (`config.json`, `model.weights.h5`, `metadata.json`, the keras-hub
        layout), atomically; reload with `FlexPredict.from_preset(directory)` on any
        backend. For the encoder alone use `model.target_encoder.save_to_preset`."""
        from keras_flexpredict.models.preset_io import save_preset

        return save_preset(self, directory)

    def export_target_encoder(self, filepath):
        """Writes the target encoder alone as a `.keras` file (atomically), for feature
        extraction: `keras.saving.load_model(filepath)(images)`.

        In a multi-process run call it on every process: variables sharded across
        processes are gathered to the host and only the chief writes
        (`kfp.distribution.save_model`)."""
        from keras_flexpredict.utils.distributed_saving import save_model

        if not str(filepath).endswith(".keras"):
            raise ValueError(f"`filepath` must end in .keras. Received: filepath={filepath}")
        save_model(self.target_encoder, filepath)

    # --------------------------------------------------------------- config
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "predictor": keras.saving.serialize_keras_object(self.predictor),
            "masker": keras.saving.serialize_keras_object(self.masker),
            "loss": self.loss_name,
            "length_buckets": self.length_buckets,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key, klass in (("encoder", ViTEncoder), ("predictor", JEPAPredictor), ("masker", MultiBlockMasker)):
            config[key] = _deserialize(config[key], klass)
        return cls(**config)
