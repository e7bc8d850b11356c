"""Sliding-window inference: window placement, blending, band-wise output, tiled == whole."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fcnkit.inference import Predictor
from fcnkit.inference.memory import release_freed_memory
from fcnkit.inference.tiling import (TilePlan, carried_rows, choose_plan, fit_tile, fitted_tiles, grid_align,
                                     grid_cells, make_plan, parse_memory, ramp, resolve_overlap, tiled_bytes,
                                     tiled_scores, window_starts)
from predict_fixtures import colour_fcn, scene, seg_spec


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 700), tile=st.integers(1, 300), frac=st.floats(0, 0.9), align=st.sampled_from([1, 8, 32]))
def test_windows_cover_every_pixel_on_the_grid(size: int, tile: int, frac: float, align: int) -> None:
    plan = make_plan(tile, frac, align)
    t, o, a = plan.tile[0], plan.overlap[0], plan.align
    starts = window_starts(size, min(t, size), o, a)
    covered = np.zeros(size, dtype=int)
    for s in starts:
        covered[s:s + t] += 1
    assert covered.min() >= 1  # every pixel in some window
    assert starts == sorted(set(starts)) and starts[0] == 0 and starts[-1] < size
    assert all(s % a == 0 for s in starts)  # same pooling grid as the whole image
    assert all(b - s <= t for s, b in zip(starts, starts[1:]))  # no gaps


def test_window_starts_known_values() -> None:
    assert window_starts(300, 128, 32, 32) == [0, 96, 192]  # last window 192..300, 108 rows
    assert window_starts(400, 128, 32, 32) == [0, 96, 192, 288]
    assert window_starts(400, 128, 32, 1) == [0, 91, 181, 272]  # unaligned: last window flush, even steps
    assert window_starts(100, 128, 32, 32) == [0]
    # a short last step would overlap its neighbour by 896 of 1152 rows: spread evenly instead
    assert window_starts(4000, 1152, 288, 32) == [0, 704, 1440, 2144, 2848]
    assert fit_tile(4000, 1152, 288, 32) == 1056  # the same five windows, 16% fewer pixels each
    assert window_starts(4000, 1056, 288, 32) == [0, 736, 1472, 2208, 2944]
    assert carried_rows(4000, 1056, 288, 32) == 1056 - 736


@settings(max_examples=200, deadline=None)
@given(size=st.integers(65, 3000), tile=st.integers(64, 600), frac=st.floats(0, 0.6), align=st.sampled_from([1, 8, 32]))
def test_fitted_windows_keep_the_overlap_near_what_was_asked(size: int, tile: int, frac: float, align: int) -> None:
    plan = make_plan(tile, frac, align)
    t, o, a = plan.tile[0], plan.overlap[0], plan.align
    fitted = fit_tile(size, t, o, a)
    assert fitted <= min(t, size)
    starts = window_starts(size, fitted, o, a)
    assert len(starts) == len(window_starts(size, min(t, size), o, a))  # no extra windows
    assert starts[-1] + fitted >= size
    overlaps = [min(s + fitted, size) - b for s, b in zip(starts, starts[1:])]
    if overlaps and fitted - o >= a:  # room for at least one grid step between windows
        assert min(overlaps) >= o and max(overlaps) <= o + 2 * a  # hence the carry across the width


def test_ramp_is_positive_cubic_and_flat_on_borders() -> None:
    w = ramp(10, 3, rise=True, fall=False)
    assert torch.allclose(w[:3], torch.tensor([0.25, 0.5, 0.75]) ** 3)
    assert torch.equal(w[3:], torch.ones(7))
    assert torch.equal(ramp(10, 3, rise=False, fall=False), torch.ones(10))
    both = ramp(4, 3, rise=True, fall=True)
    assert (both > 0).all() and (both <= 1).all()


@pytest.mark.parametrize("text, expected", [("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.5GB", 3 * 2**29),
                                            ("1000", 1000), ("64kb", 65536), (4096, 4096)])
def test_parse_memory(text, expected) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "G", "2Q", "-1G", "0"])
def test_parse_memory_rejects(text) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)


def test_default_overlap_is_a_quarter_but_at_least_256_pixels() -> None:
    assert [resolve_overlap(None, t) for t in (128, 512, 1024, 2048)] == [64, 256, 256, 512]
    assert resolve_overlap(0.25, 512) == 128 and resolve_overlap(40, 512) == 40
    with pytest.raises(ValueError):
        resolve_overlap(512, 512)


def test_choose_plan_fits_the_budget() -> None:
    assert choose_plan(360, 480, bytes_per_pixel=1000, num_classes=11, budget=2**30) is None  # whole fits
    budget = 100 * 2**20
    plan = choose_plan(8000, 8000, bytes_per_pixel=1000, num_classes=11, budget=budget, multiple=32)
    t = plan.tile[0]
    assert t % 32 == 0 and plan.align == 32 and plan.overlap == (resolve_overlap(None, t),) * 2

    def cost(t: int, height: int = 8000) -> float:
        p = TilePlan((t, t), (resolve_overlap(None, t),) * 2, 32)
        return tiled_bytes(height, 8000, p, bytes_per_pixel=1000, num_classes=11)

    # by hand: 224-px tiles overlap by 112 and step by 96, so 128 rows are carried across the
    # 8000-px width: 1012 * 224^2 + 4 * 12 * 128 * 8000 = 99.9e6 B <= 100 MiB = 104.9e6 B.
    # 256-px tiles step by 128 and carry 128 rows: 66.3e6 + 49.2e6 = 115.5e6 B, too much.
    assert plan == TilePlan((224, 224), (112, 112), 32)
    assert fitted_tiles(8000, 8000, plan) == (224, 224) and carried_rows(8000, 224, 112, 32) == 128
    assert cost(224) == 1012 * 224**2 + 4 * 12 * 128 * 8000 <= budget < cost(256)
    assert all(cost(b) > budget for b in range(t + 32, 8001, 32))  # nothing larger fits either
    # the same budget, a taller image: about the same tile (memory does not grow with height)
    tall = choose_plan(20000, 8000, bytes_per_pixel=1000, num_classes=11, budget=budget)
    assert abs(tall.tile[0] - t) <= 64 and cost(tall.tile[0], 20000) <= budget


@settings(max_examples=60, deadline=None)
@given(h=st.integers(40, 700), w=st.integers(40, 300), tile=st.integers(64, 200), frac=st.floats(0, 0.6))
def test_the_carry_tiled_scores_needs_is_what_the_planner_counts(h: int, w: int, tile: int, frac: float) -> None:
    plan = make_plan(tile, frac, 32)
    tiles, rows = [], {}  # tile shapes in call order; per tile row: (its top, its final rows' end)

    def score(x: torch.Tensor) -> torch.Tensor:
        tiles.append(tuple(x.shape[-2:]))
        return torch.zeros(1, 2, *x.shape[-2:])

    def emit(r0: int, r1: int, c0: int, c1: int, logits: torch.Tensor) -> None:
        rows.setdefault(r0, (r1, tiles[-1][0]))

    tiled_scores(score, torch.zeros(3, h, w, dtype=torch.uint8), plan, emit)
    carry = max(top + height - end for top, (end, height) in rows.items())  # rows handed to the next row
    th, tw = fitted_tiles(h, w, plan)
    assert carry == carried_rows(h, th, plan.overlap[0], plan.align)
    assert max(a * b for a, b in tiles) <= th * tw


@pytest.mark.parametrize("size,tile,align,expected", [(8000, 1056, 1, [1000] * 8), (10, 3, 1, [2, 3, 2, 3]),
                                                      (5, 8, 1, [5]), (7, 7, 1, [7]),
                                                      (8000, 1056, 32, [992, 992, 992, 1024] * 2), (5, 1, 32, [5])])
def test_grid_cells_are_as_equal_as_can_be(size, tile, align, expected) -> None:
    cells = grid_cells(size, tile, align)
    assert all(a % align == 0 for a, _ in cells)  # on the stride grid: no padding inside the image
    assert [b - a for a, b in cells] == expected and cells[0][0] == 0 and cells[-1][1] == size
    assert all(a[1] == b[0] for a, b in zip(cells, cells[1:]))


def test_emit_covers_each_pixel_once_and_tiles_stay_small() -> None:
    hits = np.zeros((301, 97), dtype=int)
    shapes = []

    def score(tile: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(tile.shape[-2:]))
        return torch.zeros(1, 2, *tile.shape[-2:])

    def emit(r0: int, r1: int, c0: int, c1: int, logits: torch.Tensor) -> None:
        assert logits.shape == (2, r1 - r0, c1 - c0)
        hits[r0:r1, c0:c1] += 1

    image = torch.zeros(3, 301, 97, dtype=torch.uint8)
    tiled_scores(score, image, TilePlan((64, 64), (16, 16), 32), emit)
    assert (hits == 1).all()
    assert max(h for h, _ in shapes) <= 64 and max(w for _, w in shapes) <= 64


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 150), w=st.integers(1, 150), tile=st.integers(8, 80), frac=st.floats(0, 0.8),
       align=st.sampled_from([1, 8, 32]))
def test_blending_position_independent_scores_gives_them_back(h, w, tile, frac, align) -> None:
    """Where every tile agrees on a pixel, any weighted average of them is that value."""
    image = torch.from_numpy(np.random.default_rng(h * 1000 + w).integers(0, 256, (3, h, w), dtype=np.uint8))
    out = torch.full((2, h, w), float("nan"))

    def emit(r0, r1, c0, c1, logits):
        out[:, r0:r1, c0:c1] = logits

    tiled_scores(lambda t: t[:, :2].float(), image, make_plan(tile, frac, align), emit)
    assert torch.allclose(out, image[:2].float(), atol=1e-3)


class Pointwise(torch.nn.Module):
    """A 1x1 conv as a 4-class model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 1)
        self.spec, self.meta = seg_spec(4), {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"seg": self.conv(x)}


