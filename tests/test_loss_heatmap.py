"""The heatmap term of F_mv's pretraining loss (loss.lambda_heatmap): cross-entropy of the
2D heatmaps against a Gaussian at the true joint."""

import math

import numpy as np
import pytest
import torch
from pose_tuples import make_tuples

from pose3d.geometry import project
from pose3d.losses import heatmap_cross_entropy, mv_pretrain_loss
from pose3d.ops.soft_argmax import soft_argmax_2d_reference


def _numpy_cross_entropy(logits, target, mask, sigma):
    """A loop over (view, joint) pairs, written from the definition."""
    total, count = 0.0, 0
    n, j, h, w = logits.shape
    ys, xs = np.mgrid[0:h, 0:w]
    for a in range(n):
        for b in range(j):
            if not mask[a, b]:
                continue
            g = np.exp(-((xs - target[a, b, 0]) ** 2 + (ys - target[a, b, 1]) ** 2)
                       / (2 * sigma ** 2))
            g /= g.sum()
            z = logits[a, b].astype(np.float64)
            logp = z - z.max() - np.log(np.exp(z - z.max()).sum())
            total += -(g * logp).sum()
            count += 1
    return total / max(count, 1)


def test_matches_a_loop_over_the_definition():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 6, 7, generator=g) * 3
    target = torch.rand(3, 4, 2, generator=g) * torch.tensor([6.0, 5.0])
    mask = torch.rand(3, 4, generator=g) > 0.3
    for sigma in (0.7, 1.0, 2.0):
        got = heatmap_cross_entropy(logits, target, mask, sigma)
        want = _numpy_cross_entropy(logits.numpy(), target.numpy(), mask.numpy(), sigma)
        assert got.item() == pytest.approx(want, rel=1e-5)


def test_lowest_where_the_softmax_is_the_gaussian():
    target = torch.tensor([[[2.3, 3.6]]])
    mask = torch.tensor([[True]])
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(7.0), indexing="ij")
    gauss = torch.exp(-((xs - 2.3) ** 2 + (ys - 3.6) ** 2) / 2)
    gauss = gauss / gauss.sum()
    best = heatmap_cross_entropy(gauss.log()[None, None], target, mask)
    entropy = -(gauss * gauss.log()).sum()
    assert best.item() == pytest.approx(entropy.item(), rel=1e-5)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        other = gauss.log() + 0.3 * torch.randn(6, 7, generator=g)
        assert heatmap_cross_entropy(other[None, None], target, mask) > best


def test_minimising_it_brings_the_soft_argmax_to_the_joint():
    # the soft-argmax alone is met by any distribution with the right mean; this term alone,
    # minimised, gathers the mass at the joint and so also puts the mean there
    g = torch.Generator().manual_seed(2)
    logits = (torch.randn(2, 5, 12, 12, generator=g) * 2).requires_grad_()
    target = 2 + torch.rand(2, 5, 2, generator=g) * 7  # inside: no Gaussian cut by an edge
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert (soft_argmax_2d_reference(logits.detach()) - target).norm(dim=-1).max() > 1
    opt = torch.optim.Adam([logits], lr=0.3)
    for _ in range(300):
        opt.zero_grad()
        heatmap_cross_entropy(logits, target, mask).backward()
        opt.step()
    error = (soft_argmax_2d_reference(logits.detach()) - target).norm(dim=-1)
    assert error.max() < 0.05  # heatmap pixels


def test_masked_out_pairs_count_for_nothing_and_stay_nan_free():
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    target = torch.full((2, 3, 2), float("nan"))  # no target where the mask is False
    mask = torch.zeros(2, 3, dtype=torch.bool)
    loss = heatmap_cross_entropy(logits, target, mask)
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="sigma must be > 0"):
        heatmap_cross_entropy(logits, target, mask, sigma=0.0)


def test_mv_pretrain_loss_adds_the_term_on_the_valid_views():
    data = make_tuples(2, 3, 64)
    cams = data["K"], data["R"], data["t"]
    stride = 4.0
    joints2d = project(data["joints3d"][:, None], *cams)
    valid = torch.tensor([[True, True, True], [True, False, True]])
    heatmaps = torch.randn(2, 3, 17, 16, 16)
    out = {"joints3d": data["joints3d"], "joints2d": joints2d,
           "valid3d": torch.ones(2, 17, dtype=torch.bool), "heatmaps": heatmaps}
    has = torch.tensor([True, True])
    base, parts0 = mv_pretrain_loss(out, data["joints3d"], has, *cams, valid, lambda_2d=1.0,
                                    stride=stride)
    loss, parts = mv_pretrain_loss(out, data["joints3d"], has, *cams, valid, lambda_2d=1.0,
                                   stride=stride, lambda_heatmap=0.5, heatmap_sigma=1.5)
    use = valid[..., None].expand(2, 3, 17)
    want = heatmap_cross_entropy(heatmaps, joints2d / stride, use, 1.5)
    assert "heatmap" not in parts0 and parts["heatmap"].item() == pytest.approx(want.item())
    assert loss.item() == pytest.approx(base.item() + 0.5 * want.item(), rel=1e-6)
    assert math.isfinite(loss.item())
    del out["heatmaps"]
    with pytest.raises(ValueError, match="return_heatmaps=True"):
        mv_pretrain_loss(out, data["joints3d"], has, *cams, valid, lambda_heatmap=1.0)
