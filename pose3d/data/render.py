"""Rasterise a 17-joint body as shaded capsules into one camera's (already cropped) image.

The body is a set of tapered capsules (one per bone) and a sphere for the head, drawn far
to near by camera depth so that nearer limbs hide farther ones (self-occlusion). How a
subject looks is its Appearance (make_appearance): 'clothing' dresses a person (shirt and
sleeves, trousers or shorts, patterns drawn as bands along the capsules, shoes as short
capsules from the ankles, a hair cap, a skin tone, eyes on the face), left and right alike,
so the sides show by the face and the feet pointing the way the body faces; 'sides' colours
the limbs by side instead (left warm, right cool, centre neutral). The background is a
room seen through the same camera: a checkered floor (z = 0) and a textured cylindrical
wall, so all views of a tuple show one consistent studio. Optional occluder boxes are
drawn over the body.

Rendering happens directly at the model's input size: the caller composes the crop and
resize into the camera first (Camera.crop_and_resize), which is much cheaper than drawing
the full 1000 px frame and resizing it. Cameras must be pinhole (no distortion): the
synthetic studio stores undistorted cameras.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from pose3d.geometry import Camera
from pose3d.skeleton import BONES, JOINT_NAMES, NUM_JOINTS
from pose3d.skeleton.h36m import bone_side

_J = {name: i for i, name in enumerate(JOINT_NAMES)}
HEAD_BONE = (_J["neck"], _J["head"])
SHIFT = 4  # sub-pixel bits for OpenCV drawing
_SCALE = float(1 << SHIFT)
SHADE_LEVELS = (1.0, 0.8, 0.6, 0.42, 0.25)  # capsule width fractions, outside in
AMBIENT = 0.35
BACKGROUND_MAX_SIZE = 96

# Radius at the (parent, child) end of each bone, mm, for an average adult.
_RADIUS_BY_NAME = {
    ("pelvis", "right_hip"): (95, 85), ("pelvis", "left_hip"): (95, 85),
    ("right_hip", "right_knee"): (80, 55), ("left_hip", "left_knee"): (80, 55),
    ("right_knee", "right_ankle"): (55, 40), ("left_knee", "left_ankle"): (55, 40),
    ("pelvis", "spine"): (120, 125), ("spine", "thorax"): (125, 135),
    ("thorax", "neck"): (60, 50), ("neck", "head"): (0, 0),
    ("thorax", "left_shoulder"): (70, 55), ("thorax", "right_shoulder"): (70, 55),
    ("left_shoulder", "left_elbow"): (50, 40), ("right_shoulder", "right_elbow"): (50, 40),
    ("left_elbow", "left_wrist"): (40, 32), ("right_elbow", "right_wrist"): (40, 32),
}
BONE_RADIUS_MM = np.array([_RADIUS_BY_NAME[(JOINT_NAMES[p], JOINT_NAMES[c])] for p, c in BONES],
                          dtype=np.float64)  # [num_bones, 2]
HEAD_RADIUS_MM = 100.0

# Base colours (RGB) per side; each limb of a side gets its own hue around the base.
_SIDE_HUES = {"left": (0.0, 0.09), "right": (0.55, 0.70), "centre": (0.10, 0.12)}
LOOKS = ("clothing", "sides")
PATTERNS = ("plain", "stripes", "band")
FACE_COLOUR = np.array([28.0, 18.0, 16.0])  # eyes
FOOT_RADIUS_MM = (45.0, 34.0)  # heel, toe
_BONE_INDEX = {(JOINT_NAMES[p], JOINT_NAMES[c]): b for b, (p, c) in enumerate(BONES)}


def _bones(*names: str) -> list[int]:
    """Bone indices by child joint name ('left_*' and 'right_*' for a 'side_*' name)."""
    out = []
    for name in names:
        children = [name.replace("side", s) for s in ("left", "right")] if "side" in name \
            else [name]
        out += [b for (_, child), b in _BONE_INDEX.items() if child in children]
    return out


# The garment regions, by the bones they cover.
TORSO_BONES = _bones("spine", "thorax", "side_shoulder")
UPPER_ARM_BONES = _bones("side_elbow")
FOREARM_BONES = _bones("side_wrist")
HIP_THIGH_BONES = _bones("side_hip", "side_knee")
SHIN_BONES = _bones("side_ankle")


@dataclass
class Appearance:
    """How one subject looks. bone_colours: [num_bones, 3] float 0-255 RGB, each bone's
    base colour; head_colour: [3], the skin of the head; girth: radius scale. The clothing
    look adds bands: per bone, (start, end, colour [3]) stretches along the bone (0 at the
    parent, 1 at the child) drawn over its base colour (stripes, a band); a hair cap
    (hair_colour [3]), shoes (feet drawn from the ankles, shoe_colour [3]) and a face.
    None / False: not drawn (the "sides" look). garments: what was drawn, by name."""

    bone_colours: np.ndarray
    head_colour: np.ndarray
    girth: float = 1.0
    bands: tuple = ()
    hair_colour: np.ndarray | None = None
    shoe_colour: np.ndarray | None = None
    face: bool = False
    garments: dict = field(default_factory=dict)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    return 255.0 * np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def make_appearance(rng: np.random.Generator, look: str = "clothing", girth: float = 1.0
                    ) -> Appearance:
    """One subject's look: 'clothing' (a person dressed, see dressed_appearance) or
    'sides' (limbs colour-coded by side, see side_coded_appearance)."""
    if look == "clothing":
        return dressed_appearance(rng, girth)
    if look == "sides":
        return side_coded_appearance(rng, girth)
    raise ValueError(f"look must be one of {LOOKS}, got {look!r}")


def side_coded_appearance(rng: np.random.Generator, girth: float = 1.0) -> Appearance:
    """Per-limb colours: left limbs warm (reds to oranges), right cool (cyans to blues),
    centre (torso, neck) a neutral desaturated tone; brightness and saturation vary a
    little per subject."""
    colours = []
    limb_rank = {"left": 0, "right": 0, "centre": 0}
    centre_hue = rng.uniform(*_SIDE_HUES["centre"])
    centre_val = rng.uniform(0.45, 0.75)
    for bone in BONES:
        side = bone_side(bone)
        if side == "centre":
            colours.append(_hsv_to_rgb(centre_hue, rng.uniform(0.10, 0.25), centre_val))
            continue
        lo, hi = _SIDE_HUES[side]
        k = limb_rank[side]
        limb_rank[side] += 1
        hue = lo + (hi - lo) * ((k * 0.37) % 1.0) + rng.uniform(-0.01, 0.01)
        colours.append(_hsv_to_rgb(hue % 1.0, rng.uniform(0.65, 0.95), rng.uniform(0.75, 0.98)))
    skin = _hsv_to_rgb(rng.uniform(0.04, 0.09), rng.uniform(0.25, 0.6), rng.uniform(0.45, 0.9))
    return Appearance(np.stack(colours), skin, girth)


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    """From very dark to pale."""
    return _hsv_to_rgb(rng.uniform(0.03, 0.10), rng.uniform(0.25, 0.65), rng.uniform(0.28, 0.95))


def _cloth_colour(rng: np.random.Generator) -> np.ndarray:
    """Neutrals (black, greys, white), denim-like blues or any colour."""
    kind = rng.random()
    if kind < 0.35:
        return _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0, 0.08), rng.uniform(0.08, 0.95))
    if kind < 0.5:
        return _hsv_to_rgb(rng.uniform(0.57, 0.63), rng.uniform(0.35, 0.7), rng.uniform(0.25, 0.6))
    return _hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.35, 0.9), rng.uniform(0.3, 0.95))


def _second_colour(rng: np.random.Generator, first: np.ndarray) -> np.ndarray:
    """A colour that stands out from `first` (a pattern must be visible)."""
    other = _cloth_colour(rng)
    if np.abs(other - first).sum() < 180:
        other = np.where(first > 127, first * 0.35, 255 - 0.5 * (255 - first))
    return other


def _hair_colour(rng: np.random.Generator) -> np.ndarray:
    """Black, brown, blond, red or grey."""
    hsv_ranges = [((0.0, 1.0), (0.0, 0.3), (0.05, 0.16)),
                  ((0.05, 0.09), (0.45, 0.75), (0.18, 0.45)),
                  ((0.10, 0.14), (0.35, 0.6), (0.6, 0.88)),
                  ((0.02, 0.05), (0.6, 0.85), (0.35, 0.6)),
                  ((0.0, 1.0), (0.0, 0.06), (0.5, 0.85))]
    h, s, v = hsv_ranges[int(rng.choice(5, p=[0.35, 0.3, 0.15, 0.05, 0.15]))]
    return _hsv_to_rgb(rng.uniform(*h), rng.uniform(*s), rng.uniform(*v))


def _pattern_bands(pattern: str, stripes: int, colour: np.ndarray) -> tuple:
    """(start, end, colour) stretches along one bone: every other of `stripes` equal
    segments, or one band across the middle, or none."""
    if pattern == "stripes":
        return tuple((k / stripes, (k + 1) / stripes, colour) for k in range(1, stripes, 2))
    if pattern == "band":
        return ((0.35, 0.65, colour),)
    return ()


def dressed_appearance(rng: np.random.Generator, girth: float = 1.0) -> Appearance:
    """A dressed person: a shirt (torso and upper arms; long sleeves cover the forearms)
    and trousers (hips and thighs; long ones cover the shins), each with its own two
    colours and a pattern (plain, horizontal stripes of 2-4 segments per bone, or a band),
    shoes, a hair cap and a skin tone. Left and right are dressed alike: the person's face
    and feet, not colours, tell the sides apart."""
    skin = _skin_tone(rng)
    shirt, trousers = _cloth_colour(rng), _cloth_colour(rng)
    shirt_b, trousers_b = _second_colour(rng, shirt), _second_colour(rng, trousers)
    garments = {
        "shirt": str(rng.choice(PATTERNS, p=[0.5, 0.3, 0.2])),
        "trousers": str(rng.choice(PATTERNS, p=[0.7, 0.1, 0.2])),
        "sleeves": "long" if rng.random() < 0.5 else "short",
        "legs": "long" if rng.random() < 0.7 else "shorts",
    }
    stripes = int(rng.integers(2, 5))
    colours = np.tile(skin, (len(BONES), 1))  # the neck, and bare arms and legs
    bands: list[tuple] = [()] * len(BONES)
    shirt_bones = TORSO_BONES + UPPER_ARM_BONES
    shirt_bones += FOREARM_BONES if garments["sleeves"] == "long" else []
    trouser_bones = HIP_THIGH_BONES + (SHIN_BONES if garments["legs"] == "long" else [])
    for bones, base, other, pattern in ((shirt_bones, shirt, shirt_b, garments["shirt"]),
                                        (trouser_bones, trousers, trousers_b,
                                         garments["trousers"])):
        for b in bones:
            colours[b] = base
            bands[b] = _pattern_bands(pattern, stripes, other)
    return Appearance(colours, skin, girth, tuple(bands), hair_colour=_hair_colour(rng),
                      shoe_colour=_cloth_colour(rng) * 0.8, face=True, garments=garments)


@dataclass
class Backdrop:
    """A room: floor checker colours [2, 3] and tile size (mm), a wall texture [h, w, 3]
    uint8 wrapped around a cylinder of `wall_radius` mm and `wall_height` mm, ceiling and
    fog colours [3], fog distance (mm)."""

    floor_colours: np.ndarray
    tile_mm: float
    floor_texture: np.ndarray
    wall_texture: np.ndarray
    wall_radius: float
    wall_height: float
    ceiling_colour: np.ndarray
    fog_mm: float


def _noise_texture(rng: np.random.Generator, shape: tuple[int, int], octaves: int = 3
                   ) -> np.ndarray:
    """Smooth value noise in [0, 1], float32 [h, w], wrapping horizontally."""
    h, w = shape
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        gh, gw = max(2, h >> (4 - o)), max(2, w >> (4 - o))
        grid = rng.random((gh, gw)).astype(np.float32)
        grid = np.concatenate([grid, grid[:, :1]], axis=1)  # wrap seamlessly in x
        up = cv2.resize(grid, (w + w // gw, h), interpolation=cv2.INTER_CUBIC)[:, :w]
        out += amp * up
        total += amp
        amp *= 0.5
    out /= total
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def make_backdrop(rng: np.random.Generator) -> Backdrop:
    """A random room: floor checker or plain, wall noise or stripes, colours and fog."""
    base = rng.uniform(40, 200, 3)
    floor_colours = np.stack([base, np.clip(base * rng.uniform(0.6, 0.9), 0, 255)])
    if rng.random() < 0.3:  # plain floor
        floor_colours[1] = floor_colours[0]
    wall_a, wall_b = rng.uniform(30, 230, 3), rng.uniform(30, 230, 3)
    noise = _noise_texture(rng, (64, 256))[..., None]
    if rng.random() < 0.35:  # vertical panels
        stripes = (np.arange(256) // rng.integers(6, 24)) % 2
        noise = 0.6 * noise + 0.4 * stripes[None, :, None]
    wall = (wall_a * (1 - noise) + wall_b * noise).astype(np.uint8)
    floor_tex = 0.75 + 0.5 * _noise_texture(rng, (64, 64), octaves=2)
    return Backdrop(floor_colours, float(rng.uniform(400, 900)), floor_tex.astype(np.float32),
                    wall, float(rng.uniform(7000, 10000)), float(rng.uniform(3000, 4500)),
                    rng.uniform(120, 240, 3), float(rng.uniform(9000, 20000)))


@lru_cache(maxsize=8)
def _pixel_grid(size: int) -> np.ndarray:
    """Homogeneous pixel centres [size*size, 3] float64, row-major."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    return np.stack([u.ravel(), v.ravel(), np.ones(size * size)], axis=1)


