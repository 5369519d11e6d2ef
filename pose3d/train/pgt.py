"""The offline P-GT stage (docs/design.md, eq. 3): run the pretrained multi-view model on every
unlabeled tuple and write new shards that carry its prediction as `pgt.npy`.

The tuples are read by the evaluation loader (pose3d.data.loader.make_eval_loader), so each
rank labels the share training and evaluation would give it, and a corrupt shard or sample
is skipped and counted by the same rule (`skipped_shards`, `skipped_samples` in the
report). Each rank writes into a folder of its own beside `data.pgt_root`; rank 0 then merges
them into one folder with one manifest, swapped in for `data.pgt_root` only when complete and
non-empty (the old P-GT goes only once the new one is in place): a run that labels nothing
fails (NothingLabeledError) and leaves the previous P-GT as it was. `data.pgt_root` must be
absent, empty or an earlier P-GT (a manifest with its `pgt` record and nothing but dataset
files), and apart from `data.root` (neither holds the other): anything else is refused before
any work, so no user's folder and no source shard is ever deleted. The copies keep every
original file byte for byte. A tuple whose triangulation fails for any
joint (fewer than two usable views) gets no P-GT and is left out.

Where the ground truth of an unlabeled tuple exists, the P-GT is scored against it: a
converter or the studio may store it as `withheld_joints3d.npy`, which the training loader
never reads (or as `joints3d.npy`, though then the tuple would not be unlabeled). The report
(MPJPE root-aligned and absolute, mm, and the labelling's seconds) goes to
`<run.out_dir>/pgt_report.json`, the P-GT manifest, metrics.jsonl and W&B.

Three labelling options (docs/design.md, "P-GT"; off by default; docs/results.md, "where
the teacher's error comes from", has their measurements): `pgt.flip_test` averages the 2D
joints with the mirrored images' reading, `pgt.reject_px` leaves out, per joint, a view
whose 2D joint is that many pixels off the triangulated point, `pgt.sharpen` reads each 2D
joint from that multiple of the heatmap logits (pose3d.models.multi_view).
`pgt.max_residual_px` leaves out a whole tuple whose views disagree (reprojection residual,
`reprojection_residual`); the report gives the P-GT error of what is kept (`mpjpe_mm`) and
of what is left out (`mpjpe_rejected_mm`), so a user sees whether the residual finds the bad
labels.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from pose3d.data import schema
from pose3d.data.loader import make_eval_loader
from pose3d.data.shards import (
    MANIFEST,
    ShardSetWriter,
    load_manifest,
    write_manifest,
)
from pose3d.data.staging import DATASET_FILES, _swap, check_writable
from pose3d.geometry.metrics import mpjpe
from pose3d.json_input import load_json
from pose3d.models.multi_view import reprojection_residual
from pose3d.models.saved import load_model
from pose3d.train import checkpoint, distributed
from pose3d.train.config import ConfigError, stage_optim, to_yaml
from pose3d.train.distributed import DistInfo
from pose3d.train.logger import Logger
from pose3d.train.loop import autocast, fork_safe_opencv
from pose3d.train.run_lock import hold_run_folder
from pose3d.train.sources import stage_shards
from pose3d.train.stage_base import batch_to
from pose3d.train.stages import check_image_size

WITHHELD_FILE = schema.WITHHELD_FILE
# Inside the staging folder beside data.pgt_root: marks it as this stage's, so that a rerun
# removes only a folder it made, never a user's folder of the same name.
PARTIAL_MARKER = ".pose3d-pgt-partial"


class NothingLabeledError(RuntimeError):
    """The P-GT stage produced no P-GT (every tuple corrupt or untriangulable): the previous
    P-GT shards stay as they were."""


withheld_gt = schema.raw_truth  # the ground truth of a tuple, if it has one


class PseudoGroundTruth:
    """`stage=pgt`: label the unlabeled tuples with F_mv."""

    name = "pgt"

    def check_inputs(self, cfg: DictConfig) -> list[str]:
        urls = stage_shards(cfg, "data.root", cfg.data.root, cfg.data.unlabeled_role)
        check_image_size(cfg.data.root, cfg)
        check_pgt_root(cfg.data.pgt_root, cfg.data.root)
        check_partial(partial_folder(cfg.data.pgt_root))
        check_writable(cfg.run.out_dir, "run folder (run.out_dir)")
        if not Path(cfg.pgt.checkpoint).is_file():
            raise checkpoint.CheckpointError(f"pgt.checkpoint not found: {cfg.pgt.checkpoint} "
                                             f"(run stage=mv_pretrain first)")
        return urls

    def run(self, cfg: DictConfig) -> dict:
        urls = self.check_inputs(cfg)
        fork_safe_opencv()
        info = distributed.setup(cfg.run.device, cfg.run.dist_timeout_s)
        try:
            with hold_run_folder(cfg.run.out_dir, take=info.is_main):
                return self._run(cfg, info, urls)
        finally:
            distributed.cleanup()

    def _load_model(self, cfg: DictConfig, info: DistInfo) -> torch.nn.Module:
        model = load_model(cfg.pgt.checkpoint, info.device, kind="multi_view").model
        if cfg.run.channels_last and info.device.type == "cuda":
            model.to(memory_format=torch.channels_last)
        return model

    def _run(self, cfg: DictConfig, info: DistInfo, urls: list[str]) -> dict:
        model = self._load_model(cfg, info)
        out_root, partial = Path(cfg.data.pgt_root), partial_folder(cfg.data.pgt_root)
        if info.is_main:
            _fresh_partial(partial)
        distributed.barrier()
        logger = Logger(cfg, cfg.run.out_dir, info.is_main)
        if info.is_main:
            (Path(cfg.run.out_dir) / "config.yaml").write_text(to_yaml(cfg))
        # tuples, written, scored, sum MPJPE, sum absolute error, rejected by the residual,
        # scored of those, their sum MPJPE, skipped samples, skipped shards
        stats = np.zeros(10)
        bar = logger.progress(None, 0, "pgt", cfg.run.progress)
        start = time.perf_counter()
        # The loader's reader: its rank split and its rule for a corrupt shard or sample.
        loader = make_eval_loader(urls, stage_optim(cfg).batch_size, rank=info.rank,
                                  world_size=info.world_size, image_size=cfg.data.image_size,
                                  keep_raw=True)
        with ShardSetWriter(partial / f"rank{info.rank}", cfg.pgt.samples_per_shard) as writer:
            for batch in loader:
                stats[:8] += self._label(model, batch, writer, cfg, info)
                bar.update(len(batch["raw"]))
        bar.close()
        stats[8], stats[9] = loader.skipped["sample"], loader.skipped["tar"]
        stats[0] += stats[8]  # a corrupt tuple counts as seen and dropped
        totals = distributed.all_reduce_sum(torch.tensor(stats, dtype=torch.float64)).numpy()
        distributed.barrier()
        report = _report(totals) | {"flip_test": bool(cfg.pgt.flip_test),
                                    "reject_px": float(cfg.pgt.reject_px),
                                    "sharpen": float(cfg.pgt.sharpen),
                                    "max_residual_px": float(cfg.pgt.max_residual_px),
                                    "label_s": round(time.perf_counter() - start, 2)}
        if info.is_main:
            if report["labeled"] == 0:
                shutil.rmtree(partial, ignore_errors=True)
            else:
                self._merge(partial, out_root, cfg, info.world_size, report)
            Path(cfg.run.out_dir, "pgt_report.json").write_text(json.dumps(report, indent=1))
            logger.log({f"pgt/{k}": v for k, v in report.items() if v is not None}, step=0)
            print(f"pgt: {json.dumps(report)} -> {out_root}", flush=True)
        logger.close()
        distributed.barrier()
        if report["labeled"] == 0:
            raise NothingLabeledError(
                f"pgt labeled none of the {report['tuples']} unlabeled tuples in "
                f"{cfg.data.root} ({report['skipped_samples']} corrupt, "
                f"{report['skipped_shards']} unreadable shard(s)); {out_root} left as it was")
        return report

    @torch.no_grad()
    def _label(self, model, batch: dict, writer: ShardSetWriter, cfg: DictConfig,
               info: DistInfo) -> np.ndarray:
        raws = batch["raw"]
        batch = batch_to(batch, info.device)
        with autocast(cfg, info.device):
            out = model(batch["images"], batch["K"], batch["R"], batch["t"], batch["valid"],
                        flip_test=cfg.pgt.flip_test, reject_px=cfg.pgt.reject_px,
                        sharpen=cfg.pgt.sharpen)
        joints = out["joints3d"].float().cpu()
        ok = (out["valid3d"].all(dim=1).cpu() & torch.isfinite(joints).all(dim=-1).all(dim=-1))
        residual = reprojection_residual(out, batch).cpu().tolist()
        limit = float(cfg.pgt.max_residual_px)
        stats = np.zeros(8)
        stats[0] = len(raws)
        for raw, pred, good, res in zip(raws, joints.numpy(), ok.tolist(), residual):
            # a tuple of another role in an unlabeled shard (a forged or mislabeled shard)
            # would carry that role into the P-GT folder, which fine-tuning then refuses
            if not good or _role(raw) != cfg.data.unlabeled_role:
                continue
            gt = withheld_gt(raw)
            if limit > 0 and res > limit:  # the views disagree: left out, scored apart
                stats[5] += 1
                if gt is not None:
                    stats[6] += 1
                    stats[7] += float(mpjpe(pred[None], gt[None])[0])
                continue
            writer.write(schema.with_pgt(raw, pred))
            stats[1] += 1
            if gt is not None:
                stats[2] += 1
                stats[3] += float(mpjpe(pred[None], gt[None])[0])
                stats[4] += float(mpjpe(pred[None], gt[None], root=None)[0])
        return stats

    def _merge(self, partial: Path, out_root: Path, cfg: DictConfig, world: int,
               report: dict) -> None:
        """The ranks' shard folders -> one folder with one manifest, swapped in at the end."""
        source = load_manifest(cfg.data.root)
        roles: dict[str, dict] = {}
        index = itertools.count()
        for r in range(world):
            folder = partial / f"rank{r}"
            part = load_manifest(folder)
            for role, entry in part["roles"].items():
                merged = roles.setdefault(role, {"subjects": set(), "samples": 0, "shards": []})
                merged["subjects"].update(entry["subjects"])
                merged["samples"] += entry["samples"]
                for shard in entry["shards"]:
                    name = f"{role}-{next(index):06d}.tar"
                    os.replace(folder / shard["file"], partial / name)
                    merged["shards"].append({"file": name, "samples": shard["samples"]})
            shutil.rmtree(folder)
        for entry in roles.values():
            entry["subjects"] = sorted(entry["subjects"])
        manifest = {k: v for k, v in source.items() if k != "roles"}
        manifest.update(roles=roles, pgt={"checkpoint": str(cfg.pgt.checkpoint), **report})
        write_manifest(partial, manifest)
        (partial / PARTIAL_MARKER).unlink()  # the P-GT folder holds dataset files only
        check_pgt_root(out_root, cfg.data.root)  # still ours: nothing moved in meanwhile
        _swap(partial, out_root)


