"""Synthetic AffectNet-format sample: drawn faces with boxes, 68 landmarks and expression labels.

Real datasets are not ours to ship, so this generator is the project's embedded default data. Each face is a
68-point landmark template (iBUG 300-W order) deformed by a few facial-action-like controls per expression,
then drawn with OpenCV. Output mirrors AffectNet: `Manually_Annotated_Images/<subdir>/<hex>.jpg` plus
`training.csv` / `validation.csv` with the original header.
"""
from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .affectnet import HEADER, IMAGES_DIRNAME, format_landmarks
from .errors import run_cli
from .io import atomic_write_bytes
from .parallel import parallel_map
from .labels import CANONICAL_NAMES, TYPICAL_VALENCE_AROUSAL
from .settings import SAMPLE_AFFECTNET
from .progress import tracked


def _template() -> np.ndarray:
    """Neutral 68-point face in a unit frame: x in [-1, 1], y down, eyes near y=-0.3, chin at y=1.25."""
    s = np.linspace(0, np.pi, 17)
    jaw = np.stack([-np.cos(s), -0.2 + 1.45 * np.sin(s)], 1)
    brow_x = np.linspace(-0.8, -0.2, 5)
    brow_l = np.stack([brow_x, -0.55 - 0.08 * np.sin(np.linspace(0.3, np.pi - 0.3, 5))], 1)
    brow_r = brow_l[::-1] * [-1, 1]
    bridge = np.stack([np.zeros(4), np.linspace(-0.4, 0.15, 4)], 1)
    nose = np.array([[-0.2, 0.3], [-0.1, 0.33], [0, 0.35], [0.1, 0.33], [0.2, 0.3]])
    eye_l = np.array([[-0.6, -0.3], [-0.48, -0.37], [-0.36, -0.37], [-0.24, -0.3], [-0.36, -0.23], [-0.48, -0.23]])
    eye_r = np.array([[0.24, -0.3], [0.36, -0.37], [0.48, -0.37], [0.6, -0.3], [0.48, -0.23], [0.36, -0.23]])
    mouth = np.array([[-0.4, 0.7], [-0.25, 0.62], [-0.1, 0.59], [0, 0.6], [0.1, 0.59], [0.25, 0.62], [0.4, 0.7],
                      [0.25, 0.8], [0.1, 0.84], [0, 0.85], [-0.1, 0.84], [-0.25, 0.8]])
    inner = np.array([[-0.33, 0.7], [-0.1, 0.69], [0, 0.69], [0.1, 0.69], [0.33, 0.7], [0.1, 0.71], [0, 0.71],
                      [-0.1, 0.71]])
    return np.concatenate([jaw, brow_l, brow_r, bridge, nose, eye_l, eye_r, mouth, inner]).astype(np.float64)


TEMPLATE = _template()
FACE_ELLIPSE = ((0.0, 0.05), (1.05, 1.3))  # centre and half-axes of the drawn head, unit frame

# Action-like controls per canonical class: brow_in/brow_out (negative = raised), squeeze (brows drawn together),
# eye (eyelid opening factor), corner (mouth corners, negative = up), width, open (lip separation), upper
# (upper-lip raise), wrinkle (nose), smirk (one corner up: contempt).
EXPRESSION_CONTROLS = {
    0: dict(),
    1: dict(corner=-0.16, width=1.22, open=0.10, eye=0.7, teeth=1),
    2: dict(brow_in=-0.13, brow_out=0.08, corner=0.14, width=0.9, eye=0.8),
    3: dict(brow_in=-0.22, brow_out=-0.2, eye=1.7, open=0.38, width=0.72),
    4: dict(brow_in=-0.16, brow_out=-0.04, squeeze=0.08, eye=1.55, open=0.12, width=1.28, corner=0.04, teeth=1),
    5: dict(brow_in=0.07, brow_out=0.03, squeeze=0.05, eye=0.55, upper=0.1, wrinkle=1, corner=0.06, open=0.04),
    6: dict(brow_in=0.16, brow_out=-0.03, squeeze=0.11, eye=0.7, width=0.82, corner=0.03),
    7: dict(smirk=-0.14, eye=0.9),
}