def test_pointwise_model_tiled_equals_whole() -> None:
    """A 1x1 conv has no context: blending must reproduce the whole-image probabilities."""
    conv = Pointwise()
    image = np.random.default_rng(0).integers(0, 256, (301, 411, 3), dtype=np.uint8)
    whole = Predictor(conv, tile=0, channels_last=False, amp="off").predict(image, probabilities=True)
    for tile, overlap in [(128, 0.25), (100, 37), (64, 0.5)]:
        tiled = Predictor(conv, tile=tile, overlap=overlap, channels_last=False, amp="off").predict(image, probabilities=True)
        assert tiled.plan is not None and whole.plan is None
        assert np.array_equal(tiled.mask, whole.mask)
        assert np.abs(tiled.probabilities.astype(np.float32) - whole.probabilities).max() < 2e-3


def test_tiled_agrees_with_whole_image_on_a_segmenting_fcn() -> None:
    model = colour_fcn()
    image = scene(300, 400, seed=0)
    whole = Predictor(model, tile=0, channels_last=False, amp="off").predict(image).mask
    # the comparison means something: the whole-image mask is a segmentation, not a constant
    counts = np.bincount(whole.ravel(), minlength=3) / whole.size
    assert counts.min() > 0.1
    assert (whole == image.argmax(2)).mean() > 0.65
    for tile, overlap in [(128, 0.25), (160, 0.25), (96, 32)]:
        tiled = Predictor(model, tile=tile, overlap=overlap, channels_last=False, amp="off").predict(image)
        assert tiled.plan is not None
        agreement = (tiled.mask == whole).mean()
        assert agreement >= 0.995, (tile, overlap, agreement)


