"""Synthetic RGB-D portraits with exact depth, in identity groups (numpy + the face module, no torch).

An *identity* is a real face mesh (mediapipe landmarks of a real photo: skimage's astronaut, matplotlib's
Grace Hopper and the 100 faces of skimage's LFW subset) changed by smooth shape variations (face-frame
scaling and a few Gaussian bumps), plus a colouring (skin, eyes, lips, brows, hair style and colour,
clothes, background). A *view* is the identity under a pose, an expression (``FaceControls``) and a light.

Depth covers the head and neck. The face is the face module's ray-cast depth of the deformed mesh (camera
z in units, larger = farther); the head (hair or scalp) is an ellipsoid through the top of the forehead,
the ears are small ellipsoids beside the face and the neck a cylinder behind the chin, each shaded by its
own normals and given its own depth; the mask is where any of them is seen (NaN depth elsewhere). Long
hair, shoulders and background are painted in RGB only. RGB is rendered at twice the size and
box-filtered, so its edges are anti-aliased; depth and mask are at the output size. :func:`head_depth` gives
that geometry alone for any face mesh (the real-texture set, :mod:`portrait.data.real_texture`, lifts real
photos onto it).

Everything is reproducible from a seed: identity ``i`` of seed ``s`` draws from its own generator
``default_rng([s, i])``, so it is the same whatever the number of identities. Identities are split by
*source face*: a seeded fraction of the source photos is held out, and every identity built on them is in
the ``test`` split, so evaluation sees face geometry never seen in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ..face import FaceControls, FaceMesh, apply_controls, face_mesh_from_landmarks, region, render_depth
from ..face.controls import FaceFrame
from .spec import SyntheticSpec

logger = logging.getLogger(__name__)

SOURCE_CROP_SIZE = 256  # source meshes are built in a crop of this many pixels (the mesh is resolution-free)
SUPERSAMPLE = 2  # RGB is painted at this multiple of the output size, then box-filtered

# fmt: off
SKIN_TONES = np.array([  # linear-ish sRGB in [0, 1], light to dark
    [0.96, 0.84, 0.76], [0.93, 0.78, 0.66], [0.87, 0.70, 0.57], [0.80, 0.61, 0.47],
    [0.70, 0.51, 0.38], [0.58, 0.40, 0.29], [0.45, 0.31, 0.22], [0.33, 0.23, 0.17],
])
HAIR_COLOURS = np.array([
    [0.08, 0.06, 0.05], [0.20, 0.13, 0.08], [0.36, 0.23, 0.13], [0.55, 0.38, 0.20],
    [0.78, 0.64, 0.40], [0.55, 0.25, 0.12], [0.62, 0.60, 0.58], [0.85, 0.84, 0.82],
])
IRIS_COLOURS = np.array([
    [0.25, 0.15, 0.08], [0.40, 0.26, 0.12], [0.30, 0.45, 0.62], [0.35, 0.48, 0.32], [0.45, 0.47, 0.50],
])
# fmt: on


# --- source faces -----------------------------------------------------------------------------------------


@dataclass
class SourceFace:
    """A real face: ``landmarks`` ``[478, 3]`` in the pixels of an aligned ``SOURCE_CROP_SIZE`` crop."""

    name: str
    landmarks: np.ndarray

    def mesh(self) -> FaceMesh:
        return face_mesh_from_landmarks(self.landmarks, SOURCE_CROP_SIZE)


def _source_photos() -> list[tuple[str, Image.Image]]:
    """The real face photos that packages ship: two portraits and skimage's 100 LFW faces (25x25, grey)."""
    import matplotlib.cbook
    from skimage import data

    photos = [("astronaut", Image.fromarray(data.astronaut()))]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos.append(("grace_hopper", Image.open(f).convert("RGB")))
    lfw = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    for i, face in enumerate(lfw):
        small = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((256, 256), Image.BICUBIC)
        canvas = Image.new("RGB", (384, 384), (128, 128, 128))
        canvas.paste(small, (64, 64))  # room around the face for the detector
        photos.append((f"lfw_{i:03d}", canvas))
    return photos


@lru_cache(maxsize=1)
def source_faces() -> tuple[SourceFace, ...]:
    """Every source face whose landmarks mediapipe finds (cached per process, ~3 s)."""
    from ..errors import NoFaceError
    from ..face import crop_face, detect_landmarks

    faces = []
    for name, photo in _source_photos():
        try:
            aligned = crop_face(photo, detect_landmarks(photo), SOURCE_CROP_SIZE)
        except NoFaceError:
            logger.info("no face found in source photo %s; skipped", name)
            continue
        faces.append(SourceFace(name, aligned.landmarks.astype(np.float64)))
    return tuple(faces)


