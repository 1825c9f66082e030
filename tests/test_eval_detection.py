from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from eval import detection
from eval.ap import average_precision
from eval.darknet_map import parse_darknet_map
from eval.detection_metrics import STYLES, Ranked, detection_metrics, match_image, max_f1_confidence

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ["a", "b", "c"]


@pytest.mark.parametrize("interp, expected", [("voc07", 0.545), ("auc", 0.500), ("coco101", 0.505),
                                              ("ultralytics", 0.495)])
def test_worked_case_two_gt_one_hit(interp, expected):
    # shared/ENGINES.md: 2 ground-truth boxes, 1 detection that hits
    assert average_precision(np.array([1]), 2, interp) == pytest.approx(expected, abs=5e-4)


def _gt(*rows):
    return np.array(rows, float).reshape(-1, 5)


def _pred(*rows):
    return np.array(rows, float).reshape(-1, 6)


def test_hand_built_multiclass_case():
    gts = {"img1": _gt([0, 0, 0, 10, 10], [1, 20, 20, 30, 30]), "img2": _gt([0, 0, 0, 10, 10])}
    preds = {"img1": _pred([0, 0.9, 0, 0, 10, 10],  # hit
                           [0, 0.8, 0, 0, 10, 10],  # duplicate of the same box: false positive
                           [1, 0.7, 50, 50, 60, 60],  # miss
                           [2, 0.6, 20, 20, 30, 30]),  # class c has no ground truth at all
             "img2": _pred([0, 0.5, 1, 0, 11, 10])}  # IoU 9/11: hit
    # class a: ranked hits 1, 0, 1 over 2 GT. AUC = 0.5*1 + 0.5*(2/3); coco101 samples 51 recall steps at
    # precision 1 and 50 at 2/3
    for style, a_ap in (("darknet", 0.5 + 0.5 * 2 / 3), ("coco", 51 / 101 + 50 / 101 * 2 / 3)):
        m = detection_metrics(gts, preds, NAMES, STYLES[style], conf=0.25)
        assert m["per_class"]["a"]["ap50"] == pytest.approx(a_ap)
        assert m["per_class"]["b"]["ap50"] == 0 and m["per_class"]["c"]["n_gt"] == 0
        assert (m["tp"], m["fp"], m["fn"]) == (2, 3, 1)
    dark = detection_metrics(gts, preds, NAMES, STYLES["darknet"])
    coco = detection_metrics(gts, preds, NAMES, STYLES["coco"])
    # Darknet averages over every class in the names file, COCO over classes with ground truth
    assert dark["map50"] == pytest.approx((0.5 + 1 / 3) / 3)
    assert coco["map50"] == pytest.approx((51 / 101 + 50 / 101 * 2 / 3) / 2, abs=1e-9)
    assert dark["precision"] == pytest.approx(2 / 5) and dark["recall"] == pytest.approx(2 / 3)
    assert dark["agnostic_recall50"] == pytest.approx(1.0)  # every box is found by some class


def test_zero_predictions_give_zero_not_nan():
    m = detection_metrics({"x": _gt([0, 0, 0, 1, 1])}, {}, NAMES, STYLES["ultralytics"])
    assert m["map50"] == 0 and m["recall"] == 0 and m["fn"] == 1 and np.isfinite(m["f1"])


def test_strict_and_voc_matching_differ_from_coco_where_they_should():
    # IoU exactly 0.5: counted by IoU >= 0.5, not by Darknet's IoU > 0.5
    gt = _gt([0, 0, 0, 10, 10])
    three_quarters = _pred([0, 0.9, 0, 0, 10, 7.5])  # IoU 0.75
    assert match_image(gt, three_quarters, STYLES["darknet"])[0][0, 0]
    exact = _pred([0, 0.9, 0, 0, 10, 5])  # IoU exactly 0.5
    assert not match_image(gt, exact, STYLES["darknet"])[0][0, 0]
    assert match_image(gt, exact, STYLES["coco"])[0][0, 0]
    # two GT boxes; the first detection takes the better one, the second detection's best box is taken:
    # VOC/Darknet counts it false, COCO lets it take the other box
    gts = _gt([0, 0, 0, 10, 10], [0, 4, 0, 14, 10])
    preds = _pred([0, 0.9, 0, 0, 10, 10], [0, 0.8, 1, 0, 11, 10])
    assert list(match_image(gts, preds, STYLES["darknet"])[0][:, 0]) == [True, False]
    assert list(match_image(gts, preds, STYLES["coco"])[0][:, 0]) == [True, True]


