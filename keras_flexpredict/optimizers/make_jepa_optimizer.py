from keras_flexpredict.optimizers.cosine_weight_decay import CosineWeightDecay
from keras_flexpredict.optimizers.jepa_adamw import JEPAAdamW
from keras_flexpredict.optimizers.warmup_cosine_decay import WarmupCosineDecay


def make_jepa_optimizer(
    total_steps,
    warmup_steps,
    start_lr,
    peak_lr,
    final_lr,
    start_weight_decay=0.04,
    end_weight_decay=0.4,
    constant_after_step=None,
    clipnorm=None,
    global_clipnorm=None,
    gradient_accumulation_steps=None,
    **kwargs,
):
    """The I-JEPA / StoP optimiser: `JEPAAdamW` with both reference schedules.

    Learning rate: `WarmupCosineDecay(total_steps, warmup_steps, start_lr,
    peak_lr, final_lr)`; weight decay: `CosineWeightDecay(total_steps,
    start_weight_decay, end_weight_decay)`; no decay on variables with fewer
    than 2 dimensions (but I-JEPA's mask token, as the reference); no
    gradient clipping unless asked. All steps count optimiser updates; from a
    recipe in epochs use `int(epochs * steps_per_epoch)` (times the
    reference's `ipe_scale` for `total_steps`).

    With `gradient_accumulation_steps=k` every step argument still counts
    *real* updates (one per `k` batches): an epoch of `n` batches is `n / k`
    updates, so pass `total_steps=int(epochs * n / k)`. The schedules, the
    weight decay and Adam's bias correction then advance once per real
    update, and `FlexPredict`'s EMA and step counter follow them.

    Args:
        total_steps: int. Updates until `final_lr` / `end_weight_decay`.
        warmup_steps: int. Updates of linear learning-rate warm-up.
        start_lr: float. Learning rate the warm-up starts from.
        peak_lr: float. Learning rate at the end of the warm-up.
        final_lr: float. Learning rate at `total_steps`.
        start_weight_decay: float. Defaults to `0.04`.
        end_weight_decay: float. Defaults to `0.4`.
        constant_after_step: int or `None`. Freezes both the learning rate
            and the weight decay from this update on (StoP's ViT-H/14 recipe:
            `fix_lr_thres = fix_wd_thres = 250` epochs of 300).
            Defaults to `None`.
        clipnorm: float or `None`. Keras per-variable gradient-norm clipping.
            Defaults to `None`.
        global_clipnorm: float or `None`. Keras global gradient-norm clipping
            (what `torch.nn.utils.clip_grad_norm_` does). Defaults to `None`.
        gradient_accumulation_steps: int >= 2 or `None`. Average the
            gradients of this many batches into one update (e.g. to fit the
            global batch of ViT-H/14 on fewer devices). Step arguments are
            real updates, see above. Defaults to `None`.
        **kwargs: further `JEPAAdamW` arguments (`epsilon`, `name`, ...).

    Returns:
        A `JEPAAdamW`.

    Example:

    >>> optimizer = make_jepa_optimizer(
    ...     total_steps=600 * 625, warmup_steps=15 * 625,
    ...     start_lr=2e-4, peak_lr=8e-4, final_lr=1e-4)
    >>> type(optimizer).__name__
    'JEPAAdamW'
    >>> # Batches of 1024 accumulated in pairs: 2 x 1250 batches an epoch.
    >>> accumulating = make_jepa_optimizer(
    ...     total_steps=600 * 625, warmup_steps=15 * 625,
    ...     start_lr=2e-4, peak_lr=8e-4, final_lr=1e-4,
    ...     gradient_accumulation_steps=2)
    >>> accumulating.gradient_accumulation_steps
    2

    References:
    - [Assran et al., 2023, I-JEPA](https://arxiv.org/abs/2301.08243)
    - [Bar et al., 2024, StoP](https://arxiv.org/abs/2308.00566)
    """
    learning_rate = WarmupCosineDecay(
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        start_lr=start_lr,
        peak_lr=peak_lr,
        final_lr=final_lr,
        constant_after_step=constant_after_step,
    )
    weight_decay = CosineWeightDecay(
        total_steps=total_steps,
        start_weight_decay=start_weight_decay,
        end_weight_decay=end_weight_decay,
        constant_after_step=constant_after_step,
    )
    return JEPAAdamW(
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        clipnorm=clipnorm,
        global_clipnorm=global_clipnorm,
        gradient_accumulation_steps=gradient_accumulation_steps,
        **kwargs,
    )