def render_background(camera: Camera, size: int, backdrop: Backdrop) -> np.ndarray:
    """The room as seen by `camera` (pinhole, image size x size): uint8 [size, size, 3].
    Above BACKGROUND_MAX_SIZE it is traced at half resolution and upsampled (the room is
    smooth; the slight blur reads as depth of field behind a sharp body)."""
    if size > BACKGROUND_MAX_SIZE:
        half = size // 2
        K = np.diag([half / size, half / size, 1.0]) @ camera.K
        small = _trace_room(K, camera.R, camera.center, half, backdrop)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    return _trace_room(camera.K, camera.R, camera.center, size, backdrop)


def _trace_room(K: np.ndarray, R: np.ndarray, centre: np.ndarray, size: int,
                backdrop: Backdrop) -> np.ndarray:
    rays = ((_pixel_grid(size) @ np.linalg.inv(K).T) @ R).astype(np.float32)
    c = centre.astype(np.float32)
    # Wall: cylinder |xy| = radius around the origin; the camera is inside it.
    a = np.einsum("ij,ij->i", rays[:, :2], rays[:, :2])
    b = 2 * (rays[:, :2] @ c[:2])
    cc = np.float32(c[:2] @ c[:2] - backdrop.wall_radius ** 2)
    lam = (np.sqrt(np.maximum(b * b - 4 * a * cc, 0)) - b) / np.maximum(2 * a, 1e-9)
    dz = np.minimum(rays[:, 2], -1e-6)
    lam_floor = -c[2] / dz  # negative or huge for rays that go up
    on_floor = (rays[:, 2] < -1e-6) & (lam_floor < lam)
    lam = np.where(on_floor, lam_floor, lam)
    hit = c[None] + lam[:, None] * rays
    dist = lam * np.sqrt(a + rays[:, 2] * rays[:, 2])
    shape = (size, size)

    # Wall texture by (azimuth, height); floor by checker of world xy times a noise texture.
    th, tw = backdrop.wall_texture.shape[:2]
    map_x = np.arctan2(hit[:, 1], hit[:, 0]) * np.float32(tw / (2 * np.pi)) + tw / 2
    map_y = (1 - hit[:, 2] / np.float32(backdrop.wall_height)) * th
    wall = cv2.remap(backdrop.wall_texture, map_x.reshape(shape), map_y.reshape(shape),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).reshape(-1, 3)
    wall = wall.astype(np.float32)
    wall[hit[:, 2] > backdrop.wall_height] = backdrop.ceiling_colour
    tiles = np.floor(hit[:, :2] * np.float32(1 / backdrop.tile_mm)).astype(np.int32)
    checker = (tiles[:, 0] + tiles[:, 1]) & 1
    texture = cv2.remap(backdrop.floor_texture, (hit[:, 0] / 37).reshape(shape),
                        (hit[:, 1] / 37).reshape(shape), cv2.INTER_NEAREST,
                        borderMode=cv2.BORDER_WRAP).reshape(-1, 1)
    floor = backdrop.floor_colours.astype(np.float32)[checker] * texture
    colour = np.where(on_floor[:, None], floor, wall)
    fog = np.clip(dist * np.float32(1 / backdrop.fog_mm), 0, 0.7)[:, None]
    colour += fog * (backdrop.ceiling_colour.astype(np.float32)[None] - colour)
    return np.clip(colour, 0, 255).astype(np.uint8).reshape(size, size, 3)


