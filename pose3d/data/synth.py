"""`pose3d synth`: render the synthetic multi-view studio into tar shards per role.

    pose3d synth --out data/studio --image-size 128 --workers 2 --preview 4

writes DIR/{labeled,unlabeled,eval}-NNNNNN.tar, DIR/manifest.json and (with --preview)
DIR/preview.png. Clips are rendered in parallel processes; the output does not depend on
the number of workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pose3d.data import motion, studio
from pose3d.data.shard_preview import write_preview
from pose3d.data.shards import ShardSetWriter
from pose3d.data.staging import check_output, staged_dataset
from pose3d.data.studio import Job, StudioConfig

# Set in each worker process by _init_worker (and in this process for workers=1).
_STATE: dict = {}


def _init_worker(config: StudioConfig, bvh_clips: dict | None) -> None:
    _STATE["config"], _STATE["bvh"] = config, bvh_clips


def _render_job(job: Job) -> list[dict]:
    config = _STATE["config"]
    poses = studio.clip_poses(job, config, _STATE["bvh"])
    return [studio.encode_tuple(*t) for t in studio.clip_tuples(job, poses, config)]


def _load_bvh(config: StudioConfig) -> dict[str, np.ndarray] | None:
    if not config.bvh:
        return None
    clips = dict(motion.clips_from_bvh_files(list(config.bvh), config.fps))
    if not clips:
        raise ValueError(f"no usable clip in the BVH files {list(config.bvh)}")
    return clips


def _actions(config: StudioConfig, bvh_clips: dict | None) -> list[str]:
    known = list(bvh_clips) if bvh_clips else list(motion.ACTIONS)
    if config.actions is None:
        return known
    unknown = [a for a in config.actions if a not in known]
    if unknown:
        raise ValueError(f"unknown actions {unknown}; known: {', '.join(known)}")
    return list(config.actions)


def _results(jobs: list[Job], config: StudioConfig, bvh_clips, workers: int
             ) -> Iterator[list[dict]]:
    if workers <= 1:
        _init_worker(config, bvh_clips)
        yield from map(_render_job, jobs)
        return
    ctx = multiprocessing.get_context("spawn" if os.name != "posix" else "fork")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(config, bvh_clips)) as pool:
        yield from pool.imap(_render_job, jobs, chunksize=1)


def synthesize(out_dir: str | os.PathLike, config: StudioConfig, *, workers: int = 1,
               samples_per_shard: int = 200, shuffle_buffer: int = 500,
               progress: bool = True, preview: int = 0, overwrite: bool = False) -> dict:
    """Render every (role, subject, action, clip) of `config` into shards in `out_dir`;
    returns the manifest (also written to out_dir/manifest.json). preview > 0 also writes
    out_dir/preview.png with that many tuples. A non-empty `out_dir` is an error unless
    `overwrite`; either way the new dataset replaces it only once complete
    (pose3d.data.staging)."""
    check_output(out_dir, overwrite)
    bvh_clips = _load_bvh(config)
    actions = _actions(config, bvh_clips)
    jobs = studio.plan_jobs(config, actions)
    if not jobs:
        raise ValueError("nothing to render: no subject in any role")
    with staged_dataset(out_dir, overwrite) as tmp:
        return _render(tmp, config, jobs, actions, bvh_clips, workers=workers,
                       samples_per_shard=samples_per_shard, shuffle_buffer=shuffle_buffer,
                       progress=progress, preview=preview)


def _render(out_dir: Path, config: StudioConfig, jobs: list[Job], actions: list[str],
            bvh_clips, *, workers: int, samples_per_shard: int, shuffle_buffer: int,
            progress: bool, preview: int) -> dict:
    rigs = {subject: [c.undistorted().to_dict()
                      for c in studio.subject_rig(subject, config.cameras, config.seed)]
            for subjects in config.roles.values() for subject in subjects}
    writer = ShardSetWriter(out_dir, samples_per_shard, shuffle_buffer=shuffle_buffer,
                            seed=config.seed)
    with writer, tqdm(total=len(jobs), unit="clip", disable=not progress,
                      desc="synth") as bar:
        tuples = 0
        for samples in _results(jobs, config, bvh_clips, workers):
            for sample in samples:
                writer.write(sample)
            tuples += len(samples)
            bar.update(1)
            bar.set_postfix(tuples=tuples)
        manifest = writer.close(dataset="synthetic", actions=actions, cameras=rigs,
                                config=config_record(config))
    if preview > 0:
        write_preview(Path(out_dir) / "preview.png", os.fspath(out_dir), preview)
    return manifest


def config_record(config: StudioConfig) -> dict:
    """The studio's settings as the manifest records them (JSON types)."""
    d = dataclasses.asdict(config)
    d["roles"] = {k: list(v) for k, v in d["roles"].items()}
    d["actions"] = None if d["actions"] is None else list(d["actions"])
    d["bvh"] = [os.path.basename(p) for p in d["bvh"]]
    return d