def split_sources(num_sources: int, test_fraction: float, seed: int) -> np.ndarray:
    """``[num_sources]`` bool, True for the source faces held out for the test split (seeded)."""
    held = np.zeros(num_sources, dtype=bool)
    count = int(round(num_sources * test_fraction))
    if count:
        held[np.random.default_rng([seed, 7919]).permutation(num_sources)[:count]] = True
    return held


# --- identities and views ---------------------------------------------------------------------------------


@dataclass
class Identity:
    """A synthetic person: a deformed source mesh and a colouring (colours are RGB in [0, 1])."""

    index: int
    source: str
    mesh: FaceMesh
    skin: np.ndarray
    lips: np.ndarray
    iris: np.ndarray
    hair: np.ndarray
    clothes: np.ndarray
    hair_volume: float  # size of the head outline relative to the face
    hair_length: float  # 0 = short, 1 = to the shoulders
    bald: bool
    blush: float
    freckle_seed: int


@dataclass
class View:
    """One picture of an identity: pose / expression, light and background."""

    controls: FaceControls
    light: np.ndarray  # [3] unit direction from the surface towards the light, camera frame
    ambient: float
    light_colour: np.ndarray  # [3]
    background: tuple[np.ndarray, np.ndarray]  # two colours of a gradient
    background_angle: float


@dataclass
class Sample:
    """A rendered view. ``rgb`` ``[S, S, 3]`` uint8; ``depth`` ``[S, S]`` float32 camera z in units (NaN
    off the face); ``mask`` ``[S, S]`` bool."""

    rgb: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    controls: dict = field(default_factory=dict)


def vary_shape(mesh: FaceMesh, rng: np.random.Generator, amount: float = 1.0) -> FaceMesh:
    """Smooth shape change of a face mesh: face-frame scaling plus a few Gaussian bumps (eye-distance units)."""
    frame = FaceFrame.of(mesh)
    local = frame.to_face(mesh.vertices)  # [N, 3]
    scale = 1.0 + amount * rng.uniform([-0.07, -0.07, -0.15], [0.07, 0.07, 0.2])
    out = local * scale
    for _ in range(5):
        centre = local[rng.integers(0, 468)]
        radius = rng.uniform(0.25, 0.6)
        weight = np.exp(-((local - centre) ** 2).sum(1) / (2 * radius**2))[:, None]  # [N, 1]
        out = out + amount * weight * rng.normal(0.0, [0.03, 0.03, 0.06])
    return mesh.copy(vertices=frame.origin + frame.vectors_to_camera(out))


def make_identity(index: int, source: SourceFace, seed: int) -> Identity:
    rng = np.random.default_rng([seed, index])
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    lo = int(t)
    skin = SKIN_TONES[lo] * (1 - (t - lo)) + SKIN_TONES[min(lo + 1, len(SKIN_TONES) - 1)] * (t - lo)
    skin = np.clip(skin * rng.uniform(0.95, 1.05, 3), 0, 1)
    lips = np.clip(skin * np.array([0.95, 0.62, 0.62]) * rng.uniform(0.8, 1.0) + rng.uniform(0, 0.08), 0, 1)
    hair = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15, 3), 0, 1)
    return Identity(
        index=index,
        source=source.name,
        mesh=vary_shape(source.mesh(), rng),
        skin=skin,
        lips=lips,
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))],
        hair=hair,
        clothes=rng.uniform(0.1, 0.9, 3),
        hair_volume=rng.uniform(1.05, 1.3),
        hair_length=float(rng.uniform(0, 1) ** 2),
        bald=bool(rng.uniform() < 0.08),
        blush=rng.uniform(0.0, 0.12),
        freckle_seed=int(rng.integers(1 << 30)),
    )


