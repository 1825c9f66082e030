"""`make grids`: real face photos (one face each, framed like AffectNet: a YOLO folder such as
data/fitw/yolo/train) tiled small into larger images, written in the AffectNet CSV format so that the AffectNet
converter turns them into a YOLO set (as `make scenes` does with FER2013 faces).

Why: the real photos in the detector's mix hold few faces under 64 px (Roboflow's mosaics start near 40 px), and
the small faces it does see are grey 48 px FER2013 crops pasted into synthetic scenes. Grids of real face photos
give real faces, with their labels, at 20-100 px in a 320-416 px image: the sizes of faces in group photos and
in the photo mosaics that Roboflow's export holds. A val split tiled from the val photos (identity-disjoint from
the train split's) measures how often a detector finds such faces, which roboflow valid cannot (one face under 64 px).

Each image is a background (converters.scenes.background) cut into g x g cells (g drawn from --grid); a cell holds a
face photo scaled to 0.6-1 of it at a random offset, or stays empty. The CSV box is the photo's own face box (the
YOLO label beside it) carried through the scaling; landmarks are empty and valence/arousal -2 (not applicable).
"""
from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

import cv2
import numpy as np

from .affectnet import HEADER, IMAGES_DIRNAME
from .errors import EmoDetError, run_cli
from .io import atomic_write_bytes, atomic_write_text, images_in
from .parallel import parallel_map
from .progress import tracked
from .scenes import SPLIT_FILES, background
from .settings import DATA_DIR
from .yolo_format import read_yolo_rows

EMPTY_CELL = 0.15  # share of cells left as background, so that a face's neighbours are not always faces
SIDES = (320, 416)  # an image's sides are drawn from this range, as the detector's training size and a little over


def labelled_photos(folder: Path) -> list[tuple[Path, int, tuple[float, float, float, float]]]:
    """(image, class, normalised cx, cy, w, h) of every photo in a YOLO folder with exactly one face; photos with
    none or several are skipped (a grid cell shows one face)."""
    out = []
    for image in images_in(folder):
        rows = read_yolo_rows(image.with_suffix(".txt"))
        if len(rows) == 1:
            out.append((image, int(rows[0, 0]), tuple(float(v) for v in rows[0, 1:5])))
    return out