def _random_case(rng, n_images=12, n_classes=3):
    gts, preds = {}, {}
    for i in range(n_images):
        n = rng.integers(0, 6)
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(20, 120, (n, 2))
        cls = rng.integers(0, n_classes, n)
        gts[f"{i:04d}"] = np.c_[cls, xy, xy + wh]
        rows = []
        for c, (x1, y1), (w, h) in zip(cls, xy, wh):
            if rng.random() < 0.8:
                j = rng.normal(0, 0.15, 4) * [w, h, w, h]
                rows.append([c if rng.random() < 0.85 else rng.integers(0, n_classes), rng.random(),
                             x1 + j[0], y1 + j[1], x1 + w + j[2], y1 + h + j[3]])
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 500, 2)
            rows.append([rng.integers(0, n_classes), rng.random() * 0.7, x, y, x + rng.uniform(20, 100),
                         y + rng.uniform(20, 100)])
        preds[f"{i:04d}"] = np.array(rows, float).reshape(-1, 6)
    return gts, preds


def _pycocotools_ap(gts, preds, n_classes):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    import contextlib
    import io
    images, anns, dets = [], [], []
    for k, (image, g) in enumerate(sorted(gts.items())):
        images.append(dict(id=k, width=640, height=640))
        for c, x1, y1, x2, y2 in g:
            anns.append(dict(id=len(anns) + 1, image_id=k, category_id=int(c), bbox=[x1, y1, x2 - x1, y2 - y1],
                             area=(x2 - x1) * (y2 - y1), iscrowd=0))
        for c, s, x1, y1, x2, y2 in preds[image]:
            dets.append(dict(image_id=k, category_id=int(c), bbox=[x1, y1, x2 - x1, y2 - y1], score=float(s)))
    coco = COCO()
    coco.dataset = dict(images=images, annotations=anns, categories=[dict(id=c) for c in range(n_classes)])
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return ev.stats[1], ev.stats[0]


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_pycocotools(seed):
    gts, preds = _random_case(np.random.default_rng(seed))
    ap50, ap = _pycocotools_ap(gts, preds, 3)
    m = detection_metrics(gts, preds, NAMES, STYLES["coco"], max_det=100)
    assert m["map50"] == pytest.approx(ap50, abs=1e-3)
    assert m["map50_95"] == pytest.approx(ap, abs=1e-3)


@pytest.fixture(scope="module")
def ultralytics_metrics(tmp_path_factory):
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo_cfg")))
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics.utils import metrics
    from ultralytics.models.yolo.detect.val import DetectionValidator
    return metrics, DetectionValidator