def random_view(rng: np.random.Generator, frontal: bool = False) -> View:
    """A pose (yaw +-30, pitch +-15, roll +-10 degrees), an expression, a light and a background."""
    if frontal:
        controls = FaceControls()
    else:
        expressive = rng.uniform() < 0.7
        controls = FaceControls(
            yaw=rng.uniform(-30, 30),
            pitch=rng.uniform(-15, 15),
            roll=rng.uniform(-10, 10),
            smile=rng.uniform(-0.4, 1.0) if expressive else 0.0,
            jaw_open=rng.uniform(0, 0.8) if expressive and rng.uniform() < 0.4 else 0.0,
            brow_raise=rng.uniform(-0.8, 0.8) if expressive else 0.0,
            eye_close=rng.uniform(0, 1) if rng.uniform() < 0.15 else 0.0,
        )
    azimuth, elevation = rng.uniform(-1.2, 1.2), rng.uniform(-0.9, 0.6)
    light = np.array([np.sin(azimuth) * np.cos(elevation), np.sin(elevation), -np.cos(azimuth) * np.cos(elevation)])
    warm = rng.uniform(-0.08, 0.08)
    bg = rng.uniform(0.05, 0.95, 3)
    return View(
        controls=controls,
        light=light / np.linalg.norm(light),
        ambient=rng.uniform(0.2, 0.5),
        light_colour=np.array([1 + warm, 1.0, 1 - warm]) * rng.uniform(0.9, 1.15),
        background=(bg, np.clip(bg * rng.uniform(0.4, 1.4, 3), 0, 1)),
        background_angle=rng.uniform(0, 2 * np.pi),
    )


# --- painting ---------------------------------------------------------------------------------------------


def _polygon_alpha(size: int, polygons: list[np.ndarray], width: int = 0, line: bool = False) -> np.ndarray:
    """``[size, size]`` float32 coverage of filled polygons (or polylines of ``width`` pixels)."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        pts = [tuple(p) for p in np.asarray(poly, dtype=np.float64)]
        if line:
            draw.line(pts, fill=255, width=max(1, width), joint="curve")
        elif len(pts) >= 3:
            draw.polygon(pts, fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _ellipse_alpha(size: int, centre, radii) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    d = ((xx - centre[0]) / max(radii[0], 1e-3)) ** 2 + ((yy - centre[1]) / max(radii[1], 1e-3)) ** 2
    return np.clip((1.0 - d) * min(radii) / 2.0, 0.0, 1.0)  # ~2-pixel soft edge


def _over(canvas: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return canvas * (1 - a) + a * colour


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, stretch: tuple[int, int] = (1, 1)) -> np.ndarray:
    """``[size, size]`` smooth noise in about [-1, 1]: a coarse random grid, bicubic-upsampled."""
    coarse = rng.normal(0, 1, (cells * stretch[0], cells * stretch[1])).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(img) / 1.5


# --- head geometry (the depth beside the face mesh) ---------------------------------------------------------


@dataclass
class Solid:
    """A part of the head beside the face mesh, at the painting size ``B``: ``alpha`` ``[B, B]`` coverage in
    [0, 1], ``depth`` ``[B, B]`` camera z in units, ``normals`` ``[B, B, 3]`` unit normals (camera frame)."""

    name: str  # "neck", "ear" or "head"
    alpha: np.ndarray
    depth: np.ndarray
    normals: np.ndarray


@dataclass
class _Outline:
    """The face oval's extent in painting-size pixels, and painting-size pixels per camera unit."""

    cx: float
    top: float
    bottom: float
    width: float
    height: float
    px_per_unit: float

    @classmethod
    def of(cls, mesh: FaceMesh, uv: np.ndarray) -> _Outline:
        oval = uv[list(region("face_oval"))]
        top, bottom = float(oval[:, 1].min()), float(oval[:, 1].max())
        width = float(np.ptp(oval[:, 0]))
        px_per_unit = width / max(float(np.ptp(mesh.vertices[list(region("face_oval")), 0])), 1e-6)
        return cls(float(oval[:, 0].mean()), top, bottom, width, bottom - top, px_per_unit)


