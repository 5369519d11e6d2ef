"""The multi-view model's pretraining loss: L1 of the triangulated joints, L1 of the 2D
joints and a cross-entropy of the 2D heatmaps against a Gaussian at the true joint, on
labeled tuples."""

from __future__ import annotations

import torch
from torch import Tensor

from pose3d.geometry import project, world_to_camera


def mv_pretrain_loss(out: dict[str, Tensor], joints3d: Tensor, has_joints3d: Tensor,
                     K: Tensor, R: Tensor, t: Tensor, valid: Tensor, lambda_3d: float = 1.0,
                     lambda_2d: float = 0.0, stride: float = 1.0, lambda_heatmap: float = 0.0,
                     heatmap_sigma: float = 1.0) -> tuple[Tensor, dict]:
    """Loss for pretraining F_mv on labeled tuples.

    `out` is MultiViewTriangulationModel's output. The 3D term is the mean absolute error per
    coordinate (mm) between the triangulated joints and GT joints3d [B, J, 3], over joints
    with valid3d and tuples with has_joints3d [B]; as in learnable triangulation it trains
    the 2D stage and the confidences through the DLT. L1 keeps the gradient bounded while
    early triangulations are far off. The optional 2D term (λ_2d) is the mean absolute error
    per coordinate between joints2d and the GT projected into each valid view, in units of
    `stride` pixels (pass model.stride for heatmap pixels); it gives the 2D heatmaps a direct
    signal, which helps a backbone that starts without 2D pretraining. The optional heatmap
    term (λ_heatmap; needs out["heatmaps"], the model's return_heatmaps) is
    `heatmap_cross_entropy` over the same views and joints: the soft-argmax alone is
    satisfied by any distribution with the right mean, this term asks for the mass to
    gather at the joint (docs/design.md, "Pretraining F_mv").

    Returns (loss, parts) with parts {"3d", "2d", "heatmap", "loss"} as detached scalars.
    """
    has_gt = has_joints3d.bool()
    pred3d = out["joints3d"]
    if pred3d.shape != joints3d.shape:
        raise ValueError(f"joints3d must have shape {list(pred3d.shape)} like the model's "
                         f"joints3d, got {list(joints3d.shape)}")
    use3d = out["valid3d"] & has_gt[:, None] & torch.isfinite(pred3d).all(dim=-1)
    l3d = _masked_l1(pred3d, joints3d.float(), use3d)
    with torch.autocast(joints3d.device.type, enabled=False):
        gt = joints3d.float()[:, None]
        in_front = world_to_camera(gt, R.float(), t.float())[..., 2] > 1.0  # [B, V, J]
        target2d = project(gt, K.float(), R.float(), t.float())
    use2d = in_front & valid.bool()[..., None] & has_gt[:, None, None]
    target_hm = target2d / stride  # heatmap pixels
    l2d = _masked_l1(out["joints2d"] / stride, target_hm, use2d)
    loss = lambda_3d * l3d + lambda_2d * l2d
    parts = {"3d": l3d.detach(), "2d": l2d.detach()}
    if lambda_heatmap > 0:
        if "heatmaps" not in out:
            raise ValueError("lambda_heatmap > 0 needs the heatmaps: call the model with "
                             "return_heatmaps=True")
        lhm = heatmap_cross_entropy(out["heatmaps"], target_hm, use2d, heatmap_sigma)
        loss = loss + lambda_heatmap * lhm
        parts["heatmap"] = lhm.detach()
    return loss, {**parts, "loss": loss.detach()}


def heatmap_cross_entropy(heatmaps: Tensor, target: Tensor, mask: Tensor,
                          sigma: float = 1.0) -> Tensor:
    """Mean cross-entropy between softmax(heatmaps) and a Gaussian of std `sigma` centred on
    `target`, normalised over the heatmap, over the (view, joint) pairs where mask holds.

    heatmaps: logits [..., J, h, w]; target [..., J, 2] (x, y) in heatmap pixels, the
    soft-argmax's units (pixel centres at whole numbers); mask [..., J] bool. Its minimum,
    reached when the softmax is the Gaussian, is the Gaussian's entropy, not 0. Computed in
    float32; 0 with a gradient path when nothing is selected.
    """
    if sigma <= 0:
        raise ValueError(f"heatmap sigma must be > 0, got {sigma}")
    with torch.autocast(heatmaps.device.type, enabled=False):
        logits = heatmaps.float()
        h, w = logits.shape[-2:]
        logp = torch.log_softmax(logits.flatten(-2), dim=-1)
        target = target.float()
        target = torch.where(mask[..., None], target, torch.zeros_like(target))
        grid = [torch.arange(n, device=logits.device, dtype=torch.float32) for n in (w, h)]
        gx = torch.exp(-0.5 * ((grid[0] - target[..., :1]) / sigma) ** 2)  # [..., J, w]
        gy = torch.exp(-0.5 * ((grid[1] - target[..., 1:]) / sigma) ** 2)  # [..., J, h]
        gauss = (gy[..., :, None] * gx[..., None, :]).flatten(-2)
        # a target far outside the map leaves no mass: clamp, then normalise
        gauss = gauss / gauss.sum(-1, keepdim=True).clamp_min(1e-12)
        ce = -(gauss * logp).sum(-1)
        return (ce * mask).sum() / mask.sum().clamp_min(1)


def _masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |pred - target| per coordinate over the points where mask [...] holds, NaN-free;
    0 with a gradient path when nothing is selected."""
    # Mask the inputs, not the error: where() passes exact zeros back to the masked points,
    # whereas NaN there would turn the zero gradient of abs() into NaN.
    keep = mask[..., None]
    pred = torch.where(keep, pred, torch.zeros_like(pred))
    target = torch.where(keep, target, torch.zeros_like(target))
    return (pred - target).abs().mean(dim=-1).sum() / mask.sum().clamp_min(1)
