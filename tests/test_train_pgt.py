"""The P-GT stage's output against the multi-view model itself: `pose3d train stage=pgt` on a
tiny studio with a tiny multi-view checkpoint, then the checkpoint loaded here and run on the
same tuples."""

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from train_data import raw_samples, write_tiny_dataset
from train_helpers import TINY

from pose3d import cli
from pose3d.data import schema
from pose3d.data.loader import iterate_samples, make_eval_loader
from pose3d.data.shards import shards_for_role
from pose3d.models import build_model
from pose3d.train import checkpoint
from pose3d.train.agreeing import is_current as is_agreeing
from pose3d.train.agreeing import write_agreeing_pgt
from pose3d.train.oracle import pgt_digest

SIZE = 32


def _train(*args: str) -> None:
    assert cli.main(["train", "--config", TINY, *args]) == 0


@pytest.fixture(scope="module")
def pgt_run(tmp_path_factory):
    """A tiny studio, F_mv after one step of mv_pretrain, and the P-GT shards it wrote."""
    root = tmp_path_factory.mktemp("pgt")
    data = root / "data"
    write_tiny_dataset(data, frames=6, image_size=SIZE)
    common = [f"data.root={data}", f"data.image_size={SIZE}", f"run.root={root}",
              "data.batches_per_epoch=1"]
    _train(*common, "stage=mv_pretrain", "optim.mv_pretrain.epochs=1",
           "optim.mv_pretrain.batch_size=1")
    mv = root / "mv_pretrain" / "checkpoints" / "latest.pt"
    _train(*common, "stage=pgt", f"pgt.checkpoint={mv}")
    return data, mv, root / "pgt_shards", common


def _multi_view_model(path) -> torch.nn.Module:
    """F_mv rebuilt by hand from tiny.yaml's model.mv and the checkpoint's weights."""
    model = build_model({"kind": "multi_view", "backbone": "resnet10", "deconv_channels": 16,
                         "num_deconv": 2})
    model.load_state_dict(checkpoint.load(path)["model"])
    return model.eval()


@pytest.mark.slow
def test_pgt_is_the_multi_view_models_prediction(pgt_run):
    data, mv, pgt_root, _ = pgt_run
    _check_pgt_is_prediction(data, mv, pgt_root, {})


@pytest.mark.slow
def test_pgt_with_its_options_is_the_models_prediction_with_them(pgt_run):
    data, mv, _, common = pgt_run
    pgt_root = data.parent / "pgt_options"
    _train(*common, "stage=pgt", f"pgt.checkpoint={mv}", f"data.pgt_root={pgt_root}",
           f"run.out_dir={data.parent / 'pgt_options_run'}", "pgt.flip_test=true",
           "pgt.reject_px=2", "pgt.sharpen=2")
    _check_pgt_is_prediction(data, mv, pgt_root, {"flip_test": True, "reject_px": 2.0,
                                                  "sharpen": 2.0})
    report = json.loads((data.parent / "pgt_options_run" / "pgt_report.json").read_text())
    assert report["sharpen"] == 2.0 and report["flip_test"] and report["reject_px"] == 2.0


@torch.no_grad()
def _check_pgt_is_prediction(data, mv, pgt_root, options: dict) -> None:
    written = {s.key: s for s in iterate_samples(str(pgt_root))}
    assert written and all(s.pgt is not None and s.joints3d is None for s in written.values())
    model = _multi_view_model(mv)
    compared = 0
    for batch in make_eval_loader(shards_for_role(data, "unlabeled"), 4):
        out = model(batch["images"], batch["K"], batch["R"], batch["t"], batch["valid"],
                    **options)
        for i, key in enumerate(batch["key"]):
            if key not in written:  # a tuple whose triangulation failed is left out
                assert not out["valid3d"][i].all()
                continue
            torch.testing.assert_close(torch.from_numpy(written[key].pgt),
                                       out["joints3d"][i], atol=1e-3, rtol=1e-5)  # mm
            compared += 1
    assert compared == len(written)


@pytest.mark.slow
def test_pgt_is_not_the_withheld_truth(pgt_run):
    data, _, pgt_root, _ = pgt_run
    truth = {}
    for url in shards_for_role(data, "unlabeled"):
        with tarfile.open(url) as tar:
            for member in tar.getmembers():
                key, _, name = member.name.partition(".")
                if name == schema.WITHHELD_FILE:
                    truth[key] = np.load(io.BytesIO(tar.extractfile(member).read()))
    written = list(iterate_samples(str(pgt_root)))
    assert truth and all(s.key in truth for s in written)
    # a barely trained F_mv is far from the truth: the P-GT is its guess, not the GT
    errors = [float(np.linalg.norm(s.pgt - truth[s.key], axis=-1).mean()) for s in written]
    assert min(errors) > 1.0  # mm


