"""Differentiable makeup simulation (lipstick, eyeshadow, blush) placed by facial landmarks.

As an engine transform, :class:`MakeupFilter` reads each sample's 106 landmarks from the
context entry ``"landmarks106"``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine import TransformContext

LANDMARKS = "landmarks106"
"""The context entry of the per-sample landmarks ``[B, 106, 2]``."""
_CACHE_ROWS = 256

# Plausible cosmetic colours, RGB in [0, 1].
LIP_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.62, 0.08, 0.14),  # crimson
    (0.78, 0.16, 0.24),  # classic red
    (0.45, 0.06, 0.12),  # wine
    (0.85, 0.42, 0.52),  # pink
    (0.90, 0.55, 0.62),  # light pink
    (0.72, 0.26, 0.40),  # berry
    (0.58, 0.30, 0.24),  # brown
    (0.72, 0.45, 0.38),  # nude
)
SHADOW_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.22, 0.16, 0.14),  # dark brown
    (0.14, 0.14, 0.16),  # charcoal
    (0.45, 0.33, 0.24),  # bronze
    (0.34, 0.22, 0.45),  # purple
    (0.18, 0.28, 0.48),  # blue
    (0.26, 0.38, 0.26),  # green
    (0.55, 0.40, 0.45),  # mauve
)
BLUSH_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.92, 0.52, 0.56),  # pink
    (0.95, 0.62, 0.60),  # soft rose
    (0.86, 0.44, 0.46),  # deep rose
    (0.95, 0.62, 0.50),  # peach
    (0.82, 0.50, 0.45),  # terracotta
)

REGIONS = ("lips", "shadow", "blush")
_REQUIRED_GROUPS = (
    "lips",
    "left_eye",
    "right_eye",
    "left_cheek_anchor",
    "right_cheek_anchor",
)

Colour = Tensor | Sequence[float]


def sort_by_angle(points: Tensor) -> Tensor:
    """Order contour points ``[B, V, 2]`` by angle about their centroid, so that an unordered
    set of points on a star-shaped contour (eye, lip line) becomes a simple polygon.
    """
    offset = points - points.mean(dim=1, keepdim=True)
    order = torch.atan2(offset[..., 1], offset[..., 0]).argsort(dim=1)
    return points.gather(1, order[..., None].expand_as(points))


def polygon_mask(polygons: Tensor, height: int, width: int) -> Tensor:
    """Rasterise polygons ``[B, V, 2]`` (x, y in pixel coordinates; pixel ``(i, j)`` has its
    centre at ``x = j, y = i``) into a ``[B, H, W]`` 0/1 mask with the even-odd rule.
    """
    device, dtype = polygons.device, polygons.dtype
    py = torch.arange(height, device=device, dtype=dtype)[None, :, None]
    px = torch.arange(width, device=device, dtype=dtype)[None, None, :]
    inside = torch.zeros((polygons.shape[0], height, width), dtype=torch.bool, device=device)
    vertices = polygons.shape[1]
    for i in range(vertices):
        xi, yi = polygons[:, i, 0, None, None], polygons[:, i, 1, None, None]
        xj, yj = polygons[:, i - 1, 0, None, None], polygons[:, i - 1, 1, None, None]
        crosses = (yi > py) != (yj > py)
        dy = torch.where(yj == yi, torch.ones_like(yi), yj - yi)
        x_cross = (xj - xi) * (py - yi) / dy + xi
        inside ^= crosses & (px < x_cross)
    return inside.to(dtype)


def ellipse_mask(centres: Tensor, radii: Tensor, height: int, width: int) -> Tensor:
    """Axis-aligned ellipses, centres ``[B, 2]`` and radii ``[B, 2]`` (x, y) -> ``[B, H, W]``."""
    device, dtype = centres.device, centres.dtype
    py = torch.arange(height, device=device, dtype=dtype)[None, :, None]
    px = torch.arange(width, device=device, dtype=dtype)[None, None, :]
    dx = (px - centres[:, 0, None, None]) / radii[:, 0, None, None].clamp_min(1e-6)
    dy = (py - centres[:, 1, None, None]) / radii[:, 1, None, None].clamp_min(1e-6)
    return (dx**2 + dy**2 <= 1.0).to(dtype)


def feather(mask: Tensor, sigma: float) -> Tensor:
    """Soften a ``[B, 1, H, W]`` mask with a separable Gaussian blur (support of 3 sigma).

    Only the box around the batch's nonzero pixels, grown by the support, is blurred:
    outside it the blur of a zero-padded mask is 0, so the result is the same as blurring
    the whole frame, at the cost of the regions (lips, lids, cheeks) instead of the photo.
    """
    if sigma <= 0:
        return mask
    radius = math.ceil(3.0 * sigma)
    rows = mask.abs().amax(dim=(0, 1, 3)).nonzero().flatten()
    if rows.numel() == 0:
        return mask.clamp(0.0, 1.0)
    cols = mask.abs().amax(dim=(0, 1, 2)).nonzero().flatten()
    height, width = mask.shape[-2:]
    y0, y1 = max(0, int(rows[0]) - radius), min(height, int(rows[-1]) + radius + 1)
    x0, x1 = max(0, int(cols[0]) - radius), min(width, int(cols[-1]) + radius + 1)
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    profile = torch.exp(-(coords**2) / (2.0 * sigma**2))
    profile = (profile / profile.sum()).to(device=mask.device, dtype=mask.dtype)
    box = mask[..., y0:y1, x0:x1]
    blurred = F.conv2d(box, profile.view(1, 1, 1, -1), padding=(0, radius))
    blurred = F.conv2d(blurred, profile.view(1, 1, -1, 1), padding=(radius, 0))
    out = torch.zeros_like(mask)
    out[..., y0:y1, x0:x1] = blurred.clamp(0.0, 1.0)
    return out


def _per_sample(value: Tensor | float, batch: int, like: Tensor) -> Tensor:
    """A scalar or ``[B]`` value as a ``[B, 1, 1, 1]`` tensor on ``like``'s device."""
    out = torch.as_tensor(value, device=like.device, dtype=like.dtype).flatten()
    if out.numel() == 1:
        out = out.expand(batch)
    if out.shape != (batch,):
        raise ValueError(f"expected a number or a [{batch}] tensor, got shape {tuple(out.shape)}")
    return out.reshape(batch, 1, 1, 1)