def head_solids(mesh: FaceMesh, big: int, hair_volume: float, short_hair: bool,
                uv: np.ndarray | None = None) -> list[Solid]:
    """The neck (a vertical cylinder behind the chin), the two ears (small ellipsoids beside the face, a little
    behind its outline) and the head (an ellipsoid, ``hair_volume`` times the face's size, whose front passes
    through the top of the forehead; cut above the jaw line when ``short_hair``), posed with ``mesh``, at a
    painting size of ``big`` pixels, in painter's order. ``uv``: ``mesh.project(big)``, if already computed."""
    uv = mesh.project(big) if uv is None else uv  # [478, 2]
    o = _Outline.of(mesh, uv)
    z = mesh.vertices[:, 2]
    yy, xx = (np.mgrid[0:big, 0:big].astype(np.float32) + 0.5) / big
    solids = []

    # neck: a vertical cylinder behind the chin
    jaw_l, jaw_r, chin = uv[172], uv[397], uv[152]
    neck_w = 0.32 * o.width
    neck_top = (jaw_l[1] + jaw_r[1]) / 2
    neck = _polygon_alpha(big, [np.array([
        [chin[0] - neck_w, neck_top], [chin[0] + neck_w, neck_top],
        [chin[0] + neck_w * 1.1, big * 1.2], [chin[0] - neck_w * 1.1, big * 1.2]])])
    u = np.clip((xx * big - chin[0]) / (1.1 * neck_w), -1, 1)
    w = np.sqrt(1 - u**2)
    neck_front = float(z[152]) + 0.3 * o.height / o.px_per_unit
    neck_depth = neck_front + 1.1 * neck_w / o.px_per_unit * (1 - w)
    solids.append(Solid("neck", neck, neck_depth, np.stack([u, np.zeros_like(u), -w], -1)))

    # ears: small ellipsoids at the sides of the face, a little behind the face outline
    for k in (234, 454):
        ear = uv[k]
        radii = (0.08 * o.width, 0.16 * o.height)
        alpha = _ellipse_alpha(big, (ear[0], ear[1] + 0.02 * o.height), radii)
        eu, ev = (xx * big - ear[0]) / radii[0], (yy * big - ear[1] - 0.02 * o.height) / radii[1]
        ew = np.sqrt(np.clip(1 - eu**2 - ev**2, 0, 1))
        ear_depth = float(z[k]) + radii[0] / o.px_per_unit * (1.2 - 0.5 * ew)
        solids.append(Solid("ear", alpha, ear_depth, _unit(np.stack([eu, ev, -ew], -1))))

    # head: an ellipsoid whose front surface passes through the top of the forehead
    centre = (o.cx, o.top + 0.42 * o.height)
    radii = (0.56 * o.width * hair_volume, 0.62 * o.height * hair_volume)
    head = _ellipse_alpha(big, centre, radii)
    head *= np.clip((neck_top - yy * big) / (0.05 * o.height) + 0.5, 0, 1) if short_hair else 1.0
    hu, hv = (xx * big - centre[0]) / radii[0], (yy * big - centre[1]) / radii[1]
    hw = np.sqrt(np.clip(1 - hu**2 - hv**2, 0, 1))
    rz = radii[0] / o.px_per_unit  # as deep as it is wide
    brow = uv[10]
    d10 = ((brow[0] - centre[0]) / radii[0]) ** 2 + ((brow[1] - centre[1]) / radii[1]) ** 2
    head_centre_z = float(z[10]) + rz * np.sqrt(max(1 - d10, 0.0))
    head_depth = head_centre_z - rz * hw
    normals = _unit(np.stack([hu / radii[0], hv / radii[1], -hw / radii[0]], -1))
    solids.append(Solid("head", head, head_depth, normals))
    return solids


def _composite_depth(solids: list[Solid], exact) -> np.ndarray:
    """``[S, S]`` float32: each pixel takes the (box-filtered) depth of the last solid covering at least half of
    it, then the face mesh's exact depth (``exact``, its render at ``S``) where the mesh is hit; NaN elsewhere."""
    size = exact.depth.shape[0]
    depth = np.full((size, size), np.nan, np.float32)
    for solid in solids:
        depth = np.where(_downsample(solid.alpha) >= 0.5, _downsample(solid.depth), depth)
    return np.where(exact.mask, exact.depth, depth).astype(np.float32)


def head_depth(mesh: FaceMesh, size: int, hair_volume: float = 1.1, short_hair: bool = True) -> np.ndarray:
    """``[size, size]`` float32 camera z of the whole head of ``mesh`` (units, NaN off it): the face mesh's exact
    depth where it is hit, the neck, ears and head of :func:`head_solids` around it (rendered at
    ``SUPERSAMPLE`` times the size and box-filtered). The depth the synthetic renderer gives its portraits."""
    return _composite_depth(head_solids(mesh, size * SUPERSAMPLE, hair_volume, short_hair), render_depth(mesh, size))