def test_memory_budget_switches_to_tiles_with_same_size_output() -> None:
    model = colour_fcn()
    image = scene(260, 333, seed=1)
    roomy = Predictor(model, max_memory="1G", channels_last=False, amp="off").predict(image)
    tight_predictor = Predictor(model, max_memory="3M", channels_last=False, amp="off")
    tight = tight_predictor.predict(image)
    assert roomy.plan is None
    assert tight.plan is not None and tight.plan.tile[0] < 260
    bpp = tight_predictor.backend.bytes_per_pixel()
    assert bpp > 0 and bpp * tight.plan.tile[0] ** 2 <= 3 * 2**20
    assert tight.mask.shape == (260, 333)
    assert (tight.mask == roomy.mask).mean() >= 0.99


def test_tiled_agrees_with_whole_on_real_camvid_images() -> None:
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid" / "val"
    if not root.is_dir():
        pytest.skip(f"real CamVid not found at {root}")
    model = colour_fcn()
    whole_p = Predictor(model, tile=0, channels_last=False, amp="off")
    tiled_p = Predictor(model, tile=128, overlap=0.25, channels_last=False, amp="off")
    for path in sorted(root.glob("*.png"))[:3]:
        whole = whole_p.predict(path).mask
        assert whole.shape == (360, 480)
        assert len(np.unique(whole)) >= 2
        tiled = tiled_p.predict(path)
        assert tiled.plan is not None
        assert (tiled.mask == whole).mean() >= 0.995, path


@pytest.mark.parametrize("tta", [dict(flip=True), dict(scales=(0.75, 1.0, 1.25)), dict(tta=True)])
def test_tta_and_tiles_combine(tta) -> None:
    """Mirrored views are padded onto the same grid and tile corners are aligned so that
    rescaled tiles share the rescaled whole image's grid: agreement stays >= 99.5%."""
    model = colour_fcn()
    image = scene(300, 360, seed=2)
    whole = Predictor(model, tile=0, channels_last=False, amp="off", **tta).predict(image, probabilities=True)
    tiled = Predictor(model, tile=256, channels_last=False, amp="off", **tta).predict(image, probabilities=True)
    assert tiled.plan is not None and tiled.mask.shape == (300, 360)
    assert np.allclose(tiled.probabilities.astype(np.float32).sum(0), 1.0, atol=3e-3)
    assert (tiled.mask == whole.mask).mean() >= 0.995


