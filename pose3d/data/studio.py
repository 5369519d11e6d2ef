"""The synthetic multi-view studio: subjects, camera rigs, clips and rendered tuples.

A subject is a person: a body (pose3d.data.motion.sample_subject: stature, proportions and
a build, slim to heavy, that also sets the rendered girth), a way of moving
(pose3d.data.motion.sample_style: tempo, amplitude, posture, stance), a look
(pose3d.data.render.make_appearance; StudioConfig.look 'clothing': shirt, trousers or
shorts, sleeves, patterns, shoes, hair, skin tone, a face; 'sides': limbs colour-coded by
side), all seeded by the subject alone so that it looks and moves alike in every clip and
view (people must differ as real ones do, or a few labeled people cover the eval people
and more unlabeled people teach nothing), and a camera rig: the Human3.6M rig as
calibrated for that subject, or a random rig of N cameras around the capture area (seeded
by the subject, fixed for all its clips). Each
(subject, action, clip) is one job: a motion clip (procedural, or a window of a BVH clip),
subsampled every `frame_step` frames; every kept frame becomes one multi-view tuple, each
view cropped to a square around the projected body (margin plus a little jitter) and
rendered at the input size. The room (floor, wall texture, colours) varies per clip, so
the frames of one clip look like one video.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pose3d.data import motion, render, schema
from pose3d.geometry import Camera, h36m_cameras, square_box
from pose3d.geometry.h36m_rig import SUBJECTS as H36M_SUBJECTS

DEFAULT_ROLES: dict[str, tuple[str, ...]] = {
    "labeled": ("S1", "S5", "S6"), "unlabeled": ("S7", "S8"), "eval": ("S9", "S11"),
}
MIN_DEPTH_MM = 500.0  # a view whose camera is nearer than this to a joint is not valid


@dataclass
class StudioConfig:
    """What to synthesise. cameras: 'h36m' or 'random:N'. actions: None = every action of
    pose3d.data.motion (or every BVH clip when bvh is given). occluders: probability that
    a view gets 1-2 occluder boxes."""

    roles: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    actions: tuple[str, ...] | None = None
    clips_per_action: int = 2
    # clips per action for the roles named here (others: clips_per_action), e.g. more
    # labeled clips for the teacher without a longer evaluation
    clips_per_role: dict[str, int] = field(default_factory=dict)
    frames_per_clip: int = 100
    frame_step: int = 5
    image_size: int = 128
    cameras: str = "h36m"
    occluders: float = 0.0
    margin: float = 0.15
    jitter: float = 0.05
    fps: float = 25.0
    bvh: tuple[str, ...] = ()
    seed: int = 0
    # how people look: 'clothing' (dressed people, a face and shoes) or 'sides' (limbs
    # colour-coded warm left, cool right); pose3d.data.render.LOOKS
    look: str = "clothing"

    def __post_init__(self) -> None:
        unknown = set(self.roles) - set(schema.ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; roles are {schema.ROLES}")
        for name in ("clips_per_action", "frames_per_clip", "frame_step", "image_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for role, clips in self.clips_per_role.items():
            if role not in self.roles:
                raise ValueError(f"clips_per_role names {role!r}, which is not one of this "
                                 f"studio's roles ({', '.join(self.roles)})")
            if int(clips) < 1:
                raise ValueError(f"clips_per_role[{role!r}] must be >= 1, got {clips}")
        if not 0.0 <= self.occluders <= 1.0:
            raise ValueError(f"occluders is a probability in [0, 1], got {self.occluders}")
        num_random_cameras(self.cameras)  # validates the spec
        if self.look not in render.LOOKS:
            raise ValueError(f"look must be one of {', '.join(render.LOOKS)}, got {self.look!r}")
        if self.cameras == "h36m":
            for subject in (s for subjects in self.roles.values() for s in subjects):
                if subject not in H36M_SUBJECTS:
                    raise ValueError(f"the Human3.6M rig has no calibration for {subject!r} "
                                     f"(known: {', '.join(H36M_SUBJECTS)}); use cameras "
                                     f"'random:N' for other subject names")

    def clips_of(self, role: str) -> int:
        """Clips per action (and subject) rendered for `role`."""
        return int(self.clips_per_role.get(role, self.clips_per_action))


def num_random_cameras(spec: str) -> int | None:
    """None for 'h36m', N for 'random:N'; ValueError for anything else."""
    if spec == "h36m":
        return None
    if spec.startswith("random:") and spec[7:].isdigit() and int(spec[7:]) >= 2:
        return int(spec[7:])
    raise ValueError(f"cameras must be 'h36m' or 'random:N' with N >= 2, got {spec!r}")


def stable_seed(*parts: object) -> int:
    """A seed that depends only on `parts` (Python's hash() is salted per process)."""
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def random_rig(num_cameras: int, rng: np.random.Generator, image_size: int = 1000
               ) -> list[Camera]:
    """N cameras spread around the capture area (azimuths evenly spaced plus jitter,
    3.5-6 m away, 0.8-2.2 m high), each aimed near the centre at chest height, with a
    field of view like the Human3.6M cameras (focal about 1.15 x image size)."""
    cameras = []
    start = rng.uniform(0, 2 * np.pi)
    for i in range(num_cameras):
        azimuth = start + 2 * np.pi * i / num_cameras + rng.uniform(-0.25, 0.25)
        dist, height = rng.uniform(3500, 6000), rng.uniform(800, 2200)
        centre = np.array([dist * np.cos(azimuth), dist * np.sin(azimuth), height])
        target = np.array([*rng.uniform(-300, 300, 2), rng.uniform(800, 1100)])
        forward = (target - centre) / np.linalg.norm(target - centre)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        f = image_size * rng.uniform(1.0, 1.3)
        K = np.array([[f, 0, image_size / 2], [0, f, image_size / 2], [0, 0, 1.0]])
        cameras.append(Camera.from_center(K, np.stack([right, down, forward], axis=1), centre,
                                          image_size=(image_size, image_size),
                                          name=f"cam{i}"))
    return cameras


def subject_rig(subject: str, cameras: str, seed: int) -> list[Camera]:
    """The full-frame cameras of `subject`: its Human3.6M calibration or a seeded random
    rig (the same for every clip of the subject)."""
    n = num_random_cameras(cameras)
    if n is None:
        return h36m_cameras(subject)
    return random_rig(n, np.random.default_rng(stable_seed(seed, "rig", subject)))


def crop_box(points2d: np.ndarray, margin: float, jitter: float,
             rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A square box around pixel points [N, 2] with `margin`, its centre shifted and side
    scaled by up to `jitter` of the side (so the body is not always dead centre)."""
    x0, y0, x1, y1 = square_box(points2d, margin)
    side = x1 - x0
    cx, cy = np.array([x0 + x1, y0 + y1]) / 2 + rng.uniform(-jitter, jitter, 2) * side
    side *= 1 + rng.uniform(-jitter, jitter)
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def render_tuple(joints3d: np.ndarray, rig: Sequence[Camera], appearance: render.Appearance,
                 backdrop: render.Backdrop, image_size: int, rng: np.random.Generator, *,
                 margin: float = 0.15, jitter: float = 0.05, occluders: float = 0.0
                 ) -> tuple[list[np.ndarray | None], list[Camera | None]]:
    """Render one pose [17, 3] world mm in every camera of `rig` (full frames, pinhole:
    pass camera.undistorted()). Returns per view the image uint8 [S, S, 3] and its camera
    after crop and resize, or (None, None) when that camera would not see the whole body:
    a joint outside its full frame, or within MIN_DEPTH_MM of (or behind) it."""
    images: list[np.ndarray | None] = []
    cameras: list[Camera | None] = []
    for full in rig:
        uv, depth = render.pinhole_project(full, joints3d)
        in_frame = full.image_size is None or (
            (uv >= 0).all() and (uv < np.asarray(full.image_size)).all())
        if (depth < MIN_DEPTH_MM).any() or not in_frame:
            images.append(None)
            cameras.append(None)
            continue
        cam = full.crop_and_resize(crop_box(uv, margin, jitter, rng), image_size)
        count = int(rng.integers(1, 3)) if rng.random() < occluders else 0
        images.append(render.render_view(joints3d, cam, appearance, backdrop,
                                         occluders=count, rng=rng))
        cameras.append(cam)
    return images, cameras


@dataclass(frozen=True)
class Job:
    """One clip to render: (role, subject, action, clip index)."""

    role: str
    subject: str
    action: str
    clip: int


def plan_jobs(config: StudioConfig, actions: Sequence[str]) -> list[Job]:
    """Every (role, subject, action, clip), subjects of one role interleaved by action so
    that neighbouring jobs differ."""
    return [Job(role, subject, action, clip)
            for role, subjects in config.roles.items()
            for clip in range(config.clips_of(role))
            for action in actions
            for subject in subjects]


def place_clip(poses: np.ndarray, rng: np.random.Generator, spread_mm: float = 400.0
               ) -> np.ndarray:
    """Shift a clip [T, 17, 3] in the floor plane so that the middle of its pelvis path is
    within `spread_mm` of the studio centre (cameras look at the centre)."""
    path = poses[:, 0, :2]
    middle = (path.min(axis=0) + path.max(axis=0)) / 2
    shifted = poses.copy()
    shifted[..., :2] += rng.uniform(-spread_mm, spread_mm, 2) - middle
    return shifted


def clip_poses(job: Job, config: StudioConfig,
               bvh_clips: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The motion of one job [T, 17, 3] world mm: a procedural clip of the subject's body
    (pose3d.data.motion), or, when `bvh_clips` (name -> [T, 17, 3]) is given, a window of
    frames_per_clip frames of the BVH clip named by the job's action."""
    rng = np.random.default_rng(stable_seed(config.seed, "motion", job))
    if bvh_clips:
        poses = bvh_clips[job.action]
        start = int(rng.integers(0, max(1, len(poses) - config.frames_per_clip + 1)))
        return np.asarray(poses[start:start + config.frames_per_clip], dtype=np.float64)
    return motion.generate_clip(job.action, subject_body(job.subject, config.seed),
                                config.frames_per_clip, fps=config.fps, rng=rng,
                                style=subject_style(job.subject, config.seed))


def subject_body(subject: str, seed: int) -> motion.BodyShape:
    """The subject's body (sizes and build), the same in every clip."""
    return motion.sample_subject(stable_seed(seed, "body", subject))


def subject_style(subject: str, seed: int) -> motion.MotionStyle:
    """How the subject moves (tempo, amplitude, posture, stance), the same in every clip."""
    return motion.sample_style(stable_seed(seed, "style", subject))


def subject_appearance(subject: str, config: StudioConfig) -> render.Appearance:
    """How the subject looks in config.look, the same in every clip and view; its girth
    is its body's build."""
    rng = np.random.default_rng(stable_seed(config.seed, "look", subject))
    return render.make_appearance(rng, look=config.look,
                                  girth=subject_body(subject, config.seed).girth)


def clip_tuples(job: Job, poses: np.ndarray, config: StudioConfig
                ) -> Iterator[tuple[dict, list, list, np.ndarray]]:
    """Render the frames of one clip [T, 17, 3] (every frame_step-th, placed in the
    studio). Yields (meta, images, cameras, joints3d) per tuple."""
    rng = np.random.default_rng(stable_seed(config.seed, "clip", job))
    appearance = subject_appearance(job.subject, config)
    backdrop = render.make_backdrop(rng)
    rig = [cam.undistorted() for cam in subject_rig(job.subject, config.cameras, config.seed)]
    poses = place_clip(np.asarray(poses, dtype=np.float64), rng)
    for frame in range(0, len(poses), config.frame_step):
        images, cameras = render_tuple(poses[frame], rig, appearance, backdrop,
                                       config.image_size, rng, margin=config.margin,
                                       jitter=config.jitter, occluders=config.occluders)
        if all(img is None for img in images):
            continue
        meta = {"subject": job.subject, "action": job.action, "clip": job.clip,
                "frame": frame, "role": job.role, "dataset": "synthetic",
                "rig": config.cameras}
        yield meta, images, cameras, poses[frame]


def encode_tuple(meta: dict, images: list, cameras: list, joints3d: np.ndarray) -> dict:
    """Encode one rendered tuple. Unlabeled tuples are written without their 3D pose; its
    truth goes into a side file that training never reads, so the P-GT can be scored."""
    return schema.encode_for_role(images, cameras, joints3d, meta)