def expression_landmarks(code: int, intensity: float, rng: np.random.Generator) -> np.ndarray:
    """Template deformed for one expression at the given intensity, plus small per-face shape jitter."""
    c = {k: v * intensity if k not in ("eye", "width") else 1 + (v - 1) * intensity
         for k, v in EXPRESSION_CONTROLS[code].items()}
    p = TEMPLATE.copy()
    p[:17] *= [rng.uniform(0.92, 1.05), rng.uniform(0.95, 1.05)]  # face shape
    for brow, sign in ((slice(17, 22), 1), (slice(22, 27), -1)):
        b = p[brow]
        inner_weight = np.linspace(0, 1, 5)[::sign]  # 1 at the inner end of each brow
        b[:, 1] += c.get("brow_in", 0) * inner_weight + c.get("brow_out", 0) * (1 - inner_weight)
        b[:, 0] += sign * c.get("squeeze", 0) * inner_weight
    for eye in (slice(36, 42), slice(42, 48)):
        e = p[eye]
        centre_y = e[[0, 3], 1].mean()
        e[:, 1] = centre_y + (e[:, 1] - centre_y) * c.get("eye", 1.0)
    mouth = slice(48, 68)
    m = p[mouth]
    m[:, 0] *= c.get("width", 1.0)
    opening = c.get("open", 0.0)
    lower = np.r_[[7, 8, 9, 10, 11], [13, 14, 15]]  # lower lip (outer 55-59, inner 65-67)
    m[lower, 1] += opening
    m[[0, 6, 12, 16], 1] += opening / 2
    m[1:6, 1] -= c.get("upper", 0.0)
    corners = [0, 6, 12, 16]
    m[corners, 1] += c.get("corner", 0.0)
    if "smirk" in c:
        m[[6, 16], 1] += c["smirk"]
        m[[6, 16], 0] += 0.06 * intensity
    if c.get("wrinkle"):
        p[31:36, 1] -= 0.05 * intensity
    p += rng.normal(0, 0.008, p.shape)
    return p


@dataclass(frozen=True)
class DrawnFace:
    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    expression: int


def _similarity(scale: float, angle_deg: float, centre: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([r, np.array(centre, dtype=np.float64)[:, None]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def _head_outline() -> np.ndarray:
    (cx, cy), (ax, ay) = FACE_ELLIPSE
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], 1)


HEAD = _head_outline()


def _poly(pts: np.ndarray) -> np.ndarray:
    return np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)  # 4 fractional bits for anti-aliased drawing