def check_pgt_root(pgt_root: str | os.PathLike, data_root: str | os.PathLike) -> None:
    """Whether the P-GT may be written to `pgt_root`, replacing what is there: ConfigError
    when it is `data_root` or one holds the other; FileExistsError unless it is absent,
    empty or an earlier P-GT (a manifest with a `pgt` record, only dataset files)."""
    out, source = Path(pgt_root).resolve(), Path(data_root).resolve()
    if out == source or source in out.parents or out in source.parents:
        raise ConfigError(f"bad config: data.pgt_root {pgt_root} and data.root {data_root} "
                          f"must be apart (neither inside the other): the P-GT stage "
                          f"replaces data.pgt_root as a whole")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"data.pgt_root {pgt_root} is a file, not a folder")
    check_writable(out.parent, "data.pgt_root's parent folder")  # the swap writes there
    entries = sorted(out.iterdir()) if out.is_dir() else []
    foreign = [p for p in entries
               if not (p.is_file() and any(p.match(g) for g in DATASET_FILES))]
    if entries and (foreign or not _has_pgt_record(out)):
        what = foreign[0].name if foreign else f"a {MANIFEST} without a pgt record"
        raise FileExistsError(f"data.pgt_root {pgt_root} holds {what}, which the P-GT stage "
                              f"did not write, and the stage replaces that folder as a "
                              f"whole: move it away or choose another data.pgt_root")


