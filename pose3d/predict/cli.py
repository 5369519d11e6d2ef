"""`pose3d predict`: a trained checkpoint on your own images, folders of images and videos
(single view), or on a calibrated rig's synchronised views (multi-view, `--cameras`)."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

from pose3d.cliargs import add_threads, check_output_names, deprecated_alias, split_checkpoint
from pose3d.models.saved import CheckpointError
from pose3d.predict import inputs, outputs
from pose3d.predict.footage import predict_source
from pose3d.predict.rig_footage import predict_rig_sources
from pose3d.predict.runner import make_predictor

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders of images or videos; with --cameras one "
                             "video or image folder per camera, in the cameras file's order")
    parser.add_argument("--checkpoint", required=True, type=lambda t: split_checkpoint(t)[1],
                        metavar="[NAME=]PATH", help="a single-view checkpoint (or multi-view "
                        "with --cameras); NAME= is accepted as in `pose3d eval` and ignored")
    parser.add_argument("--out", required=True, help="output folder (one subfolder per input)")
    parser.add_argument("--box", help="x0,y0,x1,y1: the person's box in every frame "
                                      "(default: the whole frame)")
    parser.add_argument("--boxes", help="JSON or CSV of boxes per frame (frame name or index "
                                        "-> x0,y0,x1,y1); with --cameras a JSON "
                                        "{camera name: boxes}")
    parser.add_argument("--intrinsics", help="fx,fy,cx,cy or a JSON file (single view)")
    parser.add_argument("--root-depth", type=float, metavar="MM",
                        help="camera depth of the pelvis in mm (single view): with "
                             "--intrinsics gives absolute camera coordinates")
    parser.add_argument("--cameras", help="rig cameras JSON (K, dist, R, t per camera, world "
                                          "mm): multi-view mode")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per model call")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda "
                                                       "when available)")
    add_threads(parser)
    no_progress = parser.add_argument("--no-progress", action="store_true",
                                      help="no progress bar")
    deprecated_alias(parser, "--quiet", no_progress)


def _error(message: str) -> int:
    print(f"pose3d predict: error: {message}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def _warn_in_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pose3d predict: warning: {message}", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", inputs.PredictWarning)
            warnings.showwarning = _warn_in_one_line
            summaries = _run(args)
    except (CheckpointError, FileNotFoundError, ValueError, OSError) as exc:
        return _error(str(exc))
    for s in summaries:
        t = s["timing"]
        print(f"{s['out']}: {t['frames']} frames, {t['fps']:.1f} frames/s (decoding "
              f"{t['decode_s']:.2f} s = {100 * t['decode_share']:.0f}% of {t['wall_s']:.2f} s, "
              f"model {t['model_s']:.2f} s = {100 * t['model_share']:.0f}%; decoding and "
              f"cropping run in a background thread)")
    return 0


def _run(args: argparse.Namespace) -> list[dict]:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.box and args.boxes:
        raise ValueError("give --box or --boxes, not both")
    if args.root_depth is not None and not (math.isfinite(args.root_depth)
                                            and args.root_depth > 0):
        raise ValueError(f"--root-depth is the pelvis' depth in front of the camera: a "
                         f"positive number of mm, got {args.root_depth:g}")
    sources = [inputs.open_source(p) for p in args.inputs]  # every input checked up front
    if args.cameras:
        return [_run_rig(args, sources)]
    check_output_names([src.name for src in sources], "input")
    for src in sources:  # before any work: a folder it may not replace
        outputs.check_folder(Path(args.out) / src.name)

    boxes = inputs.parse_box(args.box) if args.box else (
        inputs.read_boxes(args.boxes) if args.boxes else None)
    K = inputs.parse_intrinsics(args.intrinsics) if args.intrinsics else None
    predictor = make_predictor(args.checkpoint, "single_view", args.device)
    meta = {"checkpoint": str(args.checkpoint)}
    # one swap for the whole invocation: a failure on any input leaves every folder as it was
    with outputs.staged_outputs(args.out, [src.name for src in sources]) as tmp:
        summaries = [predict_source(predictor, src, tmp, boxes=boxes, intrinsics=K,
                                    root_depth=args.root_depth, batch_size=args.batch_size,
                                    progress=not args.no_progress, meta=meta)
                     for src in sources]
    return [{**s, "out": Path(args.out) / src.name} for s, src in zip(summaries, sources)]


def _run_rig(args: argparse.Namespace, sources: list) -> dict:

    cameras = inputs.read_cameras(args.cameras)
    if len(cameras) != len(sources):
        raise ValueError(f"{args.cameras} has {len(cameras)} cameras but {len(sources)} "
                         f"inputs were given (one per camera)")
    if args.intrinsics or args.root_depth is not None:
        raise ValueError("--intrinsics and --root-depth are for one view; a rig's cameras "
                         "come from --cameras")
    boxes = inputs.parse_box(args.box) if args.box else (
        inputs.read_rig_boxes(args.boxes, cameras) if args.boxes else None)
    outputs.check_folder(args.out)
    predictor = make_predictor(args.checkpoint, "multi_view", args.device)
    return predict_rig_sources(predictor, sources, cameras, args.out, boxes=boxes,
                               batch_size=args.batch_size, progress=not args.no_progress,
                               meta={"checkpoint": str(args.checkpoint),
                                     "cameras": str(args.cameras)})
