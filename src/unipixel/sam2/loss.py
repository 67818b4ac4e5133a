"""SAM 2 multi-step mask loss as configured by UniPixel (written from the loss formulas).

Per frame, with O objects and ``N = max(1, mean over ranks of O)``:

* focal loss (alpha 0.25, gamma 2, mean over pixels) and dice loss (+1 smoothing) of each of the three
  multimask outputs (upsampled to the label size) against the label mask; only the mask with the smallest
  ``w_mask * focal + w_dice * dice`` is penalised;
* IoU head: L1 between predicted IoU and the actual IoU of ``logit > 0`` with the label, averaged over the
  three masks (``supervise_all_iou``);
* focal/dice/IoU terms count only when the label is non-empty on that frame;
* object-score loss: binary cross-entropy (focal with alpha -1, gamma 0) against "label non-empty";
* every term is summed over objects and divided by N; the per-frame terms are summed over frames and
  ``core_loss = 100 * mask + 5 * dice + 5 * iou + 5 * class`` (UniPixel's weights, 5x upstream SAM 2).

The model divides ``core_loss`` by the number of frames; that is the caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Sam2MultiStepLoss",
    "sam2_mask_loss",
    "sigmoid_focal_loss",
    "dice_loss",
    "iou_l1_loss",
    "CORE_LOSS_KEY",
]

CORE_LOSS_KEY = "core_loss"
DEFAULT_WEIGHTS: dict[str, float] = {"loss_mask": 100.0, "loss_dice": 5.0, "loss_iou": 5.0, "loss_class": 5.0}


def sigmoid_focal_loss(
    logits: Tensor,
    targets: Tensor,
    num_objects: float,
    alpha: float = 0.25,
    gamma: float = 2.0,
    per_mask: bool = False,
) -> Tensor:
    """Focal loss; ``per_mask`` -> (N, M) mean over pixels, else mean over the last dim, summed; both / N."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = ce
    if gamma != 0:
        p_t = prob * targets + (1 - prob) * (1 - targets)
        loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if per_mask:
        return loss.flatten(2).mean(-1) / num_objects
    return loss.mean(1).sum() / num_objects


def dice_loss(logits: Tensor, targets: Tensor, num_objects: float) -> Tensor:
    """Per-mask dice loss (N, M) with +1 smoothing, divided by N objects."""
    prob = logits.sigmoid().flatten(2)
    tgt = targets.flatten(2)
    numerator = 2 * (prob * tgt).sum(-1)
    denominator = prob.sum(-1) + tgt.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)) / num_objects


def iou_l1_loss(logits: Tensor, targets: Tensor, pred_ious: Tensor, num_objects: float) -> Tensor:
    """Per-mask L1 error (N, M) of the predicted IoU vs the IoU of ``logits > 0`` with ``targets > 0``."""
    pred = logits.flatten(2) > 0
    gt = targets.flatten(2) > 0
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    actual = inter / union.clamp(min=1.0)
    return F.l1_loss(pred_ious, actual.to(pred_ious.dtype), reduction="none") / num_objects


