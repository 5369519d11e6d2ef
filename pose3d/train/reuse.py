"""Whether a rerun may reuse the work already in its folder (`pose3d demo`, `pose3d experiment`).

A run folder that holds a checkpoint is reused (a finished run is not trained again, a partly
trained one resumes) only when its run was made with the settings asked for now: the config
saved in its latest checkpoint equals the config that would run on every key that changes
what the run learns (data, model, optimisation, loss, seed, steps), and the checkpoint it
started from (config.initial_weights) is not newer than that checkpoint. Keys that say only
where and how it runs are not compared (NOT_COMPARED: paths, device, bf16, threads, W&B,
progress, checkpoint cadence). A rendered studio is reused only when its manifest records
the studio settings asked for. Otherwise SettingsMismatch, one line naming the differences;
nothing is deleted or rewritten (the user moves the folder away or chooses another).
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import yaml
from omegaconf import DictConfig

from pose3d.data.shards import MANIFEST, load_manifest
from pose3d.json_input import load_json
from pose3d.train import checkpoint
from pose3d.train.config import initial_weights, to_dict

# Where and how a run executes, logs and saves: the same run whatever their values. Paths
# name the same files wherever the folder was moved to.
NOT_COMPARED = ("run.root", "run.out_dir", "run.resume", "run.device", "run.amp",
                "run.amp_cpu", "run.channels_last", "run.compile", "run.dist_timeout_s",
                "run.progress", "run.wandb*", "run.log_every_steps", "run.image_every_steps",
                "run.ckpt_every_steps", "run.keep_checkpoints", "run.threads", "data.root",
                "data.pgt_root", "model.*.weights_path", "model.finetune_init",
                "model.sv_init_from_mv", "pgt.checkpoint")
SHOWN = 3  # differences named in the message


class SettingsMismatch(ValueError):
    """Work in the folder was made with other settings than those asked for."""


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(there: dict, asked: dict, ignore: tuple[str, ...] = ()) -> list[str]:
    """'key: asked vs there' for every key both nested dicts hold with other values (keys one
    of them lacks, e.g. from another pose3d version, are not compared)."""
    a, b = _flat(there), _flat(asked)
    return [f"{k}={b[k]!r} asked, {a[k]!r} there" for k in sorted(a.keys() & b.keys())
            if a[k] != b[k] and not any(fnmatch.fnmatchcase(k, p) for p in ignore)]


def refuse(folder: Path, what: str, diffs: list[str]) -> None:
    """SettingsMismatch: `folder` holds `what` made otherwise (`diffs`, the first SHOWN named)."""
    more = f" and {len(diffs) - SHOWN} more" if len(diffs) > SHOWN else ""
    raise SettingsMismatch(f"{folder} holds {what} made with other settings "
                           f"({'; '.join(diffs[:SHOWN])}{more}): it is not reused; move it "
                           f"away or choose another folder")


def check_run(cfg: DictConfig) -> None:
    """SettingsMismatch unless the run in cfg.run.out_dir (if it has a checkpoint) was made
    with `cfg`'s settings and from the initial weights as they are now."""
    out_dir = Path(cfg.run.out_dir)
    latest = checkpoint.find_latest(out_dir / "checkpoints")
    if latest is None:
        return  # nothing to reuse: the run starts afresh
    there = _saved_config(checkpoint.load(latest))
    if not there:
        raise SettingsMismatch(f"{latest} records no config, so the run in {out_dir} cannot "
                               f"be checked against the settings asked for; move it away")
    diffs = differences(there, to_dict(cfg), NOT_COMPARED)
    if diffs:
        refuse(out_dir, "a run", diffs)
    init = initial_weights(cfg)
    if init is not None and Path(init.path).is_file() \
            and Path(init.path).stat().st_mtime_ns > latest.stat().st_mtime_ns:
        refuse(out_dir, "a run", [f"{init.key}: {init.path} is newer than the run's "
                                   f"checkpoint"])


def check_dataset(folder: str | Path, record: dict) -> None:
    """SettingsMismatch unless the dataset in `folder` (if any) records `record` as the
    `config` of its manifest (the studio's settings, pose3d.data.synth)."""
    folder = Path(folder)
    try:
        manifest = load_json((folder / MANIFEST).read_bytes(), str(folder / MANIFEST))
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise SettingsMismatch(f"{folder / MANIFEST} cannot be read ({exc}): move the folder "
                               f"away") from None
    there = manifest.get("config") if isinstance(manifest, dict) else None
    record = json.loads(json.dumps(record))  # tuples as the manifest holds them: lists
    diffs = differences(there, record) if isinstance(there, dict) else ["no recorded config"]
    if diffs:
        refuse(folder, "a dataset", diffs)


def check_finished_demo(demo: str | Path) -> None:
    """Before any work of `pose3d experiment --demo DEMO`: one line (FileNotFoundError,
    ValueError) unless DEMO holds what a finished `pose3d demo` leaves: its dataset, its
    P-GT (a manifest with the P-GT stage's record) and a Base that trained all its epochs
    (a demo stopped during sv_pretrain leaves a checkpoint that is not Base yet)."""
    demo = Path(demo)
    again = f"(the demo did not finish: run `pose3d demo --out {demo}` again to finish it)"
    for folder in (demo / "data", demo / "runs" / "pgt_shards"):
        if not (folder / MANIFEST).is_file():
            raise FileNotFoundError(f"--demo {demo}: no {folder / MANIFEST} {again}")
    if "pgt" not in load_manifest(demo / "runs" / "pgt_shards"):
        raise ValueError(f"--demo {demo}: runs/pgt_shards holds no P-GT (its manifest has no "
                         f"pgt record) {again}")
    base = demo / "runs" / "sv_pretrain"
    latest = base / "checkpoints" / checkpoint.LATEST
    if not (base / "config.yaml").is_file() or not latest.is_file():
        raise FileNotFoundError(f"--demo {demo}: no Base (runs/sv_pretrain/config.yaml and "
                                f"checkpoints/{checkpoint.LATEST}) {again}")
    try:
        ckpt = checkpoint.load(latest)
    except checkpoint.CheckpointError as exc:
        raise ValueError(f"--demo {demo}: {exc}") from None
    epochs = _flat(_saved_config(ckpt)).get("optim.sv_pretrain.epochs")
    if not isinstance(epochs, int) or not isinstance(ckpt.get("epoch"), int) \
            or ckpt["epoch"] < epochs:
        raise ValueError(f"--demo {demo}: Base ({latest}) stopped at step {ckpt.get('step')}, "
                         f"epoch {ckpt.get('epoch')} of {epochs} {again}")


def _saved_config(ckpt: dict) -> dict:
    """The config a checkpoint records, as a nested dict ({} when none or unreadable)."""
    saved = ckpt.get("config")
    try:
        there = yaml.safe_load(saved) if isinstance(saved, str) else saved
    except yaml.YAMLError:
        return {}
    return there if isinstance(there, dict) else {}