def _capsule_directions(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float,
                        steps: int = 6) -> tuple[np.ndarray, np.ndarray] | None:
    """Unit directions [steps, 2] from each end's centre to its part of the outline of the
    tapered capsule p0 (r0) -> p1 (r1), pixels; None when one end swallows the other."""
    d = p1 - p0
    length = float(np.hypot(d[0], d[1]))
    if length <= abs(r0 - r1) + 1e-6:
        return None
    axis = np.arctan2(d[1], d[0])
    # The tangents touch each end at axis +- (90 deg + beta); p1's cap spans forward.
    half = np.pi / 2 + np.arcsin(np.clip((r1 - r0) / length, -1.0, 1.0))
    a1 = axis + np.linspace(-half, half, steps)
    a0 = axis + np.linspace(half, 2 * np.pi - half, steps)
    return (np.stack([np.cos(a0), np.sin(a0)], 1), np.stack([np.cos(a1), np.sin(a1)], 1))


_DISC = np.stack([np.cos(np.linspace(0, 2 * np.pi, 24, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, 24, endpoint=False))], 1)
_LEVELS = np.array(SHADE_LEVELS)


def _shades(colour: np.ndarray) -> list[tuple[float, float, float]]:
    """Lambert-like brightness of the cylinder band at each shade level (1 = rim)."""
    return _shades_of(tuple(np.asarray(colour, dtype=np.float64).tolist()))


