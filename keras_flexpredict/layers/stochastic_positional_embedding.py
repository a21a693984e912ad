"""Stochastic positional embeddings (StoP) for the masked tokens of any ViT predictor."""

import keras
import numpy as np
from keras import ops

from keras_flexpredict.utils.rematerialization import RematerializedBySublayers
from keras_flexpredict.utils.replicas import replica_seed
from keras_flexpredict.utils.seed_state import load_seed_state
from keras_flexpredict.utils.seed_state import save_seed_state
from keras_flexpredict.utils.validation import check_float
from keras_flexpredict.utils.validation import check_one_of

COVARIANCES = ("tied", "learned", "low_rank", "isotropic", "none")


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class StochasticPositionalEmbedding(RematerializedBySublayers, keras.layers.Layer):
    """Turns the positional embeddings of masked tokens into StoP's stochastic tokens.

    The layer knows nothing of I-JEPA: it receives the positional embeddings `psi` of
    the tokens to predict (any leading shape, width `Dp`) and, in `tied` mode, the affine
    projection `(A, b)` that the caller already uses for its context tokens, and returns

    - `tied` (default, the paper and the official code): `psi + A n + b`, with
      `n ~ N(0, sigma^2 I_De)` drawn per token in the *input* width `De` of `projection`
      and pushed through the same `projection`. Tying `A` to the context projection is
      what keeps training from shrinking `A` to zero; the bias `b` plays the role of the
      mask token.
    - `learned`: `psi + A' n + b'` with the layer's own `A'` (`noise_dim -> Dp`); the
      paper reports that this collapses to `A' = 0` unless regularised
      (`kernel_regularizer`).
    - `low_rank`: as `learned` with `n` drawn in `rank` dimensions, so the covariance
      `sigma^2 A' A'^T` has rank `rank`.
    - `isotropic`: `psi + mask_token + sigma * n`, `n ~ N(0, I_Dp)` (fixed covariance).
    - `none`: `psi + mask_token`, the deterministic I-JEPA baseline.

    `noise_shift(...)` returns the zero-mean part alone (`A n`, `A' n` or `sigma n`), for
    callers that also put noise on tokens that keep their own content (the paper's
    noise-on-context ablation, `JEPAPredictor(noise_on=...)`).

    `mask_token` is a learned `Dp` vector drawn from N(0, 0.02). Noise is drawn with the
    layer's own `SeedGenerator`, in the reparameterised form (so gradients reach `A`),
    and only when `training=True`; otherwise (and when `sigma=0`) the output is the
    noise-free mean (`psi + b` in `tied` mode). Under data parallelism that runs the
    step once per replica (`tf.distribute`, torch DDP) each replica folds its replica
    id into the seed (`keras_flexpredict.distribution.replica_seed`), so replicas draw
    different, reproducible noise; replica 0 draws what a single device would.

    Args:
        sigma: float. Standard deviation of the noise (0.25 for ViT-B/L, 0.2 for ViT-H
            in the paper). Defaults to `0.25`.
        covariance: str. One of `"tied"`, `"learned"`, `"low_rank"`, `"isotropic"`,
            `"none"`. Defaults to `"tied"`.
        noise_dim: int or None. Width `De` of the noise. `tied` reads it from
            `projection.kernel` when None; `learned` requires it.
        rank: int or None. Noise width of `low_rank` mode (required there).
        kernel_regularizer: optional regularizer of the own `A'` (`learned`, `low_rank`).
        seed: int or None. Seed of the layer's `SeedGenerator`.

    Call arguments:
        positional_embeddings: `(..., Dp)` positional embeddings of the masked tokens.
        projection: a layer mapping `(..., De) -> (..., Dp)` affinely, e.g. a `Dense`;
            required in `tied` mode and ignored otherwise.
        training: bool. Noise is added only when true.

    Example:
    >>> dense = keras.layers.Dense(8)
    >>> _ = dense(np.zeros((1, 16), "float32"))  # the context projection De=16 -> Dp=8
    >>> stop = StochasticPositionalEmbedding(sigma=0.25, seed=0)
    >>> psi = np.zeros((2, 5, 8), "float32")
    >>> tuple(stop(psi, projection=dense, training=True).shape)
    (2, 5, 8)

    References:
        - [Bar et al., 2024, Stochastic positional embeddings improve masked image
          modeling](https://arxiv.org/abs/2308.00566)
    """

    def __init__(
        self,
        sigma=0.25,
        covariance="tied",
        noise_dim=None,
        rank=None,
        kernel_regularizer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_one_of("covariance", covariance, COVARIANCES)
        sigma = check_float("sigma", sigma, minimum=0, allow_string=False)  # a standard deviation
        if covariance == "learned" and noise_dim is None:
            raise ValueError(
                "`covariance='learned'` needs `noise_dim` (the width of the noise). "
                f"Received: noise_dim={noise_dim}"
            )
        if covariance == "low_rank" and (rank is None or int(rank) < 1):
            raise ValueError(
                f"`covariance='low_rank'` needs a positive `rank`. Received: rank={rank}"
            )
        self.sigma = float(sigma)
        self.covariance = covariance
        self.noise_dim = None if noise_dim is None else int(noise_dim)
        self.rank = None if rank is None else int(rank)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        dim = input_shape[-1]
        if self.covariance in ("learned", "low_rank"):
            self.noise_projection = keras.layers.Dense(
                dim,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
                kernel_regularizer=self.kernel_regularizer,
                dtype=self.dtype_policy,
                name="noise_projection",
            )
            width = self.noise_dim if self.covariance == "learned" else self.rank
            self.noise_projection.build((None, width))
        if self.covariance in ("isotropic", "none"):
            self.mask_token = self.add_weight(
                name="mask_token",
                shape=(dim,),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )

    def _noise_width(self, projection):
        if self.covariance == "low_rank":
            return self.rank
        if self.covariance == "learned" or self.noise_dim is not None:
            return self.noise_dim
        kernel = getattr(projection, "kernel", None)
        if kernel is None:
            raise ValueError(
                "In `tied` mode pass `noise_dim`, or a `projection` with a `kernel` "
                f"(e.g. a built Dense). Received: projection={projection!r}"
            )
        return int(kernel.shape[0])

    def _affine(self, projection):
        """The affine map of the noise (`tied`: the caller's `projection`; `learned`,
        `low_rank`: the layer's own) and the noise width."""
        if self.covariance != "tied":
            return self.noise_projection, self._noise_width(projection)
        if projection is None:
            raise ValueError(
                "`covariance='tied'` needs the caller's context projection: "
                "pass `projection=<Dense De -> Dp>`."
            )
        return projection, self._noise_width(projection)

    def _normal(self, shape, dtype):
        """`N(0, sigma^2)` noise from the layer's (replica-folded) seed stream."""
        return keras.random.normal(shape, stddev=self.sigma, dtype=dtype, seed=replica_seed(self.seed_generator))

    def call(self, positional_embeddings, projection=None, training=None):
        psi = positional_embeddings
        add_noise = bool(training) and self.sigma > 0
        if self.covariance in ("isotropic", "none"):
            out = psi + ops.cast(self.mask_token, psi.dtype)
            if self.covariance == "isotropic" and add_noise:
                out = out + self._normal(ops.shape(psi), psi.dtype)
            return out
        affine, width = self._affine(projection)
        if add_noise:
            shift = affine(self._normal(tuple(ops.shape(psi)[:-1]) + (width,), self.compute_dtype))
        else:
            # The noise-free mean A 0 + b = b, for any affine projection.
            shift = affine(ops.zeros((1, width), dtype=self.compute_dtype))
        return psi + ops.cast(shift, psi.dtype)

    def noise_shift(self, positional_embeddings, projection=None, training=None):
        """The zero-mean noise term alone, shaped like `positional_embeddings`: `A n`
        (`tied`, through `projection`), `A' n` (`learned`, `low_rank`), `sigma n`
        (`isotropic`); zeros for `none`, when not training, or when `sigma=0`.

        Example:
        >>> dense = keras.layers.Dense(8)
        >>> _ = dense(np.zeros((1, 16), "float32"))
        >>> stop = StochasticPositionalEmbedding(sigma=0.25, seed=0)
        >>> tuple(stop.noise_shift(np.zeros((2, 5, 8), "float32"), dense, training=True).shape)
        (2, 5, 8)
        """
        psi = ops.convert_to_tensor(positional_embeddings)
        if self.covariance == "none" or not (bool(training) and self.sigma > 0):
            return ops.zeros_like(psi)
        if self.covariance == "isotropic":
            return self._normal(ops.shape(psi), psi.dtype)
        affine, width = self._affine(projection)
        noise = self._normal(tuple(ops.shape(psi)[:-1]) + (width,), self.compute_dtype)
        # A n = (A n + b) - (A 0 + b), for any affine projection.
        shift = affine(noise) - affine(ops.zeros((1, width), dtype=self.compute_dtype))
        return ops.cast(shift, psi.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def save_own_variables(self, store):
        super().save_own_variables(store)
        save_seed_state(self, store)

    def load_own_variables(self, store):
        super().load_own_variables(load_seed_state(self, store))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sigma": self.sigma,
                "covariance": self.covariance,
                "noise_dim": self.noise_dim,
                "rank": self.rank,
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "seed": self.seed,
            }
        )
        return config