def compose_grid(photos: list[np.ndarray], boxes: list[tuple[float, float, float, float]], grid: int,
                 rng: np.random.Generator, size_range=SIDES) -> tuple[np.ndarray, list[tuple[int, int, int, int]
                                                                                          | None]]:
    """One grey image of `grid` cells along its short side and the (x, y, w, h) box of each photo in pixels, None
    for photos that found no cell (the caller writes only placed faces). `boxes`: each photo's face as normalised
    (cx, cy, w, h)."""
    w, h = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
    img = background(h, w, rng, photos[:12])
    cell = min(w, h) // grid
    cells = [(cx * cell, cy * cell) for cy in range(h // cell) for cx in range(w // cell)
             if rng.random() >= EMPTY_CELL]
    placed: list[tuple[int, int, int, int] | None] = []
    for i, (photo, (bx, by, bw, bh)) in enumerate(zip(photos, boxes)):
        if i >= len(cells):
            placed.append(None)
            continue
        ph, pw = photo.shape[:2]
        scale = cell * rng.uniform(0.6, 1.0) / max(ph, pw)
        sw, sh = max(1, round(pw * scale)), max(1, round(ph * scale))
        x0 = cells[i][0] + int(rng.integers(0, cell - sw + 1))
        y0 = cells[i][1] + int(rng.integers(0, cell - sh + 1))
        img[y0:y0 + sh, x0:x0 + sw] = cv2.resize(photo, (sw, sh), interpolation=cv2.INTER_AREA)
        fw, fh = bw * sw, bh * sh
        placed.append((round(x0 + bx * sw - fw / 2), round(y0 + by * sh - fh / 2), round(fw), round(fh)))
    return np.clip(img, 0, 255).astype(np.uint8), placed


def _grid_job(args) -> tuple[bytes, list]:
    seed, i, paths, boxes, grid = args
    rng = np.random.default_rng([seed, i])
    photos = []
    for p in paths:
        photo = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if photo is None:
            raise EmoDetError(f"{p}: not a readable image")
        photos.append(photo.astype(np.float32))
    img, placed = compose_grid(photos, boxes, grid, rng)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return jpeg.tobytes(), placed


def grid_jobs(photos: list, n_images: int, grids: tuple[int, int], seed: int = 0) -> tuple[list, list]:
    """(jobs, classes): one job per image (its seed, index, photos, their boxes and its grid) and the class of
    each job's photos. Each cell's class is drawn in proportion to the square root of its photo count, then the
    class's next photo in a seeded order: face-photo sets are mostly neutral and happy (faces-in-the-wild 91 %),
    and a detector fine-tuned on thousands of such small faces would learn that prior instead of the faces."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list] = {}
    for photo in photos:
        by_class.setdefault(photo[1], []).append(photo)
    labels = sorted(by_class)
    orders = {c: [by_class[c][j] for j in rng.permutation(len(by_class[c]))] for c in labels}
    weights = np.sqrt([len(by_class[c]) for c in labels])
    taken = dict.fromkeys(labels, 0)
    jobs, classes = [], []
    for i in range(n_images):
        grid = int(rng.integers(grids[0], grids[1] + 1))
        k = grid * (grid * SIDES[1] // SIDES[0] + 1)  # at least as many photos as cells an image of this grid can have
        picked = []
        for c in rng.choice(labels, size=k, p=weights / weights.sum()):
            picked.append(orders[c][taken[c] % len(orders[c])])
            taken[c] += 1
        jobs.append((seed, i, [p for p, _, _ in picked], [b for _, _, b in picked], grid))
        classes.append([c for _, c, _ in picked])
    return jobs, classes


def compose_grids(source: Path, out: Path, n_images: int, grids: tuple[int, int], seed: int = 0,
                  workers: int = 2, progress: bool = True, split: str = "train") -> dict:
    """Write `n_images` grids of `source`'s photos as split `split` (train, val or test: its CSV and image folder)
    of an AffectNet-format root `out`."""
    photos = labelled_photos(source)
    if not photos:
        raise EmoDetError(f"{source}: no images with exactly one YOLO face label (make convert them first)")
    jobs, classes = grid_jobs(photos, n_images, grids, seed)
    rows = [list(HEADER)]
    for i, (jpeg, placed) in enumerate(tracked(parallel_map(_grid_job, jobs, workers), total=len(jobs),
                                               desc="grids", unit="img", disable=not progress)):
        rel = f"{split}/{i:06d}.jpg"
        atomic_write_bytes(out / IMAGES_DIRNAME / rel, jpeg)
        rows += [[rel, *map(str, box), "", str(c), "-2", "-2"] for box, c in zip(placed, classes[i]) if box]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(out / SPLIT_FILES[split], buf.getvalue())
    return dict(images=n_images, faces=len(rows) - 1, photos=len(photos))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.grids", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, default=DATA_DIR / "fitw" / "yolo" / "train",
                   help="YOLO folder of face photos, one face each (default: faces-in-the-wild's train split)")
    p.add_argument("--out", type=Path, default=DATA_DIR / "grids", help="AffectNet-format output root")
    p.add_argument("--images", type=int, default=1000, help="grid images to write")
    p.add_argument("--grid", type=int, nargs=2, default=(3, 9), metavar=("MIN", "MAX"),
                   help="cells along the short side, drawn per image (3: faces ~80 px, 9: ~25 px)")
    p.add_argument("--split", choices=list(SPLIT_FILES), default="train",
                   help="the split written (its CSV and image folder), so that one root holds a train split of "
                        "the train photos and a val split of the val photos")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.grid[0] <= args.grid[1]:
        raise EmoDetError(f"--grid {args.grid[0]} {args.grid[1]}: MIN must be 1 to MAX")
    t0 = time.perf_counter()
    r = compose_grids(args.source, args.out, args.images, tuple(args.grid), args.seed, args.workers,
                      split=args.split)
    print(f"grids {args.split}: {r['images']} images with {r['faces']} faces from {r['photos']} photos of "
          f"{args.source} -> {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