@lru_cache(maxsize=256)
def _shades_of(colour: tuple[float, float, float]) -> list[tuple[float, float, float]]:
    # cached: a subject has a handful of colours, drawn thousands of times
    inner = np.clip(_LEVELS - 0.1, 0, 1)
    gain = AMBIENT + (1 - AMBIENT) * np.sqrt(1 - inner * inner)
    return [tuple(c) for c in np.clip(gain[:, None] * np.array(colour)[None], 0, 255).tolist()]


def _draw_capsule(image: np.ndarray, p0, p1, r0: float, r1: float, colour: np.ndarray,
                  light: np.ndarray) -> None:
    """Nested capsules, rim (dark) to axis (bright), shifted towards the light. The outline
    angles of the rim are reused inside (a close match, and it keeps this cheap)."""
    dirs = _capsule_directions(p0, p1, r0, r1)
    offsets = light[None] * ((1 - _LEVELS) * 0.35 * (r0 + r1) / 2)[:, None]  # [L, 2]
    if dirs is None:
        centre, r = (p0, r0) if r0 >= r1 else (p1, r1)
        polys = centre + offsets[:, None] + (_LEVELS * r)[:, None, None] * _DISC[None]
    else:
        ends0 = p0 + (_LEVELS * r0)[:, None, None] * dirs[0][None]
        ends1 = p1 + (_LEVELS * r1)[:, None, None] * dirs[1][None]
        polys = np.concatenate([ends1, ends0], axis=1) + offsets[:, None]
    polys = np.round(polys * _SCALE).astype(np.int32)
    for poly, shade in zip(polys, _shades(colour)):
        cv2.fillConvexPoly(image, poly, shade, lineType=cv2.LINE_AA, shift=SHIFT)


