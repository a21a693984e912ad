"""A NumPy port of the official I-JEPA multi-block mask collator, for comparison only.

Ported from facebookresearch/ijepa `src/masks/multiblock.py` (`MaskCollator`),
with its behaviour kept on purpose, flaws included:

- block tops/lefts from `randint(0, H - h)`, which excludes the last valid start;
- `while h >= H: h -= 1`, so a block never spans the whole grid;
- a mask is valid when it has *strictly more* than `min_keep` tokens; after
  every 20 failed context positions, one more target block is allowed to
  overlap the context (so the context can then contain target tokens);
- every mask of the batch is truncated to the shortest one, keeping the first
  indices in raster order.

Differences that do not change the distribution: NumPy generators replace
torch's (`torch.rand(1, generator=g)` with a generator seeded by the step
counter for the sizes; the global torch RNG for positions), the batch is given
by its size, and masks are returned as NumPy int64 arrays.

This file is not part of the library; `benchmarks/masker_statistics.py` uses it.
"""

import math

import numpy as np


class ReferenceMaskCollator:
    """The I-JEPA `MaskCollator`, defaults as in the paper's ImageNet configs."""

    def __init__(
        self,
        input_size=(224, 224),
        patch_size=16,
        enc_mask_scale=(0.85, 1.0),
        pred_mask_scale=(0.15, 0.2),
        aspect_ratio=(0.75, 1.5),
        nenc=1,
        npred=4,
        min_keep=10,
        allow_overlap=False,
        seed=0,
    ):
        if not isinstance(input_size, tuple):
            input_size = (input_size,) * 2
        self.patch_size = patch_size
        self.height, self.width = input_size[0] // patch_size, input_size[1] // patch_size
        self.enc_mask_scale = enc_mask_scale
        self.pred_mask_scale = pred_mask_scale
        self.aspect_ratio = aspect_ratio
        self.nenc = nenc
        self.npred = npred
        self.min_keep = min_keep
        self.allow_overlap = allow_overlap
        self._itr_counter = -1
        # Stands in for torch's global RNG (block positions).
        self._rng = np.random.default_rng(seed)
        self.relaxations = 0  # how often a context mask was allowed to overlap a target

    def step(self):
        self._itr_counter += 1
        return self._itr_counter

    def _sample_block_size(self, generator, scale, aspect_ratio_scale):
        _rand = float(generator.random())
        min_s, max_s = scale
        mask_scale = min_s + _rand * (max_s - min_s)
        max_keep = int(self.height * self.width * mask_scale)
        min_ar, max_ar = aspect_ratio_scale
        aspect_ratio = min_ar + _rand * (max_ar - min_ar)
        h = int(round(math.sqrt(max_keep * aspect_ratio)))
        w = int(round(math.sqrt(max_keep / aspect_ratio)))
        while h >= self.height:
            h -= 1
        while w >= self.width:
            w -= 1
        return (h, w)

    def _sample_block_mask(self, b_size, acceptable_regions=None):
        h, w = b_size

        def constrain_mask(mask, tries=0):
            n = max(int(len(acceptable_regions) - tries), 0)
            for k in range(n):
                mask *= acceptable_regions[k]

        tries = 0
        timeout = og_timeout = 20
        valid_mask = False
        while not valid_mask:
            top = int(self._rng.integers(0, self.height - h))
            left = int(self._rng.integers(0, self.width - w))
            mask = np.zeros((self.height, self.width), dtype=np.int32)
            mask[top : top + h, left : left + w] = 1
            if acceptable_regions is not None:
                constrain_mask(mask, tries)
            mask = np.nonzero(mask.flatten())[0]
            valid_mask = len(mask) > self.min_keep
            if not valid_mask:
                timeout -= 1
                if timeout == 0:
                    tries += 1
                    self.relaxations += 1
                    timeout = og_timeout
        mask_complement = np.ones((self.height, self.width), dtype=np.int32)
        mask_complement[top : top + h, left : left + w] = 0
        return mask, mask_complement

    def sample(self, batch_size):
        """Masks for one batch, like `__call__` minus the image collation.

        Returns:
            `(masks_enc, masks_pred, full_lengths)`: `masks_enc` int64
            `(nenc, B, K_enc)` and `masks_pred` `(npred, B, K_pred)` after the
            per-batch truncation (the layout `default_collate` gives the
            reference's lists), and the context lengths before truncation `(B,)`.
        """
        seed = self.step()
        g = np.random.default_rng(seed)
        p_size = self._sample_block_size(g, self.pred_mask_scale, self.aspect_ratio)
        e_size = self._sample_block_size(g, self.enc_mask_scale, (1.0, 1.0))

        collated_masks_pred, collated_masks_enc = [], []
        min_keep_pred = self.height * self.width
        min_keep_enc = self.height * self.width
        full_lengths = []
        for _ in range(batch_size):
            masks_p, masks_c = [], []
            for _ in range(self.npred):
                mask, mask_c = self._sample_block_mask(p_size)
                masks_p.append(mask)
                masks_c.append(mask_c)
                min_keep_pred = min(min_keep_pred, len(mask))
            collated_masks_pred.append(masks_p)

            acceptable_regions = None if self.allow_overlap else masks_c
            masks_e = []
            for _ in range(self.nenc):
                mask, _ = self._sample_block_mask(e_size, acceptable_regions=acceptable_regions)
                masks_e.append(mask)
                min_keep_enc = min(min_keep_enc, len(mask))
                full_lengths.append(len(mask))
            collated_masks_enc.append(masks_e)

        masks_pred = np.stack(
            [np.stack([m[:min_keep_pred] for m in ms]) for ms in collated_masks_pred], axis=1
        )
        masks_enc = np.stack(
            [np.stack([m[:min_keep_enc] for m in ms]) for ms in collated_masks_enc], axis=1
        )
        return masks_enc, masks_pred, np.asarray(full_lengths)
