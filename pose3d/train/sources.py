"""What a stage may read: the one rule every stage (mv_pretrain, pgt, sv_pretrain, finetune)
goes through for its shards, checked before any work (issue 32).

A stage names what it reads as config key -> (folder, role), and `stage_shards` resolves
those only after `check_source` allows them:
- every read names one role: no stage reads "every role of a folder";
- no stage reads the eval role (`data.eval_role`, or the schema's 'eval' whatever that key
  says), by any configuration: the eval tuples are only ever evaluated;
- `data.pgt_root` is read only from a P-GT folder: a manifest with the `pgt` record the P-GT
  stage writes, holding the unlabeled role and nothing else.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig

from pose3d.data.shards import load_manifest, resolve_shards
from pose3d.train.config import ConfigError

EVAL_ROLE = "eval"  # pose3d.data.schema.ROLES' evaluation role
PGT_KEY = "data.pgt_root"


def check_source(cfg: DictConfig, key: str, folder: str, role: str | None) -> None:
    """ConfigError (one line) unless stage cfg.stage may read `role` of `folder`, named by
    config key `key` (see the module docstring); FileNotFoundError naming the key when the
    folder is missing."""
    if role is None:
        raise ConfigError(f"bad config: {key}: stage {cfg.stage} must read one role of "
                          f"{folder}, not every role (that includes the eval tuples)")
    if role in (EVAL_ROLE, cfg.data.eval_role):
        raise ConfigError(f"bad config: stage {cfg.stage} would read the eval role {role!r} "
                          f"of {key}={folder}: no stage trains or labels on the eval tuples "
                          f"(check data.labeled_role, data.unlabeled_role, data.eval_role)")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{key}: no such shard folder {folder}")
    if key == PGT_KEY:
        _check_pgt_folder(folder, role)


def _check_pgt_folder(folder: str, role: str) -> None:
    manifest = load_manifest(folder)
    if "pgt" not in manifest:
        raise ConfigError(f"bad config: {PGT_KEY}={folder} is not a P-GT folder (its "
                          f"manifest has no pgt record): point it at what stage=pgt wrote")
    roles = sorted(manifest["roles"])
    if roles != [role]:
        raise ConfigError(f"bad config: {PGT_KEY}={folder} holds the roles {roles}; a P-GT "
                          f"folder holds the unlabeled role {role!r} and nothing else")


def stage_shards(cfg: DictConfig, key: str, folder: str, role: str | None) -> list[str]:
    """The shard paths of `role` in `folder` (config key `key`), once check_source allows
    the read."""
    check_source(cfg, key, folder, role)
    return resolve_shards(folder, role)
