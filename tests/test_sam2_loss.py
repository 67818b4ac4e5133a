"""SAM 2 multi-step mask loss (UniPixel weights): golden values and hand-checked formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sam2_golden_utils import assert_close, case_data, case_names
from unipixel.sam2 import Sam2MultiStepLoss


def _golden_outputs(name: str) -> list[dict[str, torch.Tensor]]:
    data = case_data(name)
    outs = []
    t = 0
    while f"output.sam2.{t}.low_res_multimasks" in data:
        p = f"output.sam2.{t}."
        outs.append(
            {
                "multimasks": data[p + "low_res_multimasks"],
                "ious": data[p + "ious"],
                "object_score_logits": data[p + "object_score_logits"],
            }
        )
        t += 1
    return outs


@pytest.mark.parametrize("name", case_names(training=True))
def test_golden_loss_from_reference_outputs(name: str) -> None:
    """Fed the reference's own SAM 2 outputs, the loss reproduces the reference's loss terms."""
    data = case_data(name)
    losses = Sam2MultiStepLoss()(_golden_outputs(name), data["input.label_mask"])
    for key in ("loss_mask", "loss_dice", "loss_iou", "loss_class", "core_loss"):
        assert_close(losses[key], data[f"output.loss_seg_raw.{key}"], key)


def _manual(masks, ious, scores, target, n):
    """Straightforward per-object re-derivation of the loss for one frame."""
    w = {"loss_mask": 100.0, "loss_dice": 5.0, "loss_iou": 5.0, "loss_class": 5.0}
    tot = dict.fromkeys(w, 0.0)
    for o in range(masks.shape[0]):
        y = target[o].float()
        present = float(y.any())
        focal, dice, iou_err = [], [], []
        for m in range(masks.shape[1]):
            x = masks[o, m]
            p = torch.sigmoid(x)
            ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
            pt = p * y + (1 - p) * (1 - y)
            focal.append(((0.25 * y + 0.75 * (1 - y)) * ce * (1 - pt) ** 2).mean() / n)
            dice.append((1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)) / n)
            inter = ((x > 0) & (y > 0)).sum().float()
            union = ((x > 0) | (y > 0)).sum().float().clamp(min=1)
            iou_err.append((ious[o, m] - inter / union).abs() / n)
        best = min(range(len(focal)), key=lambda i: 100 * focal[i] + 5 * dice[i])
        tot["loss_mask"] += focal[best] * present
        tot["loss_dice"] += dice[best] * present
        tot["loss_iou"] += sum(iou_err) / len(iou_err) * present
        tot["loss_class"] += F.binary_cross_entropy_with_logits(scores[o, 0], torch.tensor(present)) / n
    tot["core_loss"] = sum(tot[k] * v for k, v in w.items())
    return tot


def test_matches_manual_formula_with_empty_object() -> None:
    gen = torch.Generator().manual_seed(1)
    frames, objs, size = 2, 3, 16
    target = torch.zeros(frames, objs, size, size, dtype=torch.uint8)
    target[:, 0, 3:9, 4:12] = 1
    target[0, 1, 10:14, 2:6] = 1  # object 1 only in frame 0; object 2 never present
    outs = [
        {
            "multimasks": torch.randn(objs, 3, size // 4, size // 4, generator=gen) * 3,
            "ious": torch.rand(objs, 3, generator=gen),
            "object_score_logits": torch.randn(objs, 1, generator=gen),
        }
        for _ in range(frames)
    ]
    losses = Sam2MultiStepLoss()(outs, target)
    expected = dict.fromkeys(losses, 0.0)
    for t in range(frames):
        hi = F.interpolate(outs[t]["multimasks"], size=(size, size), mode="bilinear", align_corners=False)
        for k, v in _manual(hi, outs[t]["ious"], outs[t]["object_score_logits"], target[t], objs).items():
            expected[k] = expected[k] + v
    for key, value in losses.items():
        torch.testing.assert_close(value, torch.as_tensor(expected[key]).float(), atol=1e-5, rtol=1e-5)


def test_high_res_input_and_multistep() -> None:
    gen = torch.Generator().manual_seed(2)
    target = (torch.rand(1, 2, 32, 32, generator=gen) > 0.5).to(torch.uint8)
    low = torch.randn(2, 3, 8, 8, generator=gen)
    ious = torch.rand(2, 3, generator=gen)
    scores = torch.randn(2, 1, generator=gen)
    loss = Sam2MultiStepLoss()
    a = loss([{"multimasks": low, "ious": ious, "object_score_logits": scores}], target)
    high = F.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)
    b = loss([{"multimasks_high_res": high, "ious": ious, "object_score_logits": scores}], target)
    c = loss(
        [{"multimasks": [low, low], "ious": [ious, ious], "object_score_logits": [scores, scores]}], target
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key])
        torch.testing.assert_close(c[key], 2 * a[key])


def test_gradients_flow_and_shape_errors() -> None:
    low = torch.randn(1, 3, 8, 8, requires_grad=True)
    ious = torch.rand(1, 3, requires_grad=True)
    scores = torch.randn(1, 1, requires_grad=True)
    target = torch.zeros(1, 1, 32, 32)
    target[0, 0, 4:20, 4:20] = 1
    out = Sam2MultiStepLoss()([{"multimasks": low, "ious": ious, "object_score_logits": scores}], target)
    out["core_loss"].backward()
    assert low.grad.abs().sum() > 0 and ious.grad.abs().sum() > 0 and scores.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="frame outputs"):
        Sam2MultiStepLoss()([], target)