def _draw_bands(image: np.ndarray, p0, p1, r0: float, r1: float, bands: tuple,
                colour: np.ndarray, light: np.ndarray) -> None:
    """The stretches (t0, t1) of `bands` (0 at p0, 1 at p1) of a capsule drawn by
    _draw_capsule, in another colour: flat-ended nested quads with the same shading
    (stripes, a band), all stretches of one shade level in one call."""
    d = p1 - p0
    length = float(np.hypot(d[0], d[1]))
    if length < 1e-6:
        return
    normal = np.array([-d[1], d[0]]) / length
    t = np.asarray(bands, dtype=np.float64)  # [B, 2]
    ends = p0 + t[..., None] * d  # [B, 2, 2]
    half = (_LEVELS[:, None, None] * (r0 + t * (r1 - r0))[None])[..., None] * normal  # [L,B,2,2]
    offsets = light * ((1 - _LEVELS) * 0.35 * (r0 + r1) / 2)[:, None]  # [L, 2]
    polys = np.stack([ends[:, 0] + half[:, :, 0], ends[:, 1] + half[:, :, 1],
                      ends[:, 1] - half[:, :, 1], ends[:, 0] - half[:, :, 0]], axis=2)
    polys = np.round((polys + offsets[:, None, None]) * _SCALE).astype(np.int32)  # [L,B,4,2]
    for level_polys, shade in zip(polys, _shades(colour)):
        cv2.fillPoly(image, list(level_polys), shade, lineType=cv2.LINE_AA, shift=SHIFT)


