"""The 3D face mesh of mediapipe's 478 landmarks, its named regions and the crop's pinhole camera.

Frames and units (the same as :mod:`portrait.mesh`):

- *crop pixels*: continuous coordinates of an aligned crop of side ``S``, x right, y down, pixel centres at
  ``i + 0.5``.
- *camera frame*: pinhole camera at the origin looking down +z, x right, y down, principal point at the
  crop centre, horizontal field of view ``fov_deg`` (default 15 degrees, an assumed portrait lens). One
  unit is the crop's width at the reference distance ``camera_distance(fov_deg)`` (= 3.80 units at 15
  degrees), so the crop spans ``[-0.5, 0.5]`` there, whatever its resolution. ``z`` is the depth.

A landmark at crop pixel ``(u, v)`` with mediapipe depth ``z_px`` (in crop pixels, smaller = nearer) is
placed at depth ``Z = distance + z_px / S`` on the ray through ``(u, v)``: mediapipe's relative depth
becomes metric-like depth at the reference distance, and projecting the mesh with the camera gives the
detected 2D landmarks back exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from ..mesh import DEFAULT_FOV_DEG, camera_distance
from .regions import NUM_LANDMARKS, REGIONS, region  # noqa: F401 (REGIONS, region: re-exported)


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(right_eye, left_eye)`` centres (mean of each eye contour) of ``[478, D]`` points."""
    right = points[region("right_eye_upper", "right_eye_lower")].mean(axis=0)
    left = points[region("left_eye_upper", "left_eye_lower")].mean(axis=0)
    return right, left


# --- topology ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def face_triangles() -> np.ndarray:
    """``[F, 3]`` int32 triangles over the 468 mesh landmarks (irises excluded), built once per process.

    Triangles are the 3-cliques of mediapipe's ``FACEMESH_TESSELATION`` edge graph, minus the two
    spurious cliques inside the nostrils (triangles all of whose edges already border two faces); the
    eye and mouth openings are closed with strips between the upper and lower lid / inner-lip chains, so
    depth renders have no holes there. All triangles are wound counter-clockwise as seen from the camera
    for a frontal face, i.e. their normals point out of the face.
    """
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION  # lazy: slow import

    # 1. Triangles = 3-cliques of the edge graph
    edges = {tuple(sorted(e)) for e in FACEMESH_TESSELATION}
    neighbours: dict[int, set[int]] = {}
    for a, b in edges:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    cliques = {tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]}

    # 2. Drop cliques that are not faces: every edge of theirs is shared by three cliques
    def _edges(t):
        return ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))

    uses: dict[tuple[int, int], int] = {}
    for t in cliques:
        for e in _edges(t):
            uses[e] = uses.get(e, 0) + 1
    triangles = [t for t in sorted(cliques) if not all(uses[e] == 3 for e in _edges(t))]

    # 3. Close the eyes and the mouth
    for upper, lower in (
        ("right_eye_upper", "right_eye_lower"),
        ("left_eye_upper", "left_eye_lower"),
        ("upper_lip_inner", "lower_lip_inner"),
    ):
        triangles += _strip(REGIONS[upper], REGIONS[lower])

    # 4. Consistent winding, then the global sign from the face oval's direction
    oriented = _orient(np.asarray(triangles, dtype=np.int64))
    # mediapipe's oval runs 10 -> 338 -> ..., clockwise on screen for a frontal face; a boundary edge of a
    # camera-facing (counter-clockwise on screen) triangle runs the opposite way.
    a, b = REGIONS["face_oval"][:2]
    if _has_directed_edge(oriented, a, b):
        oriented = oriented[:, ::-1]
    oriented = np.ascontiguousarray(oriented, dtype=np.int32)
    oriented.flags.writeable = False  # shared by every FaceMesh
    return oriented