def draw_face(img: np.ndarray, m: np.ndarray, lm_unit: np.ndarray, code: int, skin: np.ndarray,
              rng: np.random.Generator) -> None:
    """Draw one face (unit-frame landmarks mapped by the similarity `m`) onto `img` in place."""
    scale = float(np.hypot(*m[:, 0]))
    aa, sh = cv2.LINE_AA, 4
    dark = tuple(float(v) for v in skin * rng.uniform(0.2, 0.35))
    thick = lambda f: max(1, int(round(f * scale)))  # noqa: E731
    cv2.fillPoly(img, [_poly(_apply(m, HEAD))], tuple(float(v) for v in skin), aa, sh)
    hair = skin * rng.uniform(0.15, 0.6)
    top = HEAD[(HEAD[:, 1] < -0.75)]
    if rng.random() < 0.7:
        cv2.fillPoly(img, [_poly(_apply(m, np.vstack([top, [[0.9, -0.75], [-0.9, -0.75]]])))],
                     tuple(float(v) for v in hair), aa, sh)
    p = _apply(m, lm_unit)
    for brow in (slice(17, 22), slice(22, 27)):
        cv2.polylines(img, [_poly(p[brow])], False, dark, thick(0.07), aa, sh)
    for eye in (slice(36, 42), slice(42, 48)):
        cv2.fillPoly(img, [_poly(p[eye])], (235, 235, 235), aa, sh)
        centre = p[eye].mean(0)
        half_open = np.linalg.norm(p[eye][1] - p[eye][5]) / 2
        radius = max(1.0, min(0.065 * scale, half_open * 1.05))
        cv2.circle(img, tuple(np.round(centre * 16).astype(int)), int(radius * 16), (40, 30, 25), -1, aa, sh)
        cv2.polylines(img, [_poly(p[eye])], True, dark, thick(0.025), aa, sh)
    cv2.polylines(img, [_poly(p[27:31])], False, dark, thick(0.025), aa, sh)
    cv2.polylines(img, [_poly(p[31:36])], False, dark, thick(0.03), aa, sh)
    if code == 5:  # nose wrinkle lines across the bridge
        for k in (28, 29):
            line = _apply(m, np.array([[-0.12, 0], [0.12, 0]]) + lm_unit[k])
            cv2.polylines(img, [_poly(line)], False, dark, thick(0.02), aa, sh)
    if code in (1, 7):  # cheek folds of a smile (one-sided for contempt)
        for side, corner in ((31, 48), (35, 54)):
            if code == 7 and corner == 48:
                continue
            fold = np.vstack([lm_unit[side] + [0.12 * np.sign(lm_unit[side][0]), 0.05], lm_unit[corner]
                              + [0.06 * np.sign(lm_unit[corner][0]), -0.04]])
            cv2.polylines(img, [_poly(_apply(m, fold))], False, dark, thick(0.02), aa, sh)
    lips = tuple(float(v) for v in np.clip(skin * [0.55, 0.55, 1.05], 0, 255))
    cv2.fillPoly(img, [_poly(p[48:60])], lips, aa, sh)
    inner = p[60:68]
    if np.linalg.norm(inner[2] - inner[6]) > 0.03 * scale:
        cv2.fillPoly(img, [_poly(inner)], (30, 20, 40), aa, sh)
        if EXPRESSION_CONTROLS[code].get("teeth"):
            teeth = np.vstack([inner[:5], (inner[:5] * 0.6 + inner[[0, 7, 6, 5, 4]] * 0.4)[::-1]])
            cv2.fillPoly(img, [_poly(teeth)], (230, 230, 230), aa, sh)
    else:
        cv2.polylines(img, [_poly(inner[:5])], False, dark, thick(0.02), aa, sh)


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
    ramp = c0 + (c1 - c0) * t[:, None]
    img = np.broadcast_to(ramp[None] if len(t) == w else ramp[:, None], (h, w, 3)).astype(np.float32).copy()
    for _ in range(rng.integers(2, 9)):
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(5, max(6, w // 4))), colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, w // 3)), y + int(rng.integers(5, h // 3))),
                          colour, -1)
    return img


SKIN_TONES = np.array([[185, 205, 240], [150, 180, 225], [120, 160, 210], [90, 125, 175], [60, 85, 130],
                       [45, 65, 100]], dtype=np.float64)  # BGR


AFFECTNET_SIDE = (425, 350, 128, 2000)  # mean, std, clipped range (px) of an AffectNet photo's long side


def affectnet_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) drawn like AffectNet's photos: long side ~ 425 +- 350 px within 128-2000, aspect 3:4-4:3."""
    mean, std, lo, hi = AFFECTNET_SIDE
    long_side = int(np.clip(rng.normal(mean, std), lo, hi))
    short_side = int(long_side * rng.uniform(0.75, 1.0))
    return (long_side, short_side) if rng.random() < 0.5 else (short_side, long_side)


def render_image(seed: tuple[int, ...], n_classes: int = 7, size: tuple[int, int] | str | None = None,
                 max_faces: int = 3) -> tuple[bytes, list[DrawnFace]]:
    """One JPEG (bytes) with 1..max_faces non-overlapping drawn faces; deterministic for `seed`. `size`: (w, h),
    None (each side 160-480 px) or "affectnet" (AffectNet's spread of sizes, one face per photo as in its CSVs)."""
    rng = np.random.default_rng(list(seed))
    if size is None:
        w, h = (int(v) for v in rng.integers(160, 481, 2))
    elif size == "affectnet":
        (w, h), max_faces = affectnet_size(rng), 1
    else:
        w, h = size
    img = _background(h, w, rng)
    faces: list[DrawnFace] = []
    taken: list[tuple[int, int, int, int]] = []
    n_faces = int(rng.integers(1, max_faces + 1))
    for _ in range(40 * n_faces):
        if len(faces) == n_faces:
            break
        short = min(w, h)
        face_w = rng.uniform(max(44, 0.2 * short), max(48, 0.6 * short / np.sqrt(n_faces)))
        scale = face_w / (2 * FACE_ELLIPSE[1][0])
        angle = rng.uniform(-15, 15)
        outline0 = _apply(_similarity(scale, angle, (0, 0)), HEAD)
        lo, hi = outline0.min(0), outline0.max(0)
        if hi[0] - lo[0] >= w - 2 or hi[1] - lo[1] >= h - 2:
            continue
        cx = rng.uniform(-lo[0] + 1, w - hi[0] - 1)
        cy = rng.uniform(-lo[1] + 1, h - hi[1] - 1)
        m = _similarity(scale, angle, (cx, cy))
        outline = _apply(m, HEAD)
        x1, y1 = np.floor(outline.min(0)).astype(int)
        x2, y2 = np.ceil(outline.max(0)).astype(int)
        box = (int(x1), int(y1), int(x2 - x1), int(y2 - y1))
        if any(x1 < bx + bw + 4 and bx < x2 + 4 and y1 < by + bh + 4 and by < y2 + 4 for bx, by, bw, bh in taken):
            continue
        code = int(rng.integers(0, n_classes))
        lm_unit = expression_landmarks(code, rng.uniform(0.75, 1.2), rng)
        skin = SKIN_TONES[rng.integers(0, len(SKIN_TONES))] * rng.uniform(0.9, 1.1, 3)
        draw_face(img, m, lm_unit, code, np.clip(skin, 0, 255), rng)
        taken.append(box)
        faces.append(DrawnFace(box, _apply(m, lm_unit).astype(np.float32), code))
    img += rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.5))
    ok, jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes(), faces


