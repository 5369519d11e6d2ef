"""`pose3d convert h36m|mpi-inf-3dhp --source DIR --out DIR`: real datasets -> pose3d shards
with the paper's splits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pose3d.cliargs import deprecated_alias
from pose3d.data.convert import h36m, h36m_official, mpi_inf_3dhp
from pose3d.data.shards import MANIFEST
from pose3d.data.staging import staged_dataset


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_common(p: argparse.ArgumentParser, eval_step: int) -> None:
    # --source, not --root: elsewhere (data.root, run.root) a root is a pose3d folder
    # (a required group: the old spelling alone satisfies it)
    either = p.add_mutually_exclusive_group(required=True)
    source = either.add_argument("--source", dest="root", type=Path, metavar="DIR",
                                 help="the dataset's own folder, as downloaded")
    deprecated_alias(either, "--root", source)
    p.add_argument("--out", required=True, type=Path, help="output dataset folder")
    p.add_argument("--image-size", type=int, default=256, help="side of the stored views (px)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (0: in-process)")
    p.add_argument("--samples-per-shard", type=int, default=1000)
    p.add_argument("--shuffle-buffer", type=int, default=500,
                   help="tuples held per role to mix clips within shards (0: keep order)")
    p.add_argument("--roles", type=_csv, default=None,
                   help="convert only these roles, e.g. eval or labeled,unlabeled")
    p.add_argument("--subjects", action="append", default=[], metavar="ROLE=S1,S2",
                   help="override a role's subjects (repeatable)")
    p.add_argument("--frame-step", type=int, default=1,
                   help="keep every n-th frame of labeled and unlabeled sequences")
    p.add_argument("--eval-frame-step", type=int, default=eval_step,
                   help=f"keep every n-th frame of eval sequences (paper: {eval_step})")
    p.add_argument("--max-frames", type=int, default=None,
                   help="at most this many tuples per role (H36M) or sequence (3DHP): trials")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the dataset already in --out (only once the new one is "
                        "complete)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    p = sub.add_parser("h36m", help="Human3.6M: the official release or learnable-"
                       "triangulation's layout", description="Human3.6M -> pose3d shards "
                       "with the paper's splits, from the official release (CDF poses, mp4 "
                       "videos) or learnable-triangulation's preprocessed layout.")
    _add_common(p, h36m.EVAL_FRAME_STEP)
    p.add_argument("--layout", choices=h36m_official.LAYOUTS, default="auto",
                   help="what --root holds (auto: detect)")
    p.add_argument("--labels", type=Path, default=None,
                   help=f"learnable-triangulation layout: labels file (default: "
                        f"ROOT/extra/{h36m.LABELS_FILE})")
    p.add_argument("--metadata", type=Path, default=None,
                   help="release: its metadata.xml (numbers the takes as the release does, "
                        "cross-checks the cameras)")
    p.add_argument("--box-margin", type=float, default=0.2,
                   help="release: crop margin around the projected joints where no "
                        "ground_truth_bb box exists (fraction of their extent per side)")
    p.add_argument("--cache", type=Path, default=None,
                   help="release: folder of finished sequences, to resume an interrupted "
                        "run (default: OUT.h36m-cache; removed when the run completes)")
    p.add_argument("--cameras", type=_csv, default=None,
                   help="camera names or indices (default: all four)")
    p.add_argument("--bbox-scale", type=float, default=1.0, help="grow the boxes by this")
    p.add_argument("--images", choices=("auto", "distorted", "undistorted"), default="auto",
                   help="imageSequence (distorted: crops are undistorted) or "
                        "imageSequence-undistorted")
    p.add_argument("--with-damaged-actions", action="store_true",
                   help="keep S9 Greeting-2, SittingDown-2, Waiting-1 in eval")
    p = sub.add_parser("mpi-inf-3dhp", help="MPI-INF-3DHP training set",
                       description=mpi_inf_3dhp.__doc__.splitlines()[0])
    _add_common(p, 1)
    p.add_argument("--cameras", type=_csv, default=[str(c) for c in mpi_inf_3dhp.CAMERAS],
                   help="camera indices (paper: 0,2,7,8)")
    p.add_argument("--sequences", type=_csv, default=list(mpi_inf_3dhp.SEQUENCES))
    p.add_argument("--frames", choices=mpi_inf_3dhp.FRAME_SOURCES, default="auto",
                   help="read videos or extracted frames (imageFrames/video_N/frame_%%06d.jpg)")
    p.add_argument("--box-margin", type=float, default=0.2,
                   help="crop margin around the 2D joints, a fraction of their extent per side")


def splits_from_args(defaults: dict[str, tuple[str, ...]], roles: list[str] | None,
                     overrides: list[str]) -> dict[str, tuple[str, ...]]:
    """The paper's splits with `ROLE=S1,S2` overrides applied, restricted to `roles`."""
    splits = dict(defaults)
    for item in overrides:
        role, sep, subjects = item.partition("=")
        if not sep or role not in defaults or not _csv(subjects):
            raise ValueError(f"--subjects wants ROLE=S1,S2 with ROLE one of "
                             f"{', '.join(defaults)}, got {item!r}")
        splits[role] = tuple(_csv(subjects))
    if roles is not None:
        unknown = [r for r in roles if r not in defaults]
        if unknown or not roles:
            raise ValueError(f"--roles must be among {', '.join(defaults)}, got {roles}")
        splits = {r: splits[r] for r in roles}
    return splits


