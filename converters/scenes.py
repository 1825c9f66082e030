"""`make scenes`: real FER2013 faces composed into larger scenes, written in the AffectNet CSV format so that the
AffectNet converter turns them into YOLO and crop sets. Training faces go only into train scenes, PublicTest
into val, PrivateTest into test.

Each scene (320-640 px) has a background of noise, gradients, shapes or a blurred collage of other faces, and 1-6
faces of 32-160 px pasted with a feathered elliptical mask and light photometric jitter, so that the square border
of a 48 px FER crop is no shortcut. The CSV box is the pasted square's extent; landmarks are empty and
valence/arousal -2 (not applicable).
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
from .io import atomic_write_bytes, atomic_write_text
from .parallel import parallel_map
from .settings import DATA_DIR, fer2013_dir
from .progress import tracked

SPLIT_FILES = {"train": "training.csv", "val": "validation.csv", "test": "test.csv"}


def feather_mask(size: int) -> np.ndarray:
    """Elliptical alpha mask (1 inside, smooth fall-off to 0 at the square's edge)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot((xx + 0.5 - size / 2) / (size / 2), (yy + 0.5 - size / 2) / (size / 2))
    return np.clip((1.0 - r) / 0.25, 0, 1)


def background(h: int, w: int, rng: np.random.Generator, texture_faces: list[np.ndarray]) -> np.ndarray:
    kind = rng.integers(0, 4)
    if kind == 0:  # noise
        img = rng.normal(rng.uniform(60, 190), rng.uniform(10, 50), (h, w)).astype(np.float32)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 3))
    elif kind == 1:  # gradient
        a, b = rng.uniform(0, 255, 2)
        t = np.linspace(0, 1, w if rng.random() < 0.5 else h, dtype=np.float32)
        ramp = a + (b - a) * t
        img = np.broadcast_to(ramp[None] if len(t) == w else ramp[:, None], (h, w)).astype(np.float32).copy()
    elif kind == 2:  # shapes
        img = np.full((h, w), rng.uniform(0, 255), np.float32)
        for _ in range(rng.integers(3, 12)):
            c = float(rng.uniform(0, 255))
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            if rng.random() < 0.5:
                cv2.circle(img, (x, y), int(rng.integers(5, max(6, w // 5))), c, -1)
            else:
                cv2.rectangle(img, (x, y), (x + int(rng.integers(5, w // 3)), y + int(rng.integers(5, h // 3))), c, -1)
    else:  # blurred collage of other faces of the same split
        tile = int(rng.integers(40, 120))
        img = np.zeros((h, w), np.float32)
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                f = cv2.resize(texture_faces[int(rng.integers(0, len(texture_faces)))], (tile, tile))
                img[y:y + tile, x:x + tile] = f[:min(tile, h - y), :min(tile, w - x)]
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(3, 8))
    return img


def compose_scene(faces: list[np.ndarray], texture: list[np.ndarray], rng: np.random.Generator,
                  size_range=(320, 640), face_range=(32, 160)) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """One grey scene and the (x, y, w, h) box of each face actually placed (faces that find no free spot are
    skipped: the caller writes only placed faces)."""
    w, h = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, 2))
    img = background(h, w, rng, texture)
    boxes: list[tuple[int, int, int, int]] = []
    for face in faces:
        for _ in range(30):
            s = int(rng.integers(face_range[0], min(face_range[1], w - 2, h - 2) + 1))
            x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
            if all(x + s <= bx or bx + bw <= x or y + s <= by or by + bh <= y
                   for bx, by, bw, bh in filter(None, boxes)):
                break
        else:
            boxes.append(None)
            continue
        patch = cv2.resize(face, (s, s), interpolation=cv2.INTER_AREA if s < face.shape[0] else cv2.INTER_CUBIC)
        patch = np.clip(patch.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255)
        alpha = feather_mask(s)
        region = img[y:y + s, x:x + s]
        img[y:y + s, x:x + s] = alpha * patch + (1 - alpha) * region
        boxes.append((x, y, s, s))
    img = img + rng.normal(0, rng.uniform(1, 6), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), boxes


def _scene_job(args) -> tuple[bytes, list]:
    seed, split_no, i, faces, texture = args
    rng = np.random.default_rng([seed, split_no, i])
    img, boxes = compose_scene(faces, texture, rng)
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return jpeg.tobytes(), boxes


def compose_split(records, split: str, out: Path, n_images: int, seed: int = 0, workers: int = 2,
                  progress: bool = True) -> dict:
    """Scenes of one split from that split's FER records only; writes images, `<split>.csv` (AffectNet format)
    and `sources_<split>.csv` (scene image -> FER2013 rows)."""
    if not records:
        raise EmoDetError(f"no FER2013 faces for split {split!r}")
    split_no = list(SPLIT_FILES).index(split)
    rng = np.random.default_rng([seed, split_no])
    order = rng.permutation(len(records))
    pos, jobs, chosen = 0, [], []
    for i in range(n_images):
        k = int(rng.integers(1, 7))
        idx = [order[(pos + j) % len(order)] for j in range(k)]
        pos += k
        texture = [records[int(t)].pixels for t in rng.integers(0, len(records), 12)]
        jobs.append((seed, split_no, i, [records[int(j)].pixels for j in idx], texture))
        chosen.append(idx)
    rows, sources = [list(HEADER)], ["image,fer2013_row,expression"]
    for i, (jpeg, boxes) in enumerate(tracked(parallel_map(_scene_job, jobs, workers), total=len(jobs),
                                           desc=f"scenes {split}", unit="img", disable=not progress)):
        rel = f"{split}/{i:06d}.jpg"
        atomic_write_bytes(out / IMAGES_DIRNAME / rel, jpeg)
        for j, box in zip(chosen[i], boxes):
            if box is None:
                continue
            r = records[int(j)]
            rows.append([rel, *map(str, box), "", str(r.expression), "-2", "-2"])
            sources.append(f"{rel},{r.row},{r.expression}")
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(out / SPLIT_FILES[split], buf.getvalue())
    atomic_write_text(out / f"sources_{split}.csv", "\n".join(sources) + "\n")
    return dict(images=n_images, faces=len(rows) - 1)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.scenes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fer2013", type=Path, default=None, help="fer2013.csv(.gz) (default: shared datasets)")
    p.add_argument("--out", type=Path, default=DATA_DIR / "scenes", help="AffectNet-format output root")
    p.add_argument("--train", type=int, default=3000, help="train scenes")
    p.add_argument("--val", type=int, default=500)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    return p


def main(argv=None) -> int:
    from .fer2013 import read_fer2013
    args = build_parser().parse_args(argv)
    src = args.fer2013 or fer2013_dir() / "fer2013.csv.gz"
    if not Path(src).exists():
        raise EmoDetError(f"{src}: FER2013 not found; pass --fer2013 (or set EMODET_DATASETS)")
    t0 = time.perf_counter()
    records, _ = read_fer2013(src)
    for split, n in (("train", args.train), ("val", args.val), ("test", args.test)):
        r = compose_split(records[split], split, args.out, n, args.seed, args.workers)
        print(f"{split}: {r['images']} scenes, {r['faces']} faces -> {args.out / SPLIT_FILES[split]}")
    print(f"done in {time.perf_counter() - t0:.0f} s; convert with: python -m converters.convert --affectnet "
          f"{args.out} --split training validation test --out {args.out.parent / 'scenes-converted'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
