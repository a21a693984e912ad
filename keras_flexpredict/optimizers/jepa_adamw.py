import keras
from keras import ops

from keras_flexpredict.optimizers._validation import check_non_negative_float
from keras_flexpredict.utils import backend_adapter


@keras.saving.register_keras_serializable(package="keras_flexpredict")
class JEPAAdamW(keras.optimizers.AdamW):
    """AdamW with a scheduled weight decay and no decay on 1-D weights (I-JEPA).

    The I-JEPA / StoP optimiser: PyTorch-style decoupled weight decay
    `w <- w * (1 - lr_t * wd_t)` applied before the Adam step, where `wd_t` may
    follow a schedule (e.g. `CosineWeightDecay`, 0.04 -> 0.4) evaluated from
    the optimiser's iteration count *inside* the compiled train step, so it
    really changes every step on JAX, TensorFlow (also under
    `tf.distribute`) and torch. (Assigning `optimizer.weight_decay` from a
    callback does not: JAX and TF bake the Python float into the compiled
    step.) Biases, LayerNorm scales and every other variable with fewer than
    2 dimensions get no weight decay, like the reference's parameter groups,
    except those named in `decayed_1d_names`: I-JEPA's mask token is a
    `(1, 1, Dp)` tensor in the reference, so its optimiser decays it; here
    it is a `(Dp,)` vector, decayed by name.

    Gradient accumulation (`gradient_accumulation_steps=k`): the weights
    change on every `k`-th call only, with the mean of the `k` gradients, and
    both schedules are evaluated at `optimizer.iterations`, the number of
    *real* updates already applied (Keras's own learning-rate schedules count
    micro-batches instead). So `total_steps` and `warmup_steps` of the
    schedules are real updates, and a run with `k` micro-batches of size
    `B / k` follows the same schedules as one with batches of `B`.

    Gradient clipping is Keras's own (`clipnorm`, `global_clipnorm`,
    `clipvalue`), off by default as in the reference; StoP's `clip_grad`
    (`torch.nn.utils.clip_grad_norm_`) is `global_clipnorm`. For float16
    wrap the optimiser in `keras.optimizers.LossScaleOptimizer`.

    Differences from `torch.optim.AdamW` that remain: Keras's `epsilon` is
    the "epsilon hat" of Kingma & Ba (added to `sqrt(v)` before the bias
    correction), which matters only in the first few hundred steps.

    Args:
        learning_rate: float, `LearningRateSchedule` (e.g.
            `WarmupCosineDecay`) or callable. Defaults to `0.001`.
        weight_decay: float, or a schedule: a callable of the iteration count
            (e.g. `CosineWeightDecay`) returning the decay coefficient. It is
            called with the same step as the learning-rate schedule:
            `optimizer.iterations`, the number of real updates applied
            (micro-batches of gradient accumulation are not counted).
            Defaults to `0.04`.
        beta_1: float. Decay rate of the first-moment estimates.
            Defaults to `0.9`.
        beta_2: float. Decay rate of the second-moment estimates.
            Defaults to `0.999`.
        epsilon: float. Numerical-stability constant. Defaults to `1e-8`
            (PyTorch's default, used by the reference; Keras's AdamW uses
            `1e-7`).
        amsgrad: bool. Whether to use AMSGrad. Defaults to `False`.
        exclude_1d_from_weight_decay: bool. If `True`, variables with fewer
            than 2 dimensions (biases, norm scales and offsets) get no weight
            decay. Further variables can be excluded by name with Keras's
            `exclude_from_weight_decay(var_names=[...])`. Defaults to `True`.
        decayed_1d_names: sequence of str. Names (`variable.name`, exact) of
            variables with fewer than 2 dimensions that are decayed all the
            same. Defaults to `("mask_token",)`: I-JEPA's mask token, which
            the reference decays (it is 3-D there; its rule excludes only
            biases and 1-D parameters). Pass `()` to exclude every 1-D
            variable.
        clipnorm: float or `None`. Per-variable gradient-norm clipping.
            Defaults to `None`.
        clipvalue: float or `None`. Gradient-value clipping.
            Defaults to `None`.
        global_clipnorm: float or `None`. Global gradient-norm clipping.
            Defaults to `None`.
        use_ema: bool. Keras optimiser EMA of the weights (not the I-JEPA
            target encoder). Defaults to `False`.
        ema_momentum: float. Defaults to `0.99`.
        ema_overwrite_frequency: int or `None`. Defaults to `None`.
        loss_scale_factor: float or `None`. Defaults to `None`.
        gradient_accumulation_steps: int >= 2 or `None`. Apply one real
            update every `gradient_accumulation_steps` calls, with the mean
            gradient; schedules count real updates (see above).
            Defaults to `None`.
        name: str or `None`. Defaults to `None`.

    Example:

    >>> from keras_flexpredict.optimizers import CosineWeightDecay
    >>> from keras_flexpredict.optimizers import WarmupCosineDecay
    >>> optimizer = JEPAAdamW(
    ...     learning_rate=WarmupCosineDecay(
    ...         total_steps=1000, warmup_steps=100,
    ...         start_lr=2e-4, peak_lr=8e-4, final_lr=1e-4),
    ...     weight_decay=CosineWeightDecay(total_steps=1000))
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile(optimizer=optimizer, loss="mse")

    References:
    - [Loshchilov & Hutter, 2019, AdamW](https://arxiv.org/abs/1711.05101)
    - [Assran et al., 2023, I-JEPA](https://arxiv.org/abs/2301.08243)
    - [Bar et al., 2024, StoP](https://arxiv.org/abs/2308.00566)
    """

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.04,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        amsgrad=False,
        exclude_1d_from_weight_decay=True,
        decayed_1d_names=("mask_token",),
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        if not callable(weight_decay):
            weight_decay = check_non_negative_float("weight_decay", weight_decay)
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= check_non_negative_float(arg, value) < 1.0:
                raise ValueError(f"`{arg}` must be in [0, 1). Received: {arg}={value!r}")
        if not 0.0 <= check_non_negative_float("ema_momentum", ema_momentum) <= 1.0:
            raise ValueError(f"`ema_momentum` must be in [0, 1]. Received: ema_momentum={ema_momentum!r}")
        optional = (
            ("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm),
            ("loss_scale_factor", loss_scale_factor),
        )
        for arg, value in (("epsilon", epsilon),) + tuple((a, v) for a, v in optional if v is not None):
            if not check_non_negative_float(arg, value) > 0:
                raise ValueError(f"`{arg}` must be a positive number. Received: {arg}={value!r}")
        if not isinstance(exclude_1d_from_weight_decay, bool):
            raise ValueError(
                "`exclude_1d_from_weight_decay` must be a bool. Received: "
                f"exclude_1d_from_weight_decay={exclude_1d_from_weight_decay!r}"
            )
        if isinstance(decayed_1d_names, str) or not all(
            isinstance(n, str) and n for n in (decayed_1d_names or ())
        ):
            raise ValueError(
                "`decayed_1d_names` must be a sequence of variable names. Received: "
                f"decayed_1d_names={decayed_1d_names!r}"
            )
        super().__init__(
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
            **kwargs,
        )
        self.exclude_1d_from_weight_decay = exclude_1d_from_weight_decay
        self.decayed_1d_names = tuple(decayed_1d_names or ())

    # -- weight decay ------------------------------------------------------

    def current_weight_decay(self):
        """The weight-decay coefficient of the coming update (a tensor or float)."""
        if callable(self.weight_decay):
            return self.weight_decay(self.iterations)
        return self.weight_decay

    def _get_current_learning_rate(self):
        # Keras evaluates a schedule at `_iterations`, which counts micro-batches
        # under gradient accumulation; the I-JEPA schedules count real updates.
        # (`iterations` is `_iterations // k`: on the call that applies real
        # update `j` (0-based) it is `j`, as without accumulation.)
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def _decay_factor(self):
        """`1 - lr_t * wd_t` for the coming update, float32."""
        lr = ops.cast(self.learning_rate, "float32")
        wd = ops.cast(self.current_weight_decay(), "float32")
        return ops.subtract(1.0, ops.multiply(lr, wd))

    def _use_weight_decay(self, variable):
        if (
            self.exclude_1d_from_weight_decay
            and len(variable.shape) < 2
            and variable.name not in self.decayed_1d_names
        ):
            return False
        return super()._use_weight_decay(variable)

    def _apply_weight_decay(self, variables):
        # Overrides BaseOptimizer's and the torch / TF backend optimisers'
        # versions (this class comes first in the MRO on every backend), which
        # would read `self.weight_decay` as a constant. (A private Keras method:
        # listed in `keras_flexpredict.utils.keras_internals.PRIVATE_API`.)
        if self.weight_decay is None:
            return
        variables = [v for v in variables if self._use_weight_decay(v)]
        if not variables:
            return
        backend_adapter.multiply_variables_(variables, self._decay_factor, optimizer=self)

    # -- Adam step ---------------------------------------------------------

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # On torch, Keras maps exactly `keras.optimizers.AdamW` to its fused
        # `torch._foreach_*` implementation, not subclasses: use a multi-tensor
        # Adam step here too (on CPU torch's one-pass fused kernel, which is
        # 6x faster than `_foreach_*` there; see `backend_adapter.fused_adam_step`).
        if not backend_adapter.fused_adam_step(self, grads, trainable_variables, learning_rate):
            super()._backend_update_step(grads, trainable_variables, learning_rate)

    def update_step(self, gradient, variable, learning_rate):
        # On TensorFlow, one fused kernel per weight instead of ~12 graph ops
        # (`backend_adapter.fused_adam_variable_step`); elsewhere Keras's step.
        if not backend_adapter.fused_adam_variable_step(self, gradient, variable, learning_rate):
            super().update_step(gradient, variable, learning_rate)

    # -- config ------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        if callable(self.weight_decay):
            config["weight_decay"] = keras.saving.serialize_keras_object(self.weight_decay)
        config["exclude_1d_from_weight_decay"] = self.exclude_1d_from_weight_decay
        config["decayed_1d_names"] = list(self.decayed_1d_names)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if isinstance(config.get("weight_decay"), dict):
            config["weight_decay"] = keras.saving.deserialize_keras_object(
                config["weight_decay"], custom_objects=custom_objects
            )
        return super().from_config(config, custom_objects=custom_objects)