def _draw_sphere(image: np.ndarray, centre, radius: float, colour: np.ndarray,
                 light: np.ndarray) -> None:
    for level, shade in zip(SHADE_LEVELS, _shades(colour)):
        c = centre + light * (1 - level) * 0.35 * radius
        cv2.circle(image, (int(round(c[0] * _SCALE)), int(round(c[1] * _SCALE))),
                   max(1, int(round(radius * level * _SCALE))), shade,
                   thickness=-1, lineType=cv2.LINE_AA, shift=SHIFT)


def _draw_dot(image: np.ndarray, centre, radius: float, colour: np.ndarray) -> None:
    cv2.circle(image, (int(round(centre[0] * _SCALE)), int(round(centre[1] * _SCALE))),
               max(1, int(round(radius * _SCALE))), tuple(colour.tolist()), thickness=-1,
               lineType=cv2.LINE_AA, shift=SHIFT)


def pinhole_project(camera: Camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World mm [N, 3] -> pixels [N, 2], camera depth mm [N], ignoring distortion (numpy:
    no torch round trip, for the renderer's many small projections)."""
    cam = points @ camera.R.T + camera.t
    uvw = cam @ camera.K.T
    return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


def facing(joints3d: np.ndarray, left: str = "hip") -> np.ndarray:
    """The horizontal direction the body faces, unit [3]: perpendicular to the line from
    the right to the left `left` joint ('hip' or 'shoulder'), z up."""
    across = joints3d[_J[f"left_{left}"]] - joints3d[_J[f"right_{left}"]]
    forward = np.cross(across, [0.0, 0.0, 1.0])
    forward[2] = 0.0
    return forward / max(float(np.linalg.norm(forward)), 1e-9)


def _head_parts(joints3d: np.ndarray, appearance: Appearance) -> list[tuple]:
    """The head as 3D parts (kind, centre [3] mm, radius mm): the skin sphere, the hair
    cap (a sphere up and back of it) and the eyes on its front (facing the way the
    shoulders do, tilted with the head)."""
    neck, top = joints3d[HEAD_BONE[0]], joints3d[HEAD_BONE[1]]
    centre = neck + 0.55 * (top - neck)
    radius = HEAD_RADIUS_MM * appearance.girth
    parts = [("head", centre, radius)]
    if appearance.hair_colour is None and not appearance.face:
        return parts
    up = (top - neck) / max(float(np.linalg.norm(top - neck)), 1e-9)
    forward = facing(joints3d, "shoulder")
    forward = forward - (forward @ up) * up
    forward /= max(float(np.linalg.norm(forward)), 1e-9)
    if appearance.hair_colour is not None:
        parts.append(("hair", centre + radius * (0.22 * up - 0.3 * forward), 0.9 * radius))
    if appearance.face:
        aside = np.cross(up, forward)
        for sign in (-1.0, 1.0):
            eye = centre + radius * (0.88 * forward + 0.12 * up + sign * 0.36 * aside)
            parts.append(("eye", eye, 0.15 * radius))
    return parts


def _foot_ends(joints3d: np.ndarray) -> list[np.ndarray]:
    """Each foot as a capsule [2, 3] mm (heel, toe) from its ankle, pointing the way the
    hips face, about 0.6 shin lengths long and resting near the floor under the ankle."""
    forward = facing(joints3d, "hip")
    feet = []
    for side in ("left", "right"):
        ankle = joints3d[_J[f"{side}_ankle"]]
        length = 0.6 * float(np.linalg.norm(joints3d[_J[f"{side}_knee"]] - ankle))
        feet.append(np.stack([ankle - 0.2 * length * forward - [0, 0, 25],
                              ankle + 0.8 * length * forward - [0, 0, 35]]))
    return feet


def draw_body(image: np.ndarray, joints3d: np.ndarray, camera: Camera,
              appearance: Appearance, light_angle: float = -2.3) -> np.ndarray:
    """Draw the body [17, 3] world mm into `image` (uint8 [S, S, 3], modified in place and
    returned), far parts first. Parts behind the camera are skipped."""
    joints3d = np.asarray(joints3d, dtype=np.float64)
    if joints3d.shape != (NUM_JOINTS, 3):
        raise ValueError(f"joints3d must be [{NUM_JOINTS}, 3], got {list(joints3d.shape)}")
    uv, depth = pinhole_project(camera, joints3d)
    focal = float(camera.K[0, 0] + camera.K[1, 1]) / 2
    light = np.array([np.cos(light_angle), np.sin(light_angle)])
    # (depth, kind, bone index or 3D points [N, 3], radii mm)
    parts: list[tuple] = [((depth[p] + depth[c]) / 2, "capsule", b, None)
                          for b, (p, c) in enumerate(BONES) if (p, c) != HEAD_BONE]
    head = _head_parts(joints3d, appearance)
    head_uv, head_depth = pinhole_project(camera, np.stack([centre for _, centre, _ in head]))
    parts.append((float(head_depth[0]), "head", head, (head_uv, head_depth)))
    if appearance.shoe_colour is not None:
        for ends in _foot_ends(joints3d):
            foot_uv, foot_depth = pinhole_project(camera, ends)
            parts.append((float(foot_depth.mean()), "foot", (foot_uv, foot_depth), None))
    for z, kind, what, extra in sorted(parts, key=lambda part: -part[0]):
        if z <= 1.0:
            continue
        if kind == "head":
            _draw_head(image, what, *extra, appearance, focal, light)
        elif kind == "foot":
            (a, b), (za, zb) = what
            if min(za, zb) > 1.0:
                _draw_capsule(image, a, b, FOOT_RADIUS_MM[0] * focal / za,
                              FOOT_RADIUS_MM[1] * focal / zb, appearance.shoe_colour, light)
        else:
            _draw_limb(image, what, uv, depth, appearance, focal, light)
    return image


def _draw_limb(image: np.ndarray, b: int, uv: np.ndarray, depth: np.ndarray,
               appearance: Appearance, focal: float, light: np.ndarray) -> None:
    p, c = BONES[b]
    if depth[p] <= 1.0 or depth[c] <= 1.0:
        return
    r0, r1 = BONE_RADIUS_MM[b] * appearance.girth * focal / depth[[p, c]]
    _draw_capsule(image, uv[p], uv[c], r0, r1, appearance.bone_colours[b], light)
    bands = appearance.bands[b] if appearance.bands else ()
    for colour in {tuple(colour.tolist()) for _, _, colour in bands}:
        stretches = [(t0, t1) for t0, t1, other in bands if tuple(other.tolist()) == colour]
        _draw_bands(image, uv[p], uv[c], r0, r1, stretches, np.array(colour), light)


def _draw_head(image: np.ndarray, parts: list[tuple], uv: np.ndarray, depth: np.ndarray,
               appearance: Appearance, focal: float, light: np.ndarray) -> None:
    """Skin and hair spheres far to near, then the eyes where they face the camera."""
    if (depth <= 1.0).any():
        return
    spheres = [k for k, (kind, _, _) in enumerate(parts) if kind in ("head", "hair")]
    colours = {"head": appearance.head_colour, "hair": appearance.hair_colour}
    for k in sorted(spheres, key=lambda k: -depth[k]):
        kind, _, radius = parts[k]
        _draw_sphere(image, uv[k], radius * focal / depth[k], colours[kind], light)
    head_radius = parts[0][2]
    for k, (kind, _, radius) in enumerate(parts):
        # an eye is seen when it is on the camera's side of the head, not round its edge
        if kind == "eye" and depth[k] < depth[0] - 0.35 * head_radius:
            _draw_dot(image, uv[k], radius * focal / depth[k], FACE_COLOUR)


def draw_occluders(image: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """Draw `count` random boxes (side 15-40% of the image, placed near the centre where
    the body is), each a flat colour with a vertical gradient; in place."""
    size = image.shape[0]
    for _ in range(count):
        w, h = (rng.uniform(0.15, 0.4, 2) * size).astype(int) + 1
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        x0, y0 = int(cx - w / 2), int(cy - h / 2)
        x1, y1 = min(size, x0 + w), min(size, y0 + h)
        x0, y0 = max(0, x0), max(0, y0)
        if x1 <= x0 or y1 <= y0:
            continue
        colour = rng.uniform(20, 235, 3)
        ramp = np.linspace(1.0, rng.uniform(0.5, 0.9), y1 - y0)[:, None, None]
        image[y0:y1, x0:x1] = np.clip(colour * ramp, 0, 255).astype(np.uint8)
    return image


def render_view(joints3d: np.ndarray, camera: Camera, appearance: Appearance,
                backdrop: Backdrop, *, occluders: int = 0,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """One view: room, body, occluders. camera: pinhole, already cropped and resized to a
    square image (its image_size); joints3d [17, 3] world mm. Returns uint8 [S, S, 3] RGB."""
    if camera.image_size is None or camera.image_size[0] != camera.image_size[1]:
        raise ValueError(f"render_view needs a square camera image_size, got "
                         f"{camera.image_size}")
    if np.any(camera.dist != 0):
        raise ValueError("render_view draws pinhole images: pass camera.undistorted()")
    if occluders and rng is None:
        raise ValueError("occluders need an rng")
    size = int(camera.image_size[0])
    image = render_background(camera, size, backdrop)
    draw_body(image, joints3d, camera, appearance)
    if occluders:
        draw_occluders(image, rng, occluders)
    return image
