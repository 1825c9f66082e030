from __future__ import annotations

import hashlib

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression

from converters import affectnet as an
from converters.synthetic import generate_sample, render_image


def _digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    generate_sample(a, 6, 2, seed=3, workers=1, progress=False)
    generate_sample(b, 6, 2, seed=3, workers=2, progress=False)
    generate_sample(c, 6, 2, seed=4, workers=1, progress=False)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_csv_is_affectnet_format_and_landmarks_lie_in_their_box(sample_dir):
    header = (sample_dir / "training.csv").read_text().split("\n", 1)[0]
    assert header == ",".join(an.HEADER)
    result = an.read_affectnet(sample_dir / "training.csv")
    assert not result.rejects and not result.fixes
    assert len(result.records) >= 48
    for r in result.records:
        x, y, w, h = r.box
        margin = 0.05 * max(w, h)
        assert r.landmarks.shape == (68, 2)
        assert (r.landmarks[:, 0] >= x - margin).all() and (r.landmarks[:, 0] <= x + w + margin).all()
        assert (r.landmarks[:, 1] >= y - margin).all() and (r.landmarks[:, 1] <= y + h + margin).all()
        assert -1 <= r.valence <= 1 and -1 <= r.arousal <= 1
        assert 160 <= min(r.image_size) and max(r.image_size) <= 480


def test_faces_do_not_overlap_and_drawn_pixels_differ_inside_the_box():
    jpeg, faces = render_image((1, 2, 3), max_faces=3)
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    boxes = [f.box for f in faces]
    for i, (x, y, w, h) in enumerate(boxes):
        assert 0 <= x and 0 <= y and x + w <= img.shape[1] and y + h <= img.shape[0]
        for (x2, y2, w2, h2) in boxes[i + 1:]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y


def _crops(folder, csv_name):
    xs, ys = [], []
    for r in an.read_affectnet(folder / csv_name).records:
        img = cv2.imread(str(r.image), cv2.IMREAD_GRAYSCALE)
        x, y, w, h = (int(v) for v in r.box)
        xs.append(cv2.resize(img[y:y + h, x:x + w], (32, 32), interpolation=cv2.INTER_AREA).reshape(-1) / 255.0)
        ys.append(r.expression)
    return np.array(xs), np.array(ys)


def test_expressions_are_separable_by_a_tiny_model(tmp_path):
    # A linear model on 32x32 grey pixels, trained in about a second, must be far above chance (1/7).
    generate_sample(tmp_path, 200, 60, seed=11, workers=2, progress=False)
    x, y = _crops(tmp_path, "training.csv")
    xv, yv = _crops(tmp_path, "validation.csv")
    assert set(y) == set(range(7))
    acc = LogisticRegression(max_iter=300, C=0.05).fit(x, y).score(xv, yv)
    assert acc > 0.5, acc