def _prepare_out(root: Path, out: Path, overwrite: bool) -> None:
    """Check the input root. `out` is already the temporary folder that main() swaps in for
    the real --out once the conversion is complete (pose3d.data.staging): an existing
    dataset there is checked by staged_dataset and never touched before then."""
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root folder not found: {root}")


def _writing_to(args: argparse.Namespace, tmp: Path) -> argparse.Namespace:
    """`args` with --out replaced by the temporary folder; a converter's resume cache
    (--cache, default OUT.h36m-cache) stays beside the real --out."""
    if getattr(args, "cache", False) is None:
        args = argparse.Namespace(**{**vars(args), "cache": Path(f"{args.out}.h36m-cache")})
    return argparse.Namespace(**{**vars(args), "out": tmp})


def _run(args: argparse.Namespace):
    common = {"workers": args.workers, "samples_per_shard": args.samples_per_shard,
              "shuffle_buffer": args.shuffle_buffer, "progress": not args.no_progress}
    if args.dataset == "h36m":
        layout = args.layout
        if layout == "auto":
            layout = h36m_official.detect_layout(args.root)
        if layout == "release":
            return _run_h36m_release(args, common)
        options = h36m.H36MOptions(
            image_size=args.image_size,
            splits=splits_from_args(h36m.SPLITS, args.roles, args.subjects),
            frame_step=args.frame_step, eval_frame_step=args.eval_frame_step,
            cameras=args.cameras, bbox_scale=args.bbox_scale, images=args.images,
            with_damaged_actions=args.with_damaged_actions, max_frames=args.max_frames)
        _prepare_out(args.root, args.out, args.overwrite)
        return h36m.convert_h36m(args.root, args.out, options, labels=args.labels, **common)
    try:
        cameras = [int(c) for c in args.cameras]
    except ValueError:
        raise ValueError(f"--cameras wants integer indices, got {args.cameras}") from None
    options = mpi_inf_3dhp.MpiInf3dhpOptions(
        image_size=args.image_size,
        splits=splits_from_args(mpi_inf_3dhp.SPLITS, args.roles, args.subjects),
        cameras=cameras, sequences=args.sequences, frame_step=args.frame_step,
        eval_frame_step=args.eval_frame_step, box_margin=args.box_margin, frames=args.frames,
        max_frames=args.max_frames)
    _prepare_out(args.root, args.out, args.overwrite)
    return mpi_inf_3dhp.convert_mpi_inf_3dhp(args.root, args.out, options, **common)


def _run_h36m_release(args: argparse.Namespace, common: dict):
    if not args.root.is_dir():
        raise FileNotFoundError(f"dataset root folder not found: {args.root}")
    options = h36m_official.H36MReleaseOptions(
        image_size=args.image_size,
        splits=splits_from_args(h36m.SPLITS, args.roles, args.subjects),
        frame_step=args.frame_step, eval_frame_step=args.eval_frame_step,
        cameras=args.cameras, bbox_scale=args.bbox_scale, box_margin=args.box_margin,
        with_damaged_actions=args.with_damaged_actions, max_frames=args.max_frames,
        metadata=args.metadata, cache=args.cache)
    plan = h36m_official.plan_release(args.root, options, args.out)  # every input checked
    _prepare_out(args.root, args.out, args.overwrite)
    return h36m_official.convert_h36m_release(args.root, args.out, options, plan=plan,
                                              **common)


def _resume_hint(args: argparse.Namespace) -> str:
    """What a rerun reuses after an interruption (the release's per-sequence cache)."""
    cache = getattr(args, "cache", None) or Path(f"{args.out}.h36m-cache")
    if args.dataset == "h36m" and cache.is_dir():
        return f" (finished sequences are kept in {cache}; the same command resumes)"
    return ""


def main(args: argparse.Namespace) -> int:
    try:
        with staged_dataset(args.out, args.overwrite) as tmp:
            summary = _run(_writing_to(args, tmp))
    except (OSError, ValueError) as exc:  # FileNotFound, FileExists, Permission, ENOSPC
        print(f"pose3d convert {args.dataset}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # staged_dataset removed the partial output on the way out
        print(f"pose3d convert {args.dataset}: interrupted; {args.out} was left as it was"
              f"{_resume_hint(args)}", file=sys.stderr)
        return 130
    for line in summary.lines():
        print(line)
    print(f"wrote {args.out / MANIFEST}")
    return 0