def _strip(upper: tuple[int, ...], lower: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Triangles closing the opening between two chains that share their first and last points."""
    tris = []
    i = j = 0
    nu, nl = len(upper) - 1, len(lower) - 1
    while i < nu or j < nl:
        if j == nl or (i < nu and (i + 1) / nu <= (j + 1) / nl):
            tris.append((upper[i], upper[i + 1], lower[j]))
            i += 1
        else:
            tris.append((upper[i], lower[j + 1], lower[j]))
            j += 1
    return [t for t in tris if len(set(t)) == 3]


def _orient(triangles: np.ndarray) -> np.ndarray:
    """Flip triangles so neighbours traverse each shared edge in opposite directions (breadth first)."""
    triangles = triangles.copy()
    by_edge: dict[tuple[int, int], list[int]] = {}
    for k, t in enumerate(triangles):
        for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            by_edge.setdefault((min(e), max(e)), []).append(k)
    done = np.zeros(len(triangles), dtype=bool)
    for seed in range(len(triangles)):
        if done[seed]:
            continue
        done[seed] = True
        queue = [seed]
        while queue:
            k = queue.pop()
            t = triangles[k]
            for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
                for n in by_edge[(min(a, b), max(a, b))]:
                    if done[n]:
                        continue
                    if _has_directed_edge(triangles[n : n + 1], a, b):  # same direction: flip
                        triangles[n] = triangles[n][::-1]
                    done[n] = True
                    queue.append(n)
    return triangles


def _has_directed_edge(triangles: np.ndarray, a: int, b: int) -> bool:
    rolled = np.roll(triangles, -1, axis=1)
    return bool(np.any((triangles == a) & (rolled == b)))


# --- camera -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinholeCamera:
    """The crop's camera: at the origin, looking down +z, x right, y down; horizontal FOV ``fov_deg``.

    Resolution-free: ``focal(width)`` gives the focal length in pixels for any image width, so the same
    camera renders a crop at 64 or 1024 pixels.
    """

    fov_deg: float = DEFAULT_FOV_DEG

    @property
    def distance(self) -> float:
        """Reference distance in units: the crop is 1 unit wide there; the head's centre sits near it."""
        return camera_distance(self.fov_deg)

    def focal(self, width: int) -> float:
        """Focal length in pixels for an image ``width`` pixels wide."""
        return width / (2.0 * math.tan(math.radians(self.fov_deg) / 2.0))

    def project(self, points: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
        """Camera-frame ``[N, 3]`` -> pixel coordinates ``[N, 2]`` (continuous) in an image of ``size``."""
        width, height = _wh(size)
        f = self.focal(width)
        points = np.asarray(points, dtype=np.float64)
        z = points[:, 2]
        return np.stack([points[:, 0] / z * f + width / 2.0, points[:, 1] / z * f + height / 2.0], axis=1)

    def unproject(self, uv: np.ndarray, z: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
        """Pixel coordinates ``[N, 2]`` + depth ``[N]`` -> camera-frame points ``[N, 3]``."""
        width, height = _wh(size)
        f = self.focal(width)
        uv, z = np.asarray(uv, dtype=np.float64), np.asarray(z, dtype=np.float64)
        return np.stack([(uv[:, 0] - width / 2.0) / f * z, (uv[:, 1] - height / 2.0) / f * z, z], axis=1)

    def ray_directions(self, size: int | tuple[int, int]) -> np.ndarray:
        """``[H, W, 3]`` float32 ray directions through the pixel centres, scaled to z = 1."""
        width, height = _wh(size)
        f = self.focal(width)
        u = (np.arange(width, dtype=np.float32) + 0.5 - width / 2.0) / f
        v = (np.arange(height, dtype=np.float32) + 0.5 - height / 2.0) / f
        rays = np.empty((height, width, 3), dtype=np.float32)
        rays[..., 0] = u[None, :]
        rays[..., 1] = v[:, None]
        rays[..., 2] = 1.0
        return rays


def _wh(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    width, height = size
    return int(width), int(height)


# --- the mesh ---------------------------------------------------------------------------------------------


@dataclass
class FaceMesh:
    """A face mesh in the crop's camera frame.

    Attributes:
        vertices: ``[478, 3]`` float64 camera-frame points in units (see the module docstring); 468..477
            are the irises (no triangles use them).
        faces: ``[F, 3]`` int32 triangles (:func:`face_triangles`), normals pointing out of the face.
        camera: the crop's :class:`PinholeCamera`.
        colors: optional ``[478, 3]`` uint8 colours sampled from the crop.
    """

    vertices: np.ndarray
    faces: np.ndarray = field(default_factory=face_triangles)
    camera: PinholeCamera = field(default_factory=PinholeCamera)
    colors: np.ndarray | None = None

    def copy(self, **changes) -> FaceMesh:
        changes.setdefault("vertices", self.vertices.copy())
        return replace(self, **changes)

    def project(self, size: int | tuple[int, int]) -> np.ndarray:
        """``[478, 2]`` pixel coordinates of the vertices in an image of ``size`` (the crop at any resolution)."""
        return self.camera.project(self.vertices, size)

    def head_centre(self) -> np.ndarray:
        """``[3]`` centre of rotation for pose changes: midway between the head's sides (near the ears)."""
        return self.vertices[region("head_sides")].mean(axis=0)

    def to_trimesh(self):
        """The mesh as a ``trimesh.Trimesh`` (camera frame, vertex colours if known), for the exports."""
        import trimesh

        colors = None
        if self.colors is not None:
            colors = np.concatenate([self.colors, np.full((len(self.colors), 1), 255, np.uint8)], axis=1)
        return trimesh.Trimesh(self.vertices, self.faces, vertex_colors=colors, process=False)


def face_mesh_from_landmarks(
    landmarks: np.ndarray,
    size: int,
    *,
    camera: PinholeCamera | None = None,
    image: Image.Image | np.ndarray | None = None,
) -> FaceMesh:
    """Build the face mesh from ``[478, 3]`` landmarks in crop pixels of a crop ``size`` pixels wide.

    Each landmark is placed on its pixel's camera ray at depth ``distance + z_px / size``, so
    ``mesh.project(size)`` returns the landmarks' x, y exactly. ``image`` (the crop) gives vertex colours.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"landmarks must be [{NUM_LANDMARKS}, 3], got {landmarks.shape}")
    camera = camera or PinholeCamera()
    z = camera.distance + landmarks[:, 2] / size
    vertices = camera.unproject(landmarks[:, :2], z, size)
    colors = None
    if image is not None:
        colors = _sample_colors(np.asarray(image), landmarks[:, :2] * (np.asarray(image).shape[1] / size))
    return FaceMesh(vertices=vertices, camera=camera, colors=colors)


def _sample_colors(rgb: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest-pixel colours ``[N, 3]`` uint8 of an ``[H, W, 3]`` image at continuous pixel coordinates."""
    h, w = rgb.shape[:2]
    cols = np.clip(np.floor(uv[:, 0]).astype(int), 0, w - 1)
    rows = np.clip(np.floor(uv[:, 1]).astype(int), 0, h - 1)
    return rgb[rows, cols, :3].astype(np.uint8)


def face_mask(mesh: FaceMesh, size: int | tuple[int, int], *, supersample: int = 4) -> np.ndarray:
    """``[H, W]`` bool mask of the face: the projected face oval, filled (anti-aliased, then thresholded).

    For a strongly turned mesh the oval can hide behind a cheek; ``render_depth(mesh, size).mask`` is
    the exact silhouette then.
    """
    width, height = _wh(size)
    oval = mesh.project((width, height))[list(REGIONS["face_oval"])] * supersample
    canvas = Image.new("L", (width * supersample, height * supersample), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in oval], fill=255)
    small = canvas.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small) >= 128