@pytest.mark.parametrize("seed", range(4))
def test_ap_and_max_f1_point_agree_with_ultralytics(ultralytics_metrics, seed):
    metrics, _ = ultralytics_metrics
    rng = np.random.default_rng(seed)
    n = 300
    tp = rng.random((n, 10)) < np.linspace(0.7, 0.2, 10)
    conf = rng.random(n)
    pred_cls = rng.integers(0, 4, n)
    target_cls = rng.integers(0, 4, 120)
    _, _, p, r, _, ap, classes, *_ = metrics.ap_per_class(tp, conf, pred_cls, target_cls)
    order = np.argsort(-conf, kind="stable")
    n_gt = np.bincount(target_cls, minlength=4)
    for k, c in enumerate(classes):
        sel = pred_cls[order] == c
        for j in (0, 5, 9):
            mine = average_precision(tp[order][sel, j], int(n_gt[c]), "ultralytics")
            assert mine == pytest.approx(ap[k, j], abs=1e-9)
    ranked = Ranked(pred_cls[order], conf[order], tp[order], np.zeros(n), n_gt)
    _, p_mine, r_mine = max_f1_confidence(ranked, list(classes))
    assert p_mine == pytest.approx(p, abs=1e-9) and r_mine == pytest.approx(r, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_matching_agrees_with_ultralytics(ultralytics_metrics, seed):
    import torch
    _, validator = ultralytics_metrics
    gts, preds = _random_case(np.random.default_rng(100 + seed), n_images=6)
    fake = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    from eval.detection_metrics import iou_matrix
    for image in gts:
        g, p = gts[image], preds[image]
        p = p[np.argsort(-p[:, 1], kind="mergesort")]
        if not len(g) or not len(p):
            continue
        iou = torch.from_numpy(iou_matrix(g[:, 1:], p[:, 2:]))
        theirs = validator.match_predictions(fake, torch.from_numpy(p[:, 0]), torch.from_numpy(g[:, 0]), iou)
        mine, _ = match_image(g, p, STYLES["ultralytics"])
        assert np.array_equal(mine, theirs.numpy())


@pytest.mark.parametrize("layout, expect", [
    ("legacy", dict(layout="alexeyab-legacy", map50=0.6875, tp=17, fp=6, fn=1, precision=0.74)),
    ("alexeyab", dict(layout="alexeyab", map50=0.449152, tp=90, fp=10, fn=143, avg_iou=0.7333)),
    ("hank", dict(layout="hank", map50=0.5705, tp=16726, fp=5496, fn=7534, recall=0.69)),
])
def test_darknet_map_output_layouts(layout, expect):
    m = parse_darknet_map((FIXTURES / f"darknet_map_{layout}.txt").read_text())
    for k, v in expect.items():
        assert m[k] == pytest.approx(v) if isinstance(v, float) else m[k] == v
    assert len(m["per_class"]) == 2
    if layout == "alexeyab":
        assert m["per_class"]["happy face"] == dict(ap50=pytest.approx(0.8671), tp=90, fp=10)
    if layout == "hank":
        assert m["per_class"]["neutral"]["ap50"] == pytest.approx(0.621063) and m["per_class"]["happy"]["fn"] == 3152


def test_cli_on_yolo_and_darknet_files_gives_the_same_numbers(tmp_path):
    import cv2
    gt_dir, yolo_dir, dk_dir = tmp_path / "gt", tmp_path / "pred", tmp_path / "dk"
    for d in (gt_dir, yolo_dir, dk_dir):
        d.mkdir()
    rng = np.random.default_rng(3)
    gts, preds = _random_case(rng, n_images=8)
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    dk_lines = {n: [] for n in NAMES}
    w, h = 640, 620
    for image, g in gts.items():
        cv2.imwrite(str(gt_dir / f"{image}.jpg"), np.zeros((h, w, 3), np.uint8))
        (gt_dir / f"{image}.txt").write_text("".join(
            f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
            for c, x1, y1, x2, y2 in g))
        (yolo_dir / f"{image}.txt").write_text("".join(
            f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f} {s:.6f}\n"
            for c, s, x1, y1, x2, y2 in preds[image]))
        for c, s, x1, y1, x2, y2 in preds[image]:
            dk_lines[NAMES[int(c)]].append(f"{image} {s:.6f} {x1 + 1:.3f} {y1 + 1:.3f} {x2 + 1:.3f} {y2 + 1:.3f}")
    for n, lines in dk_lines.items():
        (dk_dir / f"comp4_det_test_{n}.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.json"
    assert detection.main(["--gt", str(gt_dir), "--pred", str(yolo_dir), "--names", str(tmp_path / "names.txt"),
                           "--json", str(out), "--plots", str(tmp_path / "plots")]) == 0
    a = json.loads(out.read_text())
    for key in ("map50", "map50_95", "precision", "recall", "f1", "per_class"):
        assert key in a
    assert (tmp_path / "plots" / "pr_curve.png").stat().st_size > 1000
    b = detection.evaluate_folders(gt_dir, dk_dir, "darknet", tmp_path / "names.txt")
    assert b["map50"] == pytest.approx(a["map50"], abs=2e-3) and b["tp"] == a["tp"]
    direct = detection_metrics(gts, preds, NAMES, STYLES["darknet"])
    assert a["map50"] == pytest.approx(direct["map50"], abs=2e-3)


def test_cli_rejects_bad_prediction_files_with_one_line(tmp_path, capsys):
    from converters.errors import run_cli
    (tmp_path / "gt").mkdir(), (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "pred" / "x.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no confidence column
    code = run_cli(detection.main, ["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")])
    err = capsys.readouterr().err
    assert code == 2 and "x.txt:1: 5 columns, expected 6" in err and "Traceback" not in err


def test_by_face_size_counts_found_and_correct_per_bin():
    from eval.detection_metrics import by_face_size
    # image a (100 px wide as seen): a 10 px face found with the right class, a 40 px face found with the wrong one
    # at the higher score; image b (200 px): a 30 px face (0.15 x 200) missed, the only detection is elsewhere
    gts = {"a": np.array([[1, 0.0, 0.0, 0.1, 0.1], [2, 0.5, 0.5, 0.9, 0.9]]),
           "b": np.array([[3, 0.0, 0.0, 0.15, 0.15]])}
    preds = {"a": np.array([[1, 0.9, 0.0, 0.0, 0.1, 0.1],
                            [0, 0.8, 0.5, 0.5, 0.9, 0.9], [2, 0.6, 0.5, 0.5, 0.9, 0.9],
                            [2, 0.1, 0.0, 0.0, 0.1, 0.1]]),   # below conf: ignored
             "b": np.array([[3, 0.9, 0.6, 0.6, 0.8, 0.8]])}
    rows = by_face_size(gts, preds, {"a": 100, "b": 200}, [0, 20, 35, 100], conf=0.25)
    assert [r["faces"] for r in rows] == [1, 1, 1]
    assert [(r["found"], r["correct"]) for r in rows] == [(1.0, 1.0), (0.0, 0.0), (1.0, 0.0)]