def _colour(value: Colour, batch: int, like: Tensor) -> Tensor:
    """An RGB colour ``[3]`` or per-sample colours ``[B, 3]`` as ``[B, 3, 1, 1]``."""
    out = torch.as_tensor(value, device=like.device, dtype=like.dtype)
    if out.shape == (3,):
        out = out.expand(batch, 3)
    if out.shape != (batch, 3):
        raise ValueError(f"expected an RGB colour [3] or [{batch}, 3], got {tuple(out.shape)}")
    return out.reshape(batch, 3, 1, 1)


class MakeupFilter:
    """Lipstick, eyeshadow and blush alpha-blended into face images through soft masks.

    ``groups`` names landmark indices (into the ``[B, N, 2]`` landmark array):

    - ``"lips"``: the outer lip contour;
    - ``"inner_lips"`` (optional): the inner lip contour; the mouth opening stays uncoloured;
    - ``"left_eye"``, ``"right_eye"``: eye contours; the eyeshadow is the
      eye polygon enlarged about its centroid and raised, above the eye centre; the eyes
      (and the mouth opening) are never coloured;
    - ``"left_cheek_anchor"``, ``"right_cheek_anchor"``: an index, or indices whose mean is
      the blush centre; the blush is an ellipse sized by the distance between the eyes.

    Contour points may come in any order (they are sorted by angle about their centroid),
    but each contour group must hold only that contour's points. Masks are built without
    gradient; the output is differentiable with respect to ``x``.
    """

    def __init__(
        self,
        groups: Mapping[str, Sequence[int] | int],
        intensity_range: tuple[float, float] = (0.2, 0.6),
        feather_sigma: float | None = None,
        shadow_scale: tuple[float, float] = (1.35, 2.4),
        shadow_raise: float = 0.45,
        blush_radii: tuple[float, float] = (0.28, 0.2),
        colour_jitter: float = 0.04,
    ) -> None:
        missing = [name for name in _REQUIRED_GROUPS if name not in groups]
        if missing:
            raise ValueError(f"missing landmark groups: {missing}")
        self.groups: dict[str, list[int]] = {
            name: [idx] if isinstance(idx, int) else [int(i) for i in idx]
            for name, idx in groups.items()
        }
        for name in ("lips", "left_eye", "right_eye", "inner_lips"):
            if name in self.groups and len(self.groups[name]) < 3:
                raise ValueError(f"group {name!r} needs at least 3 points for a polygon")
        self.intensity_range = intensity_range
        self.feather_sigma = feather_sigma
        self.shadow_scale = shadow_scale
        self.shadow_raise = float(shadow_raise)
        self.blush_radii = blush_radii
        self.colour_jitter = float(colour_jitter)
        self._cache: OrderedDict[tuple[bytes, int, int], dict[str, Tensor]] = OrderedDict()

    def masks(self, landmarks: Tensor, height: int, width: int) -> dict[str, Tensor]:
        """Soft masks ``[B, 1, H, W]`` in ``[0, 1]`` for ``"lips"``, ``"shadow"``, ``"blush"``.

        Masks are cached per sample (by its landmarks and the size), so an attack loop that
        draws different subsets of the same faces rasterises each face once.
        """
        rows = landmarks.detach().to(device="cpu", dtype=torch.float32)
        keys = [(row.numpy().tobytes(), height, width) for row in rows]
        missing = sorted({i for i, key in enumerate(keys) if key not in self._cache})
        if missing:
            built = self._build_masks(landmarks[missing], height, width)
            for j, i in enumerate(missing):
                self._cache[keys[i]] = {name: m[j : j + 1] for name, m in built.items()}
        for key in keys:
            self._cache.move_to_end(key)
        while len(self._cache) > _CACHE_ROWS:
            self._cache.popitem(last=False)
        return {
            name: torch.cat([self._cache[key][name] for key in keys]).to(landmarks.device)
            for name in REGIONS
        }

    def _build_masks(self, landmarks: Tensor, height: int, width: int) -> dict[str, Tensor]:
        """Rasterise and feather the three regions."""
        with torch.no_grad():
            pts = landmarks.detach().to(torch.float32)
            sigma = self.feather_sigma
            if sigma is None:
                sigma = max(1.0, 0.012 * min(height, width))

            lips = polygon_mask(self._contour(pts, "lips"), height, width)
            mouth = torch.zeros_like(lips)
            if "inner_lips" in self.groups:
                mouth = polygon_mask(self._contour(pts, "inner_lips"), height, width)

            eye_centres = []
            eyes = torch.zeros_like(lips)
            shadow = torch.zeros_like(lips)
            for side in ("left_eye", "right_eye"):
                eye = self._contour(pts, side)
                centre = eye.mean(dim=1, keepdim=True)
                eye_height = (eye[..., 1].amax(dim=1) - eye[..., 1].amin(dim=1))[:, None]
                scale = torch.tensor(self.shadow_scale, device=pts.device)
                lid = (eye - centre) * scale + centre
                lid[..., 1] -= self.shadow_raise * eye_height
                rows = torch.arange(height, device=pts.device, dtype=pts.dtype)
                above = (rows[None, :, None] <= centre[:, :, 1, None]).to(pts.dtype)
                eye_mask = polygon_mask(eye, height, width)
                region = polygon_mask(lid, height, width) * above * (1.0 - eye_mask)
                shadow = torch.maximum(shadow, region)
                eyes = torch.maximum(eyes, eye_mask)
                eye_centres.append(centre[:, 0])

            eye_distance = (eye_centres[0] - eye_centres[1]).norm(dim=1, keepdim=True)
            radii = eye_distance * torch.tensor(self.blush_radii, device=pts.device)
            blush = torch.zeros_like(lips)
            for side in ("left_cheek_anchor", "right_cheek_anchor"):
                centre = pts[:, self.groups[side]].mean(dim=1)
                blush = torch.maximum(blush, ellipse_mask(centre, radii, height, width))

            # Feather, then keep the eyes and the mouth opening clean with hard edges.
            keep_out = {"lips": mouth, "shadow": eyes, "blush": torch.maximum(eyes, mouth)}
            raw = {"lips": lips, "shadow": shadow, "blush": blush}
            return {
                name: (feather(mask[:, None], sigma) * (1.0 - keep_out[name][:, None])).to(
                    landmarks.device
                )
                for name, mask in raw.items()
            }

    def _contour(self, points: Tensor, name: str) -> Tensor:
        """The points of group ``name`` as a polygon ``[B, V, 2]`` (ordered by angle)."""
        return sort_by_angle(points[:, self.groups[name]])

    def apply(
        self,
        x: Tensor,
        landmarks: Tensor,
        lip_rgb: Colour,
        shadow_rgb: Colour,
        blush_rgb: Colour,
        intensity: Tensor | float,
    ) -> Tensor:
        """Deterministic makeup: fixed colours (``[3]`` or ``[B, 3]``) and intensity
        (a number or ``[B]``) for all three regions.
        """
        batch = x.shape[0]
        alpha = _per_sample(intensity, batch, x)
        colours = {
            "lips": _colour(lip_rgb, batch, x),
            "shadow": _colour(shadow_rgb, batch, x),
            "blush": _colour(blush_rgb, batch, x),
        }
        return self._blend(x, landmarks, colours, {name: alpha for name in REGIONS})

    def __call__(self, x: Tensor, ctx: TransformContext, gen: torch.Generator) -> Tensor:
        """Random makeup per sample (landmarks from ``ctx["landmarks106"]``): palette
        colours with jitter, an intensity per region drawn from ``intensity_range``.
        """
        landmarks, generator = ctx[LANDMARKS], gen
        batch = x.shape[0]
        colours: dict[str, Tensor] = {}
        alphas: dict[str, Tensor] = {}
        low, high = self.intensity_range
        palettes = {"lips": LIP_PALETTE, "shadow": SHADOW_PALETTE, "blush": BLUSH_PALETTE}
        for name in REGIONS:
            palette = torch.tensor(palettes[name], dtype=torch.float32)
            pick = torch.randint(
                len(palette), (batch,), generator=generator, device=generator.device
            ).cpu()
            jitter = torch.randn((batch, 3), generator=generator, device=generator.device)
            colour = (palette[pick] + self.colour_jitter * jitter.cpu()).clamp(0.0, 1.0)
            u = torch.rand((batch,), generator=generator, device=generator.device).cpu()
            colours[name] = colour.to(device=x.device, dtype=x.dtype).reshape(batch, 3, 1, 1)
            alpha = low + (high - low) * u
            alphas[name] = alpha.to(device=x.device, dtype=x.dtype).reshape(batch, 1, 1, 1)
        return self._blend(x, landmarks, colours, alphas)

    def _blend(
        self,
        x: Tensor,
        landmarks: Tensor,
        colours: Mapping[str, Tensor],
        alphas: Mapping[str, Tensor],
    ) -> Tensor:
        """Alpha-blend each region's colour into ``x`` in turn."""
        masks = self.masks(landmarks, x.shape[-2], x.shape[-1])
        out = x
        for name in ("shadow", "blush", "lips"):
            weight = (masks[name].to(x) * alphas[name]).clamp(0.0, 1.0)
            out = out + weight * (colours[name] - out)
        return out
