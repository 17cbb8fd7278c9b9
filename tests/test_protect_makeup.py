"""The makeup filter of the protect job (face-only EOT transform) on synthetic landmarks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from workers.engine import RandomApply, TransformContext
from workers.jobs.protect.makeup import LANDMARKS, MakeupFilter


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ctx_with(lm: Tensor) -> TransformContext:
    return TransformContext.of_batch(lm.shape[0], **{LANDMARKS: lm})


# --- makeup -----------------------------------------------------------------------------------


def _circle(cx: float, cy: float, rx: float, ry: float, n: int = 8) -> list[tuple[float, float]]:
    t = torch.arange(n) * (2 * torch.pi / n)
    return list(
        zip((cx + rx * torch.cos(t)).tolist(), (cy + ry * torch.sin(t)).tolist(), strict=True)
    )


GROUPS = {
    "lips": list(range(0, 8)),
    "left_eye": list(range(10, 18)),
    "right_eye": list(range(20, 28)),
    "left_cheek_anchor": 30,
    "right_cheek_anchor": [31, 32],
}


def _face_landmarks(batch: int = 2) -> Tensor:
    """Synthetic 106-point landmarks for a 64x64 "face"; unused points sit at (1, 1)."""
    pts = torch.ones(106, 2)
    pts[0:8] = torch.tensor(_circle(32, 50, 9, 4))
    pts[10:18] = torch.tensor(_circle(20, 26, 5, 2.5))
    pts[20:28] = torch.tensor(_circle(44, 26, 5, 2.5))
    pts[30] = torch.tensor([18.0, 38.0])
    pts[31], pts[32] = torch.tensor([44.0, 36.0]), torch.tensor([48.0, 40.0])
    return pts.expand(batch, 106, 2).clone()


def test_makeup_changes_pixels_only_inside_masks() -> None:
    filt = MakeupFilter(GROUPS, feather_sigma=1.0)
    x = torch.full((2, 3, 64, 64), 0.6, requires_grad=True)
    lm = _face_landmarks()
    out = filt(x, ctx_with(lm), gen(0))
    masks = filt.masks(lm, 64, 64)
    support = sum(m for m in masks.values())
    assert isinstance(support, Tensor)
    changed = (out - x).abs().amax(1, keepdim=True) > 1e-6
    assert changed.any()
    assert not (changed & (support == 0)).any()
    assert changed[:, :, 50, 32].all()  # lip centre
    assert changed[:, :, 22, 20].all()  # above the left eye
    assert not changed[:, :, 26, 20].any()  # the eye itself stays clean
    assert changed[:, :, 38, 46].all()  # blush centred between points 31 and 32
    assert not changed[:, :, 5:12, :].any() and not changed[:, :, 60:, :].any()
    out.sum().backward()
    assert x.grad is not None and (x.grad < 1).any() and (x.grad == 1).any()


def test_makeup_random_colours_seeded_and_deterministic_apply() -> None:
    filt = MakeupFilter(GROUPS)
    x = torch.full((2, 3, 64, 64), 0.5)
    lm = _face_landmarks()
    a, b, c = (filt(x, ctx_with(lm), gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    red, brown, pink = (0.7, 0.1, 0.2), (0.35, 0.22, 0.18), (0.9, 0.45, 0.5)
    d = filt.apply(x, lm, red, brown, pink, 0.5)
    assert torch.equal(d, filt.apply(x, lm, red, brown, pink, 0.5))
    lip = d[0, :, 50, 32]
    assert torch.allclose(lip, 0.5 + 0.5 * masks_at(filt, lm, "lips") * (torch.tensor(red) - 0.5))
    stronger = filt.apply(x, lm, red, brown, pink, torch.tensor([0.2, 0.6]))
    gap = (stronger - x).abs()
    assert gap[1].sum() > gap[0].sum()


def masks_at(filt: MakeupFilter, lm: Tensor, name: str) -> Tensor:
    return filt.masks(lm, 64, 64)[name][0, 0, 50, 32]


def test_makeup_contour_order_does_not_matter() -> None:
    lm = _face_landmarks(1)
    shuffled = {**GROUPS, "lips": [3, 0, 6, 1, 7, 2, 5, 4], "left_eye": [17, 10, 13, 12, 15]}
    shuffled["left_eye"] += [11, 14, 16]
    a = MakeupFilter(GROUPS).masks(lm, 64, 64)
    b = MakeupFilter(shuffled).masks(lm, 64, 64)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert a["lips"].sum() > 50


def test_makeup_requires_groups() -> None:
    with pytest.raises(ValueError):
        MakeupFilter({"lips": [0, 1, 2]})


def test_makeup_composes_with_random_apply_and_caches_per_face() -> None:
    filt = MakeupFilter(GROUPS)
    x = torch.full((4, 3, 64, 64), 0.5)
    lm = _face_landmarks(4)
    lm[2:] += 1.0  # two different faces
    out = RandomApply(filt, 0.5)(x, ctx_with(lm), gen(1))  # picks samples 1 and 2
    changed = (out - x).abs().flatten(1).amax(1) > 0
    assert 0 < int(changed.sum()) < 4
    assert len(filt._cache) == 2  # masks rasterised once per distinct face
    subset = filt.masks(lm[1:3], 64, 64)["lips"]
    assert torch.equal(subset, filt.masks(lm, 64, 64)["lips"][1:3])


def test_feather_blurs_only_the_mask_box_and_matches_a_whole_frame_blur() -> None:
    from workers.jobs.protect.makeup import feather

    sigma, radius = 2.5, 8
    mask = torch.zeros(2, 1, 60, 80)
    mask[0, 0, 20:30, 30:40] = 1.0
    mask[1, 0, 0:4, 70:80] = 0.5  # touches the frame's edges: zero padding there too
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    profile = torch.exp(-(coords**2) / (2 * sigma**2))
    profile = (profile / profile.sum()).float()
    whole = torch.nn.functional.conv2d(mask, profile.view(1, 1, 1, -1), padding=(0, radius))
    whole = torch.nn.functional.conv2d(whole, profile.view(1, 1, -1, 1), padding=(radius, 0))
    out = feather(mask, sigma)
    assert torch.allclose(out, whole.clamp(0, 1), atol=1e-6)
    assert out[0, 0, 25, 35] < 1.0 and out[0, 0, 25, 35 + radius + 6] == 0.0
    assert torch.equal(feather(torch.zeros(1, 1, 9, 9), sigma), torch.zeros(1, 1, 9, 9))
