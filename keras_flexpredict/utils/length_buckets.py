"""Static slot sizes for a compiled train step to choose between, batch by batch.

The masker gives every batch the same static slots (`Kc` context, `Kt` target tokens),
so that XLA compiles one program; a batch's real masks are often shorter (the official
masks' context holds 57-77 tokens of 77 slots at ViT-Tiny 224/16 batch 8, 66 on
average). Eager torch and TensorFlow graphs cut each batch to its own lengths
(`utils.padding.trim_padding`). A compiled JAX step cannot, so it compiles a few
*length buckets* `(kc, kt)` and runs each batch at the cheapest one its masks fit
(`utils.jax_length_buckets`).

`choose_length_buckets` picks those buckets from a sample of the batches' longest
masks (`MultiBlockMasker.longest_mask_samples`): greedily, the bucket that most lowers
the expected cost of a step, until `max_buckets` or until the next bucket would save
less than `min_saving` of it. The cost of a bucket is linear in its slots, weighted by
the model work a context and a target token cost (`token_weights`).

Example:
>>> import numpy as np
>>> context = np.array([60, 62, 70, 77, 61, 69])
>>> target = np.array([30, 36, 31, 32, 30, 33])
>>> choose_length_buckets(context, target, 77, 36, (5.0, 4.0), max_buckets=2)
((62, 36), (77, 36))
"""

import numpy as np

__all__ = ["choose_length_buckets", "first_fitting_bucket", "token_weights"]


def token_weights(encoder, predictor, num_targets):
    """The model work of one context and one target slot of one image, in units of
    `width^2 x depth` (the matmuls of a transformer block per token; attention's
    quadratic term is left out): a context token runs through the context encoder and,
    once per target block, through the predictor; a target token only through the
    predictor. Returns `(context_weight, target_weight)`."""
    predictor_work = num_targets * predictor.hidden_dim**2 * predictor.depth
    encoder_work = encoder.hidden_dim**2 * encoder.depth
    return float(encoder_work + predictor_work), float(predictor_work)


def choose_length_buckets(
    context_lengths, target_lengths, context_slots, target_slots, weights, max_buckets=4, min_saving=0.01
):
    """Up to `max_buckets` slot sizes `(kc, kt)`, cheapest first, the last always the
    full slots `(context_slots, target_slots)`.

    Args:
        context_lengths, target_lengths: int arrays, one entry per sampled batch: the
            longest real context and target mask of that batch.
        context_slots, target_slots: int. The masker's static slots.
        weights: `(context_weight, target_weight)`, the cost of one slot of each
            (`token_weights`).
        max_buckets: int >= 1.
        min_saving: float. A bucket is added only if it lowers the expected cost by at
            least this fraction of the full slots' cost.

    Returns:
        A tuple of `(kc, kt)` int pairs, sorted by cost.
    """
    context_lengths = np.minimum(np.asarray(context_lengths, np.int64), context_slots)
    target_lengths = np.minimum(np.asarray(target_lengths, np.int64), target_slots)
    wc, wt = weights
    full = (int(context_slots), int(target_slots))
    full_cost = wc * full[0] + wt * full[1]
    buckets = [full]
    cost = np.full(context_lengths.shape, full_cost)  # per sample: its cheapest fitting bucket
    candidates = [
        (int(c), int(t)) for c in np.unique(context_lengths) for t in np.unique(target_lengths)
    ]
    while len(buckets) < max_buckets and candidates:
        best, best_cost = None, cost
        for c, t in candidates:
            fits = (context_lengths <= c) & (target_lengths <= t)
            new = np.where(fits, np.minimum(cost, wc * c + wt * t), cost)
            if new.mean() < best_cost.mean():
                best, best_cost = (c, t), new
        if best is None or cost.mean() - best_cost.mean() < min_saving * full_cost:
            break
        buckets.append(best)
        candidates.remove(best)
        cost = best_cost
    return tuple(sorted(set(buckets), key=lambda b: (wc * b[0] + wt * b[1], b)))


def first_fitting_bucket(buckets, context_length, target_length):
    """The first of `buckets` (`(kc, kt)` pairs, cheapest first) that holds a context
    of `context_length` and targets of `target_length` tokens; the last bucket (the
    masker's slots) holds every mask.

    >>> first_fitting_bucket(((60, 30), (70, 36), (77, 36)), 65, 30)
    (70, 36)
    """
    for bucket in buckets:
        if context_length <= bucket[0] and target_length <= bucket[1]:
            return tuple(bucket)
    return tuple(buckets[-1])