def _csv_rows(rel: str, faces: list[DrawnFace], rng: np.random.Generator) -> list[list[str]]:
    rows = []
    for f in faces:
        v, a = TYPICAL_VALENCE_AROUSAL[f.expression]
        v, a = np.clip([v + rng.normal(0, 0.12), a + rng.normal(0, 0.12)], -1, 1)
        rows.append([rel, *map(str, f.box), format_landmarks(f.landmarks), str(f.expression), f"{v:.6f}", f"{a:.6f}"])
    return rows


def _job(args: tuple) -> tuple[str, list[list[str]]]:
    out_dir, split_no, i, seed, n_classes, size = args
    rng = np.random.default_rng([seed, split_no, i, 1])
    name = rng.bytes(28).hex() + ".jpg"
    rel = f"{i // 100 + 1 + 1000 * split_no}/{name}"
    jpeg, faces = render_image((seed, split_no, i), n_classes, size)
    atomic_write_bytes(Path(out_dir) / IMAGES_DIRNAME / rel, jpeg)
    return rel, _csv_rows(rel, faces, rng)


SPLIT_FILES = ("training.csv", "validation.csv")


def generate_sample(out_dir: Path, n_train: int = 240, n_val: int = 60, seed: int = 0, n_classes: int = 7,
                    size: tuple[int, int] | str | None = None, workers: int = 2, progress: bool = True) -> dict:
    """Write the synthetic AffectNet-format sample; returns counts per split file."""
    out_dir = Path(out_dir)
    summary = {}
    for split_no, (csv_name, n_images) in enumerate(zip(SPLIT_FILES, (n_train, n_val))):
        jobs = [(str(out_dir), split_no, i, seed, n_classes, size) for i in range(n_images)]
        results = list(tracked(parallel_map(_job, jobs, workers), total=len(jobs), disable=not progress,
                            desc=f"sample {csv_name}", unit="img"))
        rows = [r for _, rs in results for r in rs]
        buf = _csv_text([list(HEADER), *rows])
        atomic_write_bytes(out_dir / csv_name, buf.encode())
        counts = np.bincount([int(r[6]) for r in rows], minlength=n_classes)
        summary[csv_name] = dict(images=n_images, faces=len(rows),
                                 per_class={CANONICAL_NAMES[k]: int(v) for k, v in enumerate(counts)})
    return summary


def _csv_text(rows: list[list[str]]) -> str:
    import io
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.synthetic",
                                description="Write the synthetic AffectNet-format sample (drawn faces, 68 landmarks).")
    p.add_argument("--out", type=Path, default=SAMPLE_AFFECTNET, help="output folder (default: %(default)s)")
    p.add_argument("--train-images", type=int, default=240, help="images in training.csv (1-3 faces each)")
    p.add_argument("--val-images", type=int, default=60, help="images in validation.csv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", type=int, choices=(7, 8), default=7, help="8 also draws contempt")
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--size", type=int, default=None, help="fixed square image size (default random 160-480)")
    sizes.add_argument("--affectnet-sizes", action="store_true",
                       help="AffectNet's spread of photo sizes (long side 425 +- 350 px, 128-2000) and one face per "
                            "photo: a stand-in for the real set at its scale")
    p.add_argument("--workers", type=int, default=2)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    size = "affectnet" if args.affectnet_sizes else (args.size, args.size) if args.size else None
    summary = generate_sample(args.out, args.train_images, args.val_images, args.seed, args.classes, size,
                              args.workers)
    dt = time.perf_counter() - t0
    for name, s in summary.items():
        per = ", ".join(f"{k} {v}" for k, v in s["per_class"].items())
        print(f"{args.out / name}: {s['images']} images, {s['faces']} faces ({per})")
    print(f"done in {dt:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