def _global_num_objects(num_objects: int, device: torch.device) -> float:
    """Mean object count over ranks (so every rank normalises alike), at least 1."""
    n = torch.tensor(float(num_objects), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return max(n.item(), 1.0)


class Sam2MultiStepLoss(nn.Module):
    """``MultiStepMultiMasksAndIous`` equivalent with UniPixel's settings (no parameters).

    ``forward(outputs, targets)``: ``outputs`` is one mapping per frame (as returned by
    :func:`unipixel.sam2.tracker.forward_train`) with ``multimasks`` (O, M, h, w) low-res logits (upsampled
    bilinearly to the label size here) or ``multimasks_high_res``, ``ious`` (O, M) and
    ``object_score_logits`` (O, 1); each may also be a list of steps. ``targets`` is (T, O, H, W).
    Returns the summed-over-frames ``loss_mask``, ``loss_dice``, ``loss_iou``, ``loss_class`` and
    ``core_loss``. When torch.distributed is initialised, every rank must call this equally often.
    """

    def __init__(
        self,
        weight_dict: Mapping[str, float] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        focal_alpha_obj_score: float = -1.0,
        focal_gamma_obj_score: float = 0.0,
        supervise_all_iou: bool = True,
    ) -> None:
        super().__init__()
        self.weight_dict = dict(DEFAULT_WEIGHTS if weight_dict is None else weight_dict)
        for key in DEFAULT_WEIGHTS:
            if key not in self.weight_dict:
                raise ValueError(f"weight_dict is missing {key}")
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.focal_alpha_obj_score = focal_alpha_obj_score
        self.focal_gamma_obj_score = focal_gamma_obj_score
        self.supervise_all_iou = supervise_all_iou

    def forward(
        self, outputs: Sequence[Mapping[str, Tensor | Sequence[Tensor]]], targets: Tensor
    ) -> dict[str, Tensor]:
        if len(outputs) != targets.shape[0]:
            raise ValueError(f"{len(outputs)} frame outputs but {targets.shape[0]} target frames")
        num_objects = _global_num_objects(targets.shape[1], targets.device)
        totals: dict[str, Tensor] = {}
        for frame_out, frame_targets in zip(outputs, targets, strict=True):
            for key, value in self._frame_losses(frame_out, frame_targets, num_objects).items():
                totals[key] = totals[key] + value if key in totals else value
        return totals

    @staticmethod
    def _steps(value: Tensor | Sequence[Tensor]) -> list[Tensor]:
        return [value] if isinstance(value, Tensor) else list(value)

    def _frame_losses(
        self, out: Mapping[str, Tensor | Sequence[Tensor]], targets: Tensor, num_objects: float
    ) -> dict[str, Tensor]:
        target = targets.unsqueeze(1).float()  # (O, 1, H, W)
        if "multimasks_high_res" in out:
            masks_steps = self._steps(out["multimasks_high_res"])
        else:
            masks_steps = [
                F.interpolate(m.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
                for m in self._steps(out["multimasks"] if "multimasks" in out else out["low_res_multimasks"])
            ]
        ious_steps = self._steps(out["ious"])
        score_steps = self._steps(out["object_score_logits"])
        if not len(masks_steps) == len(ious_steps) == len(score_steps):
            raise ValueError("multimasks, ious and object_score_logits must have the same number of steps")
        losses: dict[str, Tensor] = {}
        for masks, ious, scores in zip(masks_steps, ious_steps, score_steps, strict=True):
            for key, value in self._step_losses(
                masks.float(), target, ious.float(), scores.float(), num_objects
            ).items():
                losses[key] = losses[key] + value if key in losses else value
        losses[CORE_LOSS_KEY] = sum(losses[k] * w for k, w in self.weight_dict.items() if w != 0)
        return losses

    def _step_losses(
        self, masks: Tensor, target: Tensor, ious: Tensor, scores: Tensor, num_objects: float
    ) -> dict[str, Tensor]:
        target = target.expand_as(masks)
        focal = sigmoid_focal_loss(
            masks, target, num_objects, self.focal_alpha, self.focal_gamma, per_mask=True
        )
        dice = dice_loss(masks, target, num_objects)
        present = torch.any((target[:, 0] > 0).flatten(1), dim=-1)[..., None].float()  # (O, 1)
        loss_class = sigmoid_focal_loss(
            scores, present, num_objects, self.focal_alpha_obj_score, self.focal_gamma_obj_score
        )
        iou = iou_l1_loss(masks, target, ious, num_objects)
        rows = torch.arange(masks.shape[0], device=masks.device)
        if focal.shape[1] > 1:
            combo = focal * self.weight_dict["loss_mask"] + dice * self.weight_dict["loss_dice"]
            best = torch.argmin(combo, dim=-1)
            loss_mask = focal[rows, best].unsqueeze(1)
            loss_dice = dice[rows, best].unsqueeze(1)
            loss_iou = iou.mean(-1, keepdim=True) if self.supervise_all_iou else iou[rows, best].unsqueeze(1)
        else:
            loss_mask, loss_dice, loss_iou = focal, dice, iou
        return {
            "loss_mask": (loss_mask * present).sum(),
            "loss_dice": (loss_dice * present).sum(),
            "loss_iou": (loss_iou * present).sum(),
            "loss_class": loss_class,
        }


def sam2_mask_loss(
    outputs: Sequence[Mapping[str, Tensor | Sequence[Tensor]]],
    targets: Tensor,
    weight_dict: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """Functional form of :class:`Sam2MultiStepLoss` with UniPixel's settings (summed over frames)."""
    return Sam2MultiStepLoss(weight_dict)(outputs, targets)
