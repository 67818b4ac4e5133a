"""Query–pixel alignment: an optional training loss that points each ``<|seg|>`` query at its target's pixels.

Why it exists: trained from scratch, the seg head learns a large *constant* query (measured on the built-in model:
the expression-dependent part is 2-10 % of its norm) and SAM 2's decoder segments a salient object whatever the
expression says — the decoder ignores an uninformative query, and the query gets no pressure to become informative
while the decoder ignores it. This loss breaks that loop with a direct signal, in the spirit of text-to-pixel
contrastive learning for referring segmentation (CRIS, Wang et al. 2022): the cosine similarities between a query
(the mean of its K prompt tokens) and SAM 2's lowest-resolution image features of the conditioning frame, sharpened
by a temperature, form a distribution over locations that should put its mass where the target is. That is the
same dot product that the mask decoder's token→image attention computes, so an aligned query is one the decoder can
follow.

Off by default (``config.seg_align_weight = 0``): the released checkpoints were trained without it and inference
never uses it. It adds no parameters. Measured on the built-in model (model card, fifth session): with weight 1.0 it
points the query at *an* object rather than the referred one (no gain in 500 image-referring steps), because the
LLM state it starts from does not hold the expression; it is kept as a switch for training from stronger LLMs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def seg_alignment_loss(
    queries: torch.Tensor, vision: torch.Tensor, masks: torch.Tensor, temperature: float = 10.0
) -> torch.Tensor | None:
    """Cross-entropy between each target's area distribution and the query's softmax over feature locations.

    ``queries`` ``(O, K, D)`` SAM 2 prompt tokens of one sample; ``vision`` ``(D, h, w)`` SAM 2 image features of
    the conditioning frame; ``masks`` ``(O, S, S)`` the targets on that frame. Objects absent from the frame are
    skipped; returns ``None`` when every object is.
    """
    if queries.dim() != 3 or vision.dim() != 3 or masks.dim() != 3:
        raise ValueError(
            f"expected queries (O, K, D), vision (D, h, w), masks (O, S, S); got {tuple(queries.shape)}, "
            f"{tuple(vision.shape)}, {tuple(masks.shape)}"
        )
    if queries.shape[0] != masks.shape[0] or queries.shape[-1] != vision.shape[0]:
        raise ValueError(f"shape mismatch: queries {tuple(queries.shape)}, vision {tuple(vision.shape)}, masks "
                         f"{tuple(masks.shape)}")  # fmt: skip
    area = F.adaptive_avg_pool2d(masks.float().unsqueeze(1), vision.shape[-2:]).flatten(1)  # (O, h*w)
    present = area.sum(-1) > 0
    if not bool(present.any()):
        return None
    q = F.normalize(queries.mean(1), dim=-1)  # (O, D)
    f = F.normalize(vision.flatten(1), dim=0)  # (D, h*w)
    logp = torch.log_softmax(temperature * (q @ f), dim=-1)
    target = area[present] / area[present].sum(-1, keepdim=True)
    return -(target.to(logp.dtype) * logp[present]).sum(-1).mean()
