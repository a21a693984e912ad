"""Cheap health diagnostics of a FlexPredict run, computed on one fixed batch."""

import time
import warnings

import keras
import numpy as np
from keras import ops

from keras_flexpredict.callbacks._epoch_schedule import EpochSchedule
from keras_flexpredict.losses.jepa_loss import jepa_loss
from keras_flexpredict.models.target_features import gather_blocks
from keras_flexpredict.models.target_features import layer_norm_no_affine
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_int

RANKME_EPSILON = 1e-7


def _rankme(features, epsilon=RANKME_EPSILON):
    """RankMe (Garrido et al., 2023): `exp(-sum_k p_k log p_k)`, `p_k = s_k / sum(s) + eps`,
    `s` the singular values of the `(B, D)` feature matrix (float64 NumPy)."""
    s = np.linalg.svd(np.asarray(features, np.float64), compute_uv=False)
    p = s / max(float(s.sum()), np.finfo(np.float64).tiny) + epsilon
    return float(np.exp(-np.sum(p * np.log(p))))


class TrainingDiagnostics(keras.callbacks.Callback):
    """Logs whether a FlexPredict run is healthy, from one fixed batch, every few epochs.

    At the end of the first epoch of each `fit` and of every `every_n_epochs`-th epoch
    (outside the compiled train step, so
    the step itself is untouched) it runs the target encoder, the context encoder and
    the predictor once on a fixed batch of images with fixed masks (drawn once, from a
    copy of the model's masker seeded with `seed`, so the training masks are not
    disturbed), and adds to the epoch's `logs` (hence to the progress bar, `CSVLogger`
    and `TensorBoard`, when they come after this callback in the list):

    - `target_std`: the mean over feature dimensions of the per-dimension standard
      deviation, over all tokens of the batch, of the training targets (the target
      encoder's tokens after the model's affine-free LayerNorm). About 1 for varied
      tokens; 0 when every token of every image is the same vector (collapse).
    - `target_rankme`: RankMe, the effective rank of the `(B, De)` matrix of
      mean-pooled target-encoder features (the features the probes use), centred
      over the batch: `exp(-sum_k p_k log p_k)`, `p_k = s_k / sum(s) + 1e-7` over its
      singular values `s`. Between 1 (all images alike, or varying along one
      direction) and `min(B - 1, De)`. (Centred, unlike the paper's RankMe: the mean
      that mean-pooled ViT features share would dominate the spectrum; uncentred, a
      random tiny encoder scores 1.99 on 8 images.)
    - `context_projection_norm`, `context_projection_bias_norm`: Frobenius norm of the
      predictor's context projection `A` (`predictor.context_projection.kernel`,
      `De -> Dp`, the map StoP also applies to its noise) and L2 norm of its bias `b`.
      A StoP run whose `A` shrinks towards 0 has turned back into I-JEPA.
      `noise_projection_norm` too for the `learned` / `low_rank` covariances.
    - `block_loss_0` ... `block_loss_{M-1}`: the prediction loss (the model's loss,
      smooth-L1 or MSE) of each target block, averaged over its real tokens and the
      features, predictor run with `training=False` (no StoP noise: its mean).
    - `prediction_variance`: the variance over the real target tokens of the batch of
      each predicted feature, averaged over features (0 if the predictor outputs one
      vector whatever the position and image).
    - `diagnostics_time_s`: the seconds this callback took.

    When `target_std < std_threshold` or `target_rankme < rank_threshold` it warns
    once per run (a `UserWarning` naming the epoch, the optimiser step and the
    figures).

    Args:
        images: float array `(B, H, W, C)`, preprocessed as the training images. A
            few dozen images are enough (RankMe is bounded by `B`).
        every_n_epochs: int >= 1. Defaults to 1.
        std_threshold: float. Collapse warning below this `target_std`. Defaults to 0.05.
        rank_threshold: float. Collapse warning below this `target_rankme`.
            Defaults to 2.0.
        seed: int. Seed of the fixed masks. Defaults to 0.

    Example:
    >>> from keras_flexpredict.testing.tiny_models import tiny_flexpredict
    >>> model = tiny_flexpredict()
    >>> model.compile(optimizer="adamw")
    >>> images = np.random.rand(8, 32, 32, 3).astype("float32")
    >>> diagnostics = TrainingDiagnostics(images[:4])
    >>> # Skipped when the docstrings run as tests: a training step compiles for tens of
    >>> # seconds; tests/callbacks/ runs the same fit.
    >>> history = model.fit(images, batch_size=4, epochs=1, verbose=0, callbacks=[diagnostics])  # doctest: +SKIP
    >>> sorted(k for k in history.history if k.startswith("target_"))  # doctest: +SKIP
    ['target_rankme', 'target_std']

    References:
        - [Garrido et al., 2023, RankMe](https://arxiv.org/abs/2210.02885)
        - [Bar et al., 2024, StoP](https://arxiv.org/abs/2308.00566)
    """

    def __init__(self, images, every_n_epochs=1, std_threshold=0.05, rank_threshold=2.0, seed=0):
        super().__init__()
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[0] < 2:
            raise ValueError(
                "`images` must be a batch of at least 2 images (B, H, W, C). "
                f"Received: images with shape={images.shape}"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"`images` must be float (preprocessed). Received: dtype={images.dtype}")
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, minimum=1)
        self.std_threshold = check_float("std_threshold", std_threshold, minimum=0, allow_string=False)
        self.rank_threshold = check_float("rank_threshold", rank_threshold, minimum=0, allow_string=False)
        self.images = images.astype(np.float32)
        self._schedule = EpochSchedule(self.every_n_epochs)
        self.seed = int(seed)
        self.masks = None
        self.warned = False

    def _check_model(self, model):
        for attribute in ("target_encoder", "encoder", "predictor", "masker"):
            if not hasattr(model, attribute):
                raise ValueError(
                    f"TrainingDiagnostics needs a FlexPredict model. Received: model={type(model).__name__}"
                )

    def fixed_masks(self, model):
        """The masks of the fixed batch (drawn on first use, then reused)."""
        if self.masks is None:
            self._check_model(model)
            config = model.masker.get_config()
            config.update(seed=self.seed, name="diagnostics_masker")
            masker = type(model.masker).from_config(config)
            masks = masker(self.images)
            self.masks = {k: np.asarray(ops.convert_to_numpy(v)) for k, v in masks.items()}
        return self.masks

    def compute(self, model=None):
        """The diagnostics of `model` (default: the model being trained) as a dict of
        floats."""
        model = self.model if model is None else model
        self._check_model(model)
        start = time.perf_counter()
        masks = self.fixed_masks(model)
        images = self.images
        raw_tokens = model.target_encoder(images, training=False)
        # The train step's own target side and loss (models.target_features, losses.jepa_loss).
        normalized_tokens = layer_norm_no_affine(raw_tokens)
        tokens = np.asarray(ops.convert_to_numpy(raw_tokens), np.float64)
        normalized = np.asarray(ops.convert_to_numpy(normalized_tokens), np.float64)
        pooled = tokens.mean(axis=1)
        out = {
            "target_std": float(normalized.reshape(-1, normalized.shape[-1]).std(axis=0).mean()),
            # Centred: the mean shared by all images would otherwise dominate the spectrum.
            "target_rankme": _rankme(pooled - pooled.mean(axis=0, keepdims=True)),
        }

        predictor = model.predictor
        kernel = np.asarray(ops.convert_to_numpy(predictor.context_projection.kernel), np.float64)
        bias = np.asarray(ops.convert_to_numpy(predictor.context_projection.bias), np.float64)
        out["context_projection_norm"] = float(np.linalg.norm(kernel))
        out["context_projection_bias_norm"] = float(np.linalg.norm(bias))
        noise_projection = getattr(predictor.masked_token_embedding, "noise_projection", None)
        if noise_projection is not None:
            noise_kernel = np.asarray(ops.convert_to_numpy(noise_projection.kernel), np.float64)
            out["noise_projection_norm"] = float(np.linalg.norm(noise_kernel))

        context = model.encoder(
            images, context_indices=masks["context_indices"], context_mask=masks["context_mask"], training=False
        )
        predictions = predictor(context, masks, training=False)  # (B, M, Kt, De)
        targets = gather_blocks(normalized_tokens, masks["target_indices"])
        loss = getattr(model, "loss_name", "smooth_l1")
        for block in range(masks["target_indices"].shape[1]):
            one = slice(block, block + 1)
            out[f"block_loss_{block}"] = float(
                ops.convert_to_numpy(
                    jepa_loss(predictions[:, one], targets[:, one], masks["target_mask"][:, one], loss)
                )
            )
        valid = masks["target_mask"].astype(bool)
        predictions = np.asarray(ops.convert_to_numpy(predictions), np.float64)
        out["prediction_variance"] = float(predictions[valid].var(axis=0).mean())
        out["diagnostics_time_s"] = time.perf_counter() - start
        return out

    def on_train_begin(self, logs=None):
        self._schedule.start()

    def on_epoch_end(self, epoch, logs=None):
        if not self._schedule.due(epoch):
            return
        values = self.compute()
        if logs is not None:
            logs.update(values)
        collapsed = values["target_std"] < self.std_threshold or values["target_rankme"] < self.rank_threshold
        if collapsed and not self.warned:
            self.warned = True
            step = int(ops.convert_to_numpy(self.model.optimizer.iterations)) if self.model.optimizer else None
            warnings.warn(
                f"FlexPredict features look collapsed at epoch {epoch + 1} (optimiser step {step}): "
                f"target_std={values['target_std']:.4g} (threshold {self.std_threshold}), "
                f"target_rankme={values['target_rankme']:.4g} (threshold {self.rank_threshold}).",
                UserWarning,
                stacklevel=2,
            )