def test_grid_align() -> None:
    assert grid_align(32) == 32
    assert grid_align(32, (0.75, 1.0, 1.25)) == 128
    assert grid_align(32, (0.5, 1.0, 1.5)) == 64
    assert grid_align(32, (1.1,)) == 320
    assert grid_align(32, (0.3333,)) == 32  # no alignment within 16 steps: plain stride


class PointwiseSE(torch.nn.Module):
    """1x1 scores scaled per class by a squeeze-and-excitation gate on the global mean:
    pointwise except for the global pool, like MobileNetV3's SE blocks in miniature."""

    def __init__(self) -> None:
        super().__init__()
        self.score = torch.nn.Conv2d(3, 3, 1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.gate = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.score.weight.copy_(torch.eye(3)[:, :, None, None])
            self.score.bias.fill_(3.0)  # logits > 0, so the gate's scaling decides between classes
            self.gate.weight.copy_(-4 * torch.eye(3)[:, :, None, None])  # a globally rare colour wins
            self.gate.bias.zero_()
        self.spec, self.meta = seg_spec(3), {}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"seg": self.score(x) * torch.sigmoid(self.gate(self.pool(x)))}


def _two_halves(h: int = 200, w: int = 300) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    image[:, : w // 3, 0] += 120  # a reddish third, the rest noise: tile means differ from the image's
    return image


@pytest.mark.parametrize("budget", [None, "20K"])  # whole-image pass fits / too big: averaged tiles
def test_global_pools_see_the_whole_image(budget) -> None:
    model = PointwiseSE()
    image = _two_halves()
    whole = Predictor(model, tile=0, amp="off").predict(image, probabilities=True)
    tiled_p = Predictor(model, tile=64, overlap=16, max_memory=budget, amp="off")
    tiled = tiled_p.predict(image, probabilities=True)
    assert tiled_p.context and tiled.plan is not None
    assert np.array_equal(tiled.mask, whole.mask)
    assert np.abs(tiled.probabilities.astype(np.float32) - whole.probabilities).max() < 2e-3
    tiled_p.context = None  # each tile with its own statistics: the masks differ
    assert (tiled_p.predict(image).mask == whole.mask).mean() < 0.95


def _resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc to read the resident set")
def test_release_freed_memory_returns_a_pinned_heap_to_the_os() -> None:
    blocks = [bytearray(100_000) for _ in range(2000)]  # ~200 MB of heap blocks below the mmap threshold
    for b in blocks:
        b[::4096] = b"x" * len(b[::4096])  # touch every page
    pin = blocks.pop()  # the last block stays alive above the others: free() alone cannot shrink the heap
    del blocks
    before = _resident_mb()
    if not release_freed_memory():
        pytest.skip("not glibc: nothing to release")
    assert before - _resident_mb() > 150  # MB given back
    del pin


def test_heap_guard_trims_only_past_its_allowance(monkeypatch) -> None:
    import fcnkit.inference.memory as memory

    resident = iter([1000, 1500, 2001, 900])  # at creation, then at three calls
    monkeypatch.setattr(memory, "resident_bytes", lambda: next(resident))
    trims = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: trims.append(1) or True)
    guard = memory.HeapGuard(1000)
    guard(), guard(), guard()  # grown 500, 1001, -100 bytes
    assert len(trims) == 1 and guard.trims == 1


def test_a_kept_heap_serves_the_next_forward_pass_from_pages_already_faulted_in():
    """After ``keep_freed_heap`` (what the torch runner does on a CPU) a forward pass reuses the
    pages the last one freed: no page faults (glibc's defaults fault in thousands per pass)."""
    import resource
    import sys

    import torch

    from fcnkit.inference.memory import keep_freed_heap
    from fcnkit.models import create_model

    if not sys.platform.startswith("linux") or not keep_freed_heap():
        pytest.skip("glibc's mallopt is not available here")
    model = create_model("fcn8s", num_classes=3, encoder="mobilenet_v3_large", width=0.5).eval()
    x = torch.randn(1, 3, 256, 320)
    faults = []
    with torch.inference_mode():
        model(x)  # the heap grows once
        for _ in range(3):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            model(x)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert min(faults) < 100, faults  # measured without it: 1568-2656 per pass
