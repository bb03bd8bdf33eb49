"""The original SSD Repulsion fork's loss, reproduced for comparisons: never train rssd with it.

rssd started from a Repulsion Loss fork of ssd.pytorch. Its RepGT differs from the paper's (and rssd's) in how it
picks the repulsion target, and that difference is a bug on images with a single object. Notebook 04 shows the
bug and ``benchmarks/bench_loss.py`` times the fork's algorithm against rssd's; both use this module, which is
built from :mod:`rssd.losses`' pieces: only the choice of ``G_rep`` is the fork's own.

The fork's rule, exactly: for each positive prior, the IoU of every GT of its image (any class) with the prior's
*predicted* box; the entry of the prior's *matched* GT (matched by prior IoU, as usual) set to -1; ``G_rep`` is
the arg-max of that row. With a single GT the row is ``[-1]`` and the arg-max is the matched GT itself: the
prediction is repelled from its own target. Its RepGT is the plain sum of IoG (``sigma = 0``), weight 1, divided
by the number of positives. (rssd's rule, in :mod:`rssd.matching`, ranks the other GTs by IoU with the *prior*,
within the class, and gives no target when none overlaps.)
"""

from __future__ import annotations

import torch
from torch import Tensor

from rssd.boxes import elementwise_iou
from rssd.losses import Positives, RepulsionLoss

__all__ = ["fork_rep_targets", "ForkRepulsionLoss"]


def fork_rep_targets(
    pred_xyxy: Tensor, image: Tensor, matched_idx: Tensor, gt_boxes: Tensor, gt_valid: Tensor
) -> Tensor:
    """The fork's repulsion targets (module docstring).

    Args:
        pred_xyxy: ``(K, 4)`` decoded predictions of the positives (only read, never differentiated through).
        image: ``(K,)`` the image of each positive.
        matched_idx: ``(K,)`` the GT each positive is matched to (``Matches.matched_idx`` at the positives).
        gt_boxes: ``(N, G, 4)`` padded GTs, normalised ``xyxy``.
        gt_valid: ``(N, G)`` bool, False on padding rows (which are never chosen).

    Returns:
        ``(K,)`` long, the index (into ``G``) of every positive's repulsion GT; each positive has one. Ties go to the
        lowest index, as ``argmax`` gives them.
    """
    iou = elementwise_iou(gt_boxes[image], pred_xyxy.detach()[:, None, :])  # (K, G)
    iou = iou.masked_fill(~gt_valid[image], float("-inf"))  # padding: below the matched GT's -1
    iou = iou.scatter(1, matched_idx[:, None], -1.0)
    return iou.argmax(dim=1)


class ForkRepulsionLoss(RepulsionLoss):
    """The fork's loss: SSD's MultiBox loss plus its RepGT (:func:`fork_rep_targets`, ``sigma = 0``, weight 1).

    Args:
        num_classes: classes including background.
        beta: weight of RepBox (the fork had none: 0), computed as in :class:`~rssd.losses.RepulsionLoss`.
        sigma_box: Smooth_ln's sigma in RepBox.
        neg_pos_ratio, iou_threshold: as in :class:`~rssd.losses.MultiBoxLoss`.

    Returns the same named terms; ``total = loc + conf + rep_gt + beta * rep_box``.
    """

    def __init__(
        self,
        num_classes: int,
        beta: float = 0.0,
        sigma_box: float = 0.0,
        neg_pos_ratio: int = 3,
        iou_threshold: float = 0.5,
    ) -> None:
        super().__init__(
            num_classes, alpha=1.0, beta=beta, sigma_gt=0.0, sigma_box=sigma_box, same_class=False,
            neg_pos_ratio=neg_pos_ratio, iou_threshold=iou_threshold,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, beta={self.beta}, sigma_box={self.sigma_box} (the fork's RepGT)"

    def rep_targets(self, pos: Positives, pred_xyxy: Tensor) -> tuple[Tensor, Tensor]:
        """The fork's ``G_rep`` of every positive (each has one, possibly its own target)."""
        rep = fork_rep_targets(pred_xyxy, pos.image, pos.gt, pos.targets.boxes, pos.targets.valid)
        return pos.targets.boxes[pos.image, rep], torch.ones_like(pos.image, dtype=torch.bool)