def _role_clips(text: str) -> tuple[str, int]:
    role, _, clips = text.partition("=")
    if not clips.isdigit():
        raise argparse.ArgumentTypeError(f"expected ROLE=N (e.g. labeled=6), got {text!r}")
    return role, int(clips)


def _subjects(text: str) -> tuple[str, ...]:
    return tuple(s for s in text.split(",") if s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    roles = studio.DEFAULT_ROLES
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--labeled", type=_subjects, default=roles["labeled"],
                        help="labeled subjects, comma separated (default S1,S5,S6)")
    parser.add_argument("--unlabeled", type=_subjects, default=roles["unlabeled"],
                        help="unlabeled subjects (default S7,S8; '' for none)")
    parser.add_argument("--eval", type=_subjects, default=roles["eval"],
                        help="evaluation subjects (default S9,S11)")
    parser.add_argument("--actions", type=_subjects, default=None,
                        help="actions (default: all; with --bvh: BVH clip names)")
    parser.add_argument("--clips-per-action", type=int, default=2)
    parser.add_argument("--clips-per-role", type=_role_clips, nargs="+", default=[],
                        metavar="ROLE=N", help="clips per action for these roles instead "
                        "(e.g. labeled=6: more labeled poses, the same evaluation)")
    parser.add_argument("--frames-per-clip", type=int, default=100)
    parser.add_argument("--frame-step", type=int, default=5, help="keep every Nth frame")
    parser.add_argument("--image-size", type=int, default=256, help="square input size, px")
    parser.add_argument("--cameras", default="h36m", help="'h36m' (4 views) or 'random:N'")
    parser.add_argument("--bvh", nargs="+", default=(), metavar="PATH",
                        help="BVH files to use instead of procedural motion")
    parser.add_argument("--occluders", type=float, nargs="?", const=0.3, default=0.0,
                        metavar="P", help="probability that a view gets occluder boxes "
                        "(flag alone: 0.3)")
    parser.add_argument("--look", default="clothing",
                        help="how people look: 'clothing' (dressed, a face and shoes) or "
                             "'sides' (limbs colour-coded warm left, cool right)")
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    parser.add_argument("--samples-per-shard", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preview", type=int, default=0, metavar="N",
                        help="also write OUT/preview.png with N tuples")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the dataset already in --out (only once the new one "
                             "is complete)")
    parser.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> StudioConfig:
    roles = {name: getattr(args, name) for name in ("labeled", "unlabeled", "eval")
             if getattr(args, name)}
    return StudioConfig(roles=roles, actions=args.actions,
                        clips_per_action=args.clips_per_action,
                        clips_per_role=dict(args.clips_per_role),
                        frames_per_clip=args.frames_per_clip, frame_step=args.frame_step,
                        image_size=args.image_size, cameras=args.cameras,
                        occluders=args.occluders, bvh=tuple(args.bvh), seed=args.seed,
                        look=args.look)


def main(args: argparse.Namespace) -> int:
    try:
        if args.image_size < 32 or args.image_size % 32:
            raise ValueError(f"--image-size must be a positive multiple of 32 (the models' "
                             f"stride), got {args.image_size}")
        manifest = synthesize(args.out, config_from_args(args), workers=args.workers,
                              samples_per_shard=args.samples_per_shard,
                              progress=not args.no_progress, preview=args.preview,
                              overwrite=args.overwrite)
    except (OSError, ValueError) as exc:  # bad options, --out not writable, disk full
        print(f"pose3d synth: error: {exc}", file=sys.stderr)
        return 2
    for role, info in manifest["roles"].items():
        print(f"{role}: {info['samples']} tuples in {len(info['shards'])} shards, "
              f"subjects {','.join(info['subjects'])}")
    if args.preview:
        print(f"preview: {Path(args.out) / 'preview.png'}")
    return 0