def _soft_argmax_np(logits: np.ndarray) -> np.ndarray:
    """[N, J, h, w] -> [N, J, 2] (x, y) heatmap pixels: the softmax-weighted mean of the
    pixel indices (pixel centres at integers), written here in float64."""
    n, j, h, w = logits.shape
    flat = logits.reshape(n, j, h * w).astype(np.float64)
    p = np.exp(flat - flat.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ys, xs = np.divmod(np.arange(h * w), w)
    return np.stack([p @ xs, p @ ys], axis=-1)


def _dlt_np(uv: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray,
            w: np.ndarray) -> np.ndarray:
    """One joint from V views: uv [V, 2] px, cameras K [V,3,3] R [V,3,3] t [V,3], weights
    [V]. Rows w (u P3 - P1), w (v P3 - P2) in the frame X = m + s q (m, s: weighted centroid
    and RMS distance of the camera centres, docs of pose3d.ops.triangulate); float64 SVD."""
    centres = -np.einsum("vji,vj->vi", R, t)
    m = (w[:, None] * centres).sum(0) / w.sum()
    s = np.sqrt((w * ((centres - m) ** 2).sum(-1)).sum() / w.sum())
    frame = np.block([[s * np.eye(3), m[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]])
    rows = []
    for v in range(len(uv)):
        P = K[v] @ np.hstack([R[v], t[v][:, None]]) @ frame
        rows += [w[v] * (uv[v, 0] * P[2] - P[0]), w[v] * (uv[v, 1] * P[2] - P[1])]
    q = np.linalg.svd(np.array(rows))[2][-1]
    return m + s * q[:3] / q[3]


@pytest.mark.slow
@torch.no_grad()
def test_sharpened_pgt_is_the_soft_argmax_of_scaled_logits_triangulated(pgt_run):
    """pgt.sharpen=2: every written P-GT joint is the DLT, weighted by F_mv's confidences,
    of the soft-argmax of 2 x its heatmap logits; both computed here outside the model's
    forward (its trunk, heads and nothing else), so a forward that dropped the option fails.
    The unsharpened reading lies well away, so the check can tell the two apart."""
    data, trained, _, common = pgt_run
    # One step of training leaves the heatmaps nearly flat, where sharpening changes little:
    # the same F_mv with its heatmap logits scaled up has peaks for the option to act on.
    state = checkpoint.load(trained)
    for name in ("head.final.weight", "head.final.bias"):
        state["model"][name] = state["model"][name] * 1e6
    mv = data.parent / "mv_peaked.pt"
    torch.save(state, mv)
    pgt_root = data.parent / "pgt_sharpen"
    _train(*common, "stage=pgt", f"pgt.checkpoint={mv}", f"data.pgt_root={pgt_root}",
           f"run.out_dir={data.parent / 'pgt_sharpen_run'}", "pgt.sharpen=2")
    written = {s.key: s.pgt for s in iterate_samples(str(pgt_root))}
    model = _multi_view_model(mv)
    gaps, compared = [], 0
    for batch in make_eval_loader(shards_for_role(data, "unlabeled"), 4):
        b, v = batch["images"].shape[:2]
        features = model.trunk(batch["images"].flatten(0, 1))
        logits = model.head(features).numpy()                        # [B*V, J, h, w]
        conf = model.confidence(features).numpy().reshape(b, v, -1)
        stride = batch["images"].shape[-1] / logits.shape[-1]
        K, R, t = (batch[k].double().numpy() for k in ("K", "R", "t"))
        conf = conf * batch["valid"].numpy()[..., None]
        for scale in (2.0, 1.0):
            uv = (_soft_argmax_np(scale * logits) * stride).reshape(b, v, -1, 2)
            for i, key in enumerate(batch["key"]):
                if key not in written:
                    continue
                ours = np.stack([_dlt_np(uv[i, :, j], K[i], R[i], t[i], conf[i, :, j])
                                 for j in range(uv.shape[2])])
                if scale == 2.0:
                    np.testing.assert_allclose(written[key], ours, atol=0.1)  # mm
                    compared += 1
                else:
                    gaps.append(np.linalg.norm(written[key] - ours, axis=-1).max())
    assert compared == len(written) > 0
    assert min(gaps) > 50.0  # mm: unsharpened P-GT could not pass the check above


def _pgt_stage(common: list[str], mv, pgt_root, out_dir) -> int:
    return cli.main(["train", "--config", TINY, *common, "stage=pgt", f"pgt.checkpoint={mv}",
                     f"data.pgt_root={pgt_root}", f"run.out_dir={out_dir}"])


def _contents(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["user_folder", "data_root", "inside_data_root",
                                   "holds_data_root", "other_dataset"])
def test_pgt_never_replaces_a_folder_it_did_not_write(pgt_run, tmp_path, capsys, where):
    data, mv, _, common = pgt_run
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("my notes")
    other = tmp_path / "converted"  # a dataset of ours, but not a P-GT
    other.mkdir()
    for name in ("manifest.json", "eval-000000.tar"):
        (other / name).write_bytes((data / name).read_bytes() if (data / name).exists()
                                   else b"shard")
    target = {"user_folder": user, "data_root": data, "inside_data_root": data / "pgt",
              "holds_data_root": data.parent, "other_dataset": other}[where]
    before = {p: _contents(p) for p in (user, data, other)}
    assert _pgt_stage(common, mv, target, tmp_path / "run") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pose3d train: error: ") and "\n" not in err
    assert {"user_folder": "notes.txt", "data_root": "must be apart",
            "inside_data_root": "must be apart", "holds_data_root": "must be apart",
            "other_dataset": "without a pgt record"}[where] in err
    assert {p: _contents(p) for p in (user, data, other)} == before
    assert not (data / "pgt").exists()


@pytest.mark.slow
def test_pgt_rerun_replaces_its_own_folder_as_a_whole(pgt_run, tmp_path):
    data, mv, _, common = pgt_run
    target = tmp_path / "pgt"
    assert _pgt_stage(common, mv, target, tmp_path / "run") == 0
    (target / "stale-000099.tar").write_bytes(b"an earlier run's shard")
    assert _pgt_stage(common, mv, target, tmp_path / "run") == 0
    assert not (target / "stale-000099.tar").exists()
    assert json.loads((target / "manifest.json").read_text())["pgt"]["labeled"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pgt", "run"]  # nothing left over


def _residuals_by_hand(mv, shards) -> tuple[dict[str, float], dict[str, float]]:
    """{key: reprojection residual (px)} of the tuples F_mv triangulates, from its 2D joints
    and its 3D joints projected in float64; and {key: root-aligned error (mm)} of those with
    a truth."""
    model = _multi_view_model(mv)
    residual, truth_err = {}, {}
    with torch.no_grad():
        for batch in make_eval_loader(shards, 4, keep_raw=True):
            out = model(batch["images"], batch["K"], batch["R"], batch["t"], batch["valid"])
            for i, key in enumerate(batch["key"]):
                if not out["valid3d"][i].all():
                    continue
                errs = []
                for v in np.flatnonzero(batch["valid"][i].numpy()):
                    K, R, t = (batch[k][i, v].double().numpy() for k in ("K", "R", "t"))
                    cam = out["joints3d"][i].double().numpy() @ R.T + t
                    uv = cam[:, :2] / cam[:, 2:] * np.diag(K)[:2] + K[:2, 2]
                    errs.append(np.linalg.norm(uv - out["joints2d"][i, v].numpy(), axis=-1)
                                .mean())
                residual[key] = float(np.mean(errs))
                truth = schema.raw_truth(batch["raw"][i])
                if truth is not None:
                    pred = out["joints3d"][i].numpy()
                    truth_err[key] = float(np.linalg.norm(
                        (pred - pred[0]) - (truth - truth[0]), axis=-1).mean())
    return residual, truth_err


@pytest.mark.slow
def test_pgt_leaves_out_the_tuples_whose_views_disagree(pgt_run):
    """pgt.max_residual_px: a tuple is written only if its reprojection residual, computed
    here by hand from the model's 2D joints and the written P-GT, is within the limit; the
    report scores what is kept and what is left out."""
    data, mv, _, common = pgt_run
    residual, truth_err = _residuals_by_hand(mv, shards_for_role(data, "unlabeled"))
    limit = float(np.median(list(residual.values())))
    kept = {k for k, r in residual.items() if r <= limit}
    assert 0 < len(kept) < len(residual)
    pgt_root, out_dir = data.parent / "pgt_residual", data.parent / "pgt_residual_run"
    _train(*common, "stage=pgt", f"pgt.checkpoint={mv}", f"data.pgt_root={pgt_root}",
           f"run.out_dir={out_dir}", f"pgt.max_residual_px={limit}")
    assert {s.key for s in iterate_samples(str(pgt_root))} == kept
    report = json.loads((out_dir / "pgt_report.json").read_text())
    left_out = set(residual) - kept
    assert report["rejected_residual"] == len(left_out) and report["max_residual_px"] == limit
    assert report["mpjpe_mm"] == pytest.approx(np.mean([truth_err[k] for k in kept]), rel=1e-3)
    assert report["mpjpe_rejected_mm"] == pytest.approx(
        np.mean([truth_err[k] for k in left_out]), rel=1e-3)


def test_residual_split_scores_the_kept_and_the_left_out():
    from pose3d.eval.teacher import residual_split

    residuals = np.arange(10.0)  # px
    errors = np.array([10.0] * 8 + [50.0, 70.0])  # mm: the two worst-agreeing are worst
    rows = residual_split(residuals, errors, keep=(0.8,))
    assert rows == [{"keep": 0.8, "max_residual_px": pytest.approx(7.2),
                     "mpjpe_kept_mm": 10.0, "mpjpe_left_out_mm": 60.0}]
    assert residual_split(residuals[:5], errors[:5]) == []  # too few tuples to split


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32))
    return buffer.getvalue()


def test_the_pgt_report_scores_only_the_tuples_with_withheld_truth():
    """A batch mixing tuples with and without withheld truth, and one the model cannot
    triangulate: the report's means are over the scored tuples alone, as computed by hand."""
    from types import SimpleNamespace

    from pose3d.train import pgt
    from pose3d.train.config import load_config

    rng = np.random.default_rng(0)
    truth = [rng.normal(0.0, 300.0, (17, 3)) for _ in range(5)]
    shifted = truth[0] + np.array([10.0, 0.0, 0.0])  # root-aligned 0 mm, absolute 10 mm
    one_joint_off = truth[2].copy()
    one_joint_off[5, 1] += 34.0  # root-aligned and absolute: 34 / 17 = 2 mm
    preds = np.stack([shifted, truth[1] + 50.0, one_joint_off, truth[3] - 80.0, truth[4]])
    has_truth = [True, False, True, False, True]
    valid = torch.ones(5, 4, dtype=torch.bool)
    valid[4, :] = False  # untriangulable: dropped, its truth not scored
    meta = {schema.META_FILE: json.dumps({"role": "unlabeled"}).encode()}
    raws = [{"__key__": f"t{i}", **meta,
             **({schema.WITHHELD_FILE: _npy(t)} if has_truth[i] else {})}
            for i, t in enumerate(truth)]

    def model(*args, **kwargs):
        return {"joints3d": torch.as_tensor(preds, dtype=torch.float32), "valid3d": valid,
                "joints2d": torch.zeros(5, 4, 17, 2)}

    written = []
    cfg = load_config(None, ["stage=pgt", "run.device=cpu"])
    eye = torch.eye(3).repeat(5, 4, 1, 1)
    batch = {"raw": raws, "images": torch.zeros(5, 4, 3, 8, 8), "K": eye, "R": eye,
             "t": torch.zeros(5, 4, 3), "valid": valid}
    stats = pgt.PseudoGroundTruth()._label(model, batch, SimpleNamespace(write=written.append),
                                           cfg, SimpleNamespace(device=torch.device("cpu")))
    report = pgt._report(np.concatenate([stats, [0.0, 0.0]]))  # no skipped sample or shard
    assert [w["__key__"] for w in written] == ["t0", "t1", "t2", "t3"]
    assert (report["tuples"], report["labeled"], report["dropped"], report["scored"]) == \
        (5, 4, 1, 2)
    assert report["mpjpe_mm"] == pytest.approx((0.0 + 2.0) / 2, abs=1e-3)
    assert report["abs_error_mm"] == pytest.approx((10.0 + 2.0) / 2, abs=1e-3)


@pytest.mark.slow
def test_the_agreeing_pgt_is_the_share_whose_views_agree_best(pgt_run, tmp_path):
    """L1-agree's folder: the half of the P-GT tuples with the lowest residual (computed
    here by hand), labels and files unchanged, the P-GT folder untouched."""
    data, mv, pgt_root, _ = pgt_run
    residual, _ = _residuals_by_hand(mv, str(pgt_root))
    before = pgt_digest(pgt_root)
    out = tmp_path / "agree"
    record = write_agreeing_pgt(pgt_root, out, data, keep=0.5)
    ranked = sorted(residual, key=residual.get)
    kept = ranked[:int(np.ceil(len(ranked) / 2))]
    assert {s.key for s in iterate_samples(str(out))} == set(kept)
    assert (record["tuples"], record["labeled"]) == (len(ranked), len(kept))
    assert record["max_residual_px"] == pytest.approx(residual[kept[-1]], rel=1e-4)
    assert record["from_sha256"] == before == pgt_digest(pgt_root)
    source = {r["__key__"]: r for r in raw_samples(pgt_root, "unlabeled")}
    for raw in raw_samples(out, "unlabeled"):
        assert raw == source[raw["__key__"]]  # every file as the P-GT stage wrote it
    assert is_agreeing(out, pgt_root, 0.5) and not is_agreeing(out, pgt_root, 0.7)
    with pytest.raises(ValueError, match="keep must be in"):
        write_agreeing_pgt(pgt_root, tmp_path / "none", data, keep=0.0)
