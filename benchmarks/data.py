"""Data loading throughput on CamVid 360x480: decode, decode + train augmentation, and
DataLoader images/s with 0..N worker processes, measured side by side in one run.

"Per worker" rows run in this process with one torch thread, which is what one
DataLoader worker gets; the loader rows show what N workers deliver together, to
compare with the training step rate (REFERENCE.md: ~1.9 s per 360x480 step on 2 cores).

    .venv/bin/python benchmarks/data.py                               # real CamVid, 200 images
    .venv/bin/python benchmarks/data.py --images 4 --workers 0 --repeats 1   # smoke
    .venv/bin/python benchmarks/data.py --synthetic                   # no dataset needed
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from fcnkit.cli.models import parse_size
from fcnkit.data import CamVid, eval_transforms, pad_collate, train_transforms
from fcnkit.preprocessing import IMAGENET

REAL_CAMVID = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "camvid"


def write_synthetic_camvid(root: Path, n: int, size: tuple[int, int]) -> None:
    """Noise images (hard to compress, like photos) in the SegNet layout."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "train" / f"{i:05d}.png")
        Image.fromarray(rng.integers(0, 12, size, dtype=np.uint8)).save(root / "trainannot" / f"{i:05d}.png")


def time_per_image(fn, n: int, repeats: int) -> float:
    """Median over repeats of seconds per image for fn(i), i in range(n)."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - start) / n)
    return statistics.median(runs)


def loader_rate(dataset, workers: int, batch_size: int, repeats: int) -> float:
    """Images/s a DataLoader delivers (workers started before the clock, first batch excluded)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=pad_collate, persistent_workers=workers > 0)
    rates = []
    for _ in range(repeats):
        it = iter(loader)
        first = next(it)
        start, seen = time.perf_counter(), 0
        for images, _ in it:
            seen += images.shape[0]
        elapsed = time.perf_counter() - start
        rates.append(seen / elapsed if seen else len(first[0]) / max(elapsed, 1e-9))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REAL_CAMVID, help="CamVid root (SegNet layout)")
    ap.add_argument("--synthetic", action="store_true", help="use generated 360x480 PNGs instead")
    ap.add_argument("--images", type=int, default=200, help="images per measurement")
    ap.add_argument("--crop", type=parse_size, default=(360, 480), help="train crop HxW (default 360x480)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    tmp = None
    root = args.data
    if args.synthetic or not root.is_dir():
        if not args.synthetic:
            print(f"{root} not found: using synthetic 360x480 PNGs")
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name) / "camvid"
        write_synthetic_camvid(root, args.images, (360, 480))

    torch.set_num_threads(1)  # what one DataLoader worker has
    raw = CamVid(root, "train")
    n = min(args.images, len(raw))
    augment = train_transforms(IMAGENET, crop_size=args.crop)
    evaluate = eval_transforms(IMAGENET)
    print(f"CamVid {root} ({n} images {tuple(raw.load_raw(0)[0].shape[-2:])}), crop {args.crop}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread per worker")

    per_image = {
        "decode (PNG image + label)": lambda i: raw.load_raw(i),
        "decode + eval transforms": lambda i: evaluate(*raw.load_raw(i)),
        "decode + train augmentation": lambda i: augment(*raw.load_raw(i)),
    }
    sample = raw.load_raw(0)
    per_image["train augmentation only"] = lambda i: augment(*sample)
    rows = {name: time_per_image(fn, n, args.repeats) for name, fn in per_image.items()}
    base = rows["decode (PNG image + label)"]
    print(f"\n{'per worker (1 thread)':<34} {'ms/img':>8} {'img/s':>8} {'vs decode':>10}")
    for name, sec in rows.items():
        print(f"{name:<34} {sec * 1e3:8.1f} {1 / sec:8.1f} {sec / base:9.2f}x")

    train_set = Subset(CamVid(root, "train", augment), range(n))
    print(f"\n{'DataLoader (decode + train aug)':<34} {'img/s':>8}")
    for workers in args.workers:
        rate = loader_rate(train_set, workers, args.batch_size, args.repeats)
        print(f"{f'{workers} worker(s), batch {args.batch_size}':<34} {rate:8.1f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