def partial_folder(pgt_root: str | os.PathLike) -> Path:
    """The staging folder beside data.pgt_root that the P-GT stage writes into."""
    out = Path(pgt_root)
    return out.parent / f".{out.name}.partial"


def check_partial(partial: Path) -> None:
    """FileExistsError (one line) when `partial` exists without this stage's marker: a
    folder the stage did not make, which it must not remove."""
    if partial.exists() and not (partial / PARTIAL_MARKER).is_file():
        raise FileExistsError(f"{partial} exists and was not made by the P-GT stage (no "
                              f"{PARTIAL_MARKER} in it), and the stage stages its output "
                              f"there: move it away or choose another data.pgt_root")


def _fresh_partial(partial: Path) -> None:
    """An empty, marked staging folder; an earlier run's (marked) one is removed first."""
    check_partial(partial)  # again: something may have moved in since check_inputs
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    (partial / PARTIAL_MARKER).write_text(f"staging folder of pose3d's P-GT stage, process "
                                          f"{os.getpid()}\n")


def _has_pgt_record(folder: Path) -> bool:
    try:
        return "pgt" in load_json((folder / MANIFEST).read_bytes(), str(folder / MANIFEST))
    except (OSError, ValueError, TypeError):
        return False


def _role(raw: dict) -> object:
    """The role in a raw sample's meta.json (which the reader has checked)."""
    return json.loads(raw[schema.META_FILE])["role"]


def _report(totals: np.ndarray) -> dict:
    (tuples, written, scored, sum_rel, sum_abs, rejected, scored_rejected, sum_rejected,
     bad_samples, bad_shards) = totals.tolist()
    return {"tuples": int(tuples), "labeled": int(written), "dropped": int(tuples - written),
            "skipped_samples": int(bad_samples), "skipped_shards": int(bad_shards),
            "scored": int(scored),
            "mpjpe_mm": sum_rel / scored if scored else None,
            "abs_error_mm": sum_abs / scored if scored else None,
            "rejected_residual": int(rejected),
            "mpjpe_rejected_mm": sum_rejected / scored_rejected if scored_rejected else None}