def render_view(identity: Identity, view: View, size: int) -> Sample:
    """Render one view of an identity at ``size`` x ``size`` pixels."""
    mesh = apply_controls(identity.mesh, view.controls)
    rng = np.random.default_rng(identity.freckle_seed)
    big = size * SUPERSAMPLE

    # 1. Geometry: depth + mask at the output size, normals + mask at the painting size
    exact = render_depth(mesh, size)
    fine = render_depth(mesh, big)
    uv = mesh.project(big)  # [478, 2] painting-size pixels

    # 2. Background: a linear gradient
    yy, xx = (np.mgrid[0:big, 0:big].astype(np.float32) + 0.5) / big
    t = np.clip(0.5 + (xx - 0.5) * np.cos(view.background_angle) + (yy - 0.5) * np.sin(view.background_angle), 0, 1)
    c0, c1 = view.background
    canvas = c0 * (1 - t[..., None]) + c1 * t[..., None]  # [B, B, 3]

    # 3. Head (hair or scalp), ears and neck: simple solids (an ellipsoid, ellipsoidal ears, a cylinder)
    #    posed with the face, shaded by their own normals and given their own depth. Painter's order
    #    decides what is seen: the depth of a pixel is the depth of the layer painted last over it.
    outline = _Outline.of(mesh, uv)
    cx, top, bottom, width, height = outline.cx, outline.top, outline.bottom, outline.width, outline.height
    hair_tex = 1.0 + 0.12 * _smooth_noise(rng, big, 6, (1, 5))[..., None]
    hair_albedo = (identity.skin * 0.9 if identity.bald else identity.hair) * hair_tex
    skin_albedo = identity.skin

    def lit(normals: np.ndarray, albedo) -> np.ndarray:
        diffuse = np.clip((normals * view.light).sum(-1), 0, 1)[..., None]
        return albedo * (view.ambient + (1 - view.ambient) * diffuse) * view.light_colour

    chin = uv[152]

    # long hair and shoulders: RGB only (no depth, outside the mask)
    shoulders = _ellipse_alpha(big, (cx, bottom + 0.95 * height), (1.1 * width, 0.55 * height))
    side = np.clip(0.5 + 0.5 * view.light[0] * (xx - 0.5) * 2, 0.3, 1.0)[..., None]  # [B, B, 1]
    if identity.hair_length > 0.3 and not identity.bald:
        drop = bottom + identity.hair_length * 0.6 * height
        long_hair = _polygon_alpha(big, [np.array([
            [cx - 0.55 * width * identity.hair_volume, top + 0.5 * height],
            [cx + 0.55 * width * identity.hair_volume, top + 0.5 * height],
            [cx + 0.6 * width, drop], [cx - 0.6 * width, drop]])])
        canvas = _over(canvas, long_hair, hair_albedo * side * view.light_colour)
    canvas = _over(canvas, shoulders, identity.clothes * side * view.light_colour)

    # neck, ears and head (see head_solids), each shaded by its own normals
    solids = head_solids(mesh, big, identity.hair_volume, short_hair=identity.hair_length <= 0.3, uv=uv)
    neck_shade = np.clip(0.55 + 0.45 * (yy * big - chin[1]) / max(0.3 * height, 1), 0.55, 1.0)[..., None]
    albedos = {"neck": skin_albedo, "ear": skin_albedo * 0.95, "head": hair_albedo}
    for solid in solids:
        shading = lit(solid.normals, albedos[solid.name])
        canvas = _over(canvas, solid.alpha, shading * neck_shade if solid.name == "neck" else shading)

    # 4. Face albedo: skin with blotches and blush, then brows, eyes, lips painted from projected landmarks
    albedo = np.broadcast_to(identity.skin, (big, big, 3)).copy()
    albedo *= 1.0 + 0.04 * _smooth_noise(rng, big, 12)[..., None]
    for cheek in (uv[50], uv[280]):
        d2 = ((xx * big - cheek[0]) ** 2 + (yy * big - cheek[1]) ** 2) / (0.12 * width) ** 2
        albedo = _over(albedo, identity.blush * 3 * np.exp(-d2), np.array([0.85, 0.35, 0.35]))
    brow_w = max(2, int(0.045 * width))
    for brow in ("right_eyebrow", "left_eyebrow"):
        chain = uv[list(_chain(brow))]
        albedo = _over(albedo, 0.85 * _polygon_alpha(big, [chain], brow_w, line=True), identity.hair * 0.8)
    for eye in ("right", "left"):
        outline = np.concatenate([uv[list(_chain(f"{eye}_eye_upper"))], uv[list(_chain(f"{eye}_eye_lower"))][::-1]])
        eye_alpha = _polygon_alpha(big, [outline])
        albedo = _over(albedo, eye_alpha, np.array([0.88, 0.86, 0.84]))
        iris_pts = uv[list(region(f"{eye}_iris"))]
        centre = iris_pts[0]
        r = 0.5 * float(np.linalg.norm(iris_pts[1] - iris_pts[3]))
        albedo = _over(albedo, eye_alpha * _ellipse_alpha(big, centre, (r, r)), identity.iris)
        albedo = _over(albedo, eye_alpha * _ellipse_alpha(big, centre, (0.45 * r, 0.45 * r)), np.array([0.03, 0.03, 0.03]))
        lash = _polygon_alpha(big, [uv[list(_chain(f"{eye}_eye_upper"))]], max(1, brow_w // 2), line=True)
        albedo = _over(albedo, 0.8 * lash, np.array([0.08, 0.06, 0.05]))
    lips_outline = np.concatenate([uv[list(_chain("upper_lip_outer"))], uv[list(_chain("lower_lip_outer"))][::-1]])
    albedo = _over(albedo, _polygon_alpha(big, [lips_outline]), identity.lips)
    mouth = np.concatenate([uv[list(_chain("upper_lip_inner"))], uv[list(_chain("lower_lip_inner"))][::-1]])
    albedo = _over(albedo, _polygon_alpha(big, [mouth]), np.array([0.25, 0.08, 0.08]))

    # 5. Shading of the face: ambient + Lambert + a little specular, from the rendered normals
    n = fine.normals
    diffuse = np.clip((n * view.light).sum(-1), 0, 1)[..., None]
    half = view.light + np.array([0.0, 0.0, -1.0])
    half /= np.linalg.norm(half)
    spec = np.clip((n * half).sum(-1), 0, 1)[..., None] ** 20 * 0.15
    face_rgb = albedo * (view.ambient + (1 - view.ambient) * diffuse) * view.light_colour + spec
    canvas = np.where(fine.mask[..., None], face_rgb, canvas)

    # 6. Box-filter down to the output size
    rgb = np.clip(np.round(_downsample(canvas) * 255), 0, 255).astype(np.uint8)

    # 7. Depth at the output size (see head_depth)
    depth = _composite_depth(solids, exact)
    return Sample(rgb=rgb, depth=depth, mask=np.isfinite(depth), controls=view.controls.to_dict())


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _downsample(a: np.ndarray) -> np.ndarray:
    """Box-filter a painting-size map ``[B, B, ...]`` to the output size."""
    s = a.shape[0] // SUPERSAMPLE
    return a.reshape(s, SUPERSAMPLE, s, SUPERSAMPLE, *a.shape[2:]).mean(axis=(1, 3))


@cache
def _chain(name: str) -> tuple[int, ...]:
    from ..face.mesh import REGIONS

    return REGIONS[name]


# --- the data set -----------------------------------------------------------------------------------------


def generate(spec: SyntheticSpec, progress: bool = False):
    """Yield ``(identity_id, view_index, split, source_name, Sample)`` for every view of every identity.

    View 0 of each identity is frontal and neutral (a clean reference); the others are random.
    """
    sources = source_faces()
    if not sources:
        raise RuntimeError("no source face could be meshed")
    held = split_sources(len(sources), spec.test_fraction, spec.seed)
    order = np.random.default_rng([spec.seed, 104729]).permutation(len(sources))
    indices = range(spec.identities)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc="rendering identities", unit="id")
    for i in indices:
        src = int(order[i % len(sources)])
        identity = make_identity(i, sources[src], spec.seed)
        rng = np.random.default_rng([spec.seed, i, 1])
        for v in range(spec.views):
            view = random_view(rng, frontal=(v == 0))
            sample = render_view(identity, view, spec.size)
            yield f"{i:05d}", v, ("test" if held[src] else "train"), sources[src].name, sample


def write_dataset(out, spec: SyntheticSpec, progress: bool = False):
    """Render ``spec`` into the folder format (see :mod:`portrait.data.folder`) with a contact sheet.

    Returns the manifest path. Depth is stored as float32 ``.npy`` (camera z in units, NaN off the face).
    """
    from dataclasses import asdict

    from .folder import FolderWriter, write_contact_sheet

    with FolderWriter(out, generator="portrait.data.synthetic", spec=asdict(spec)) as writer:
        for identity, v, split, source, sample in generate(spec, progress=progress):
            writer.add(f"{identity}_{v:02d}", identity, sample.rgb, sample.depth, sample.mask, split=split,
                       source=source, controls={k: round(x, 3) for k, x in sample.controls.items()})
    manifest = writer.root / "manifest.json"
    write_contact_sheet(out)
    return manifest
