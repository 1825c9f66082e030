"""The real-photo bench's sweep, the way the shipped detector's second pass is chosen: known answers with a stand-in
detector on a tiny YOLO folder."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from scripts import bench_real, detectors
from scripts.detectors import LetterboxDetector, parse_passes


class _ReadsLargeFacesSmall(LetterboxDetector):
    """One box over the whole input; class 0 at 0.3 at its main size, class 1 at 0.9 when the input is 32 px."""
    imgsz = 64

    def __init__(self, extra_passes=(), threads=None, **decode):
        super().__init__(**decode)
        self.extra_passes = parse_passes(extra_passes)

    def raw(self, x):
        size = x.shape[-1]
        n = (size // 8) ** 2 + (size // 16) ** 2 + (size // 32) ** 2
        out = np.zeros((4 + 2, n), np.float32)
        out[:4, 0] = [size / 2, size / 2, size, size]
        out[4:, 0] = [0.0, 0.9] if size == 32 else [0.3, 0.0]
        return out


def _one_face_photos(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    for k in range(n):
        cv2.imwrite(str(folder / f"p{k}.jpg"), np.full((300, 300, 3), 90, np.uint8))
        (folder / f"p{k}.txt").write_text("1 0.5 0.5 1.0 1.0\n")  # a happy face filling the photo
    return folder


def test_the_sweep_scores_each_configuration_on_the_validation_sets(tmp_path, monkeypatch):
    photos = _one_face_photos(tmp_path / "photos", 4)
    monkeypatch.setattr(bench_real, "VAL_SETS", {"all": photos, "half": (photos, 2)})
    monkeypatch.setattr(bench_real, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(detectors, "load_detector",
                        lambda weights, imgsz, extra_passes=(), **decode: _ReadsLargeFacesSmall(extra_passes, **decode))
    r = bench_real.size_sweep(tmp_path / "det.onnx", ["64", "64+32"])
    alone, second = r["64"], r["64+32"]
    assert alone["all"]["big_faces"] == 4 and alone["half"]["big_faces"] == 2  # every second photo
    assert alone["all"]["big_found"] == 1.0 and alone["all"]["right"] == 0.0 and alone["all"]["map50"] == 0.0
    # the 32 px pass reads the face right: its opinion turns the box happy, at its confidence; Darknet-style mAP
    # averages all 7 classes, and only happy has faces here
    assert second["all"]["big_found"] == 1.0 and second["all"]["right"] == 1.0
    assert second["all"]["map50"] == pytest.approx(1 / 7)


def test_sweeps_of_two_detectors_keep_their_predictions_apart(tmp_path, monkeypatch):
    """Two detectors (both files named best.pt) swept at one configuration, as when they are compared side by
    side: each sweep's predictions stay in a folder of its own, where the other does not write."""
    photos = _one_face_photos(tmp_path / "photos", 2)
    monkeypatch.setattr(bench_real, "VAL_SETS", {"all": photos})
    monkeypatch.setattr(bench_real, "RUNS_DIR", tmp_path / "runs")

    class _ReadsNothing(_ReadsLargeFacesSmall):
        def raw(self, x):
            return np.zeros_like(super().raw(x))

    a, b = tmp_path / "a" / "best.pt", tmp_path / "b" / "best.pt"
    monkeypatch.setattr(detectors, "load_detector", lambda weights, imgsz, extra_passes=(), **decode:
                        (_ReadsLargeFacesSmall if weights == a else _ReadsNothing)(extra_passes, **decode))
    assert bench_real.size_sweep(a, ["64+32"])["64+32"]["all"]["right"] == 1.0
    assert bench_real.size_sweep(b, ["64+32"])["64+32"]["all"]["big_found"] == 0.0
    labels = lambda det: sorted((bench_real.sweep_folder(det) / "all-64+32" / "labels").glob("*.txt"))
    assert [p.read_text().split()[0] for p in labels(a)] == ["1", "1"]  # a's happy faces, not b's empty files
    assert all(not p.read_text().strip() for p in labels(b))


def test_the_classifier_rows_skip_with_their_reason_when_a_table_is_missing(tmp_path, monkeypatch):
    """The bench's classifier table needs both face tables; a missing one is said, not a late crash that loses the
    detector figures already measured."""
    from scripts import bench_real
    faces = tmp_path / "fitw.h5"
    faces.write_bytes(b"")
    monkeypatch.setattr(bench_real, "FACES_TABLE", faces)
    monkeypatch.setattr(bench_real, "FER2013_TABLE", tmp_path / "no-fer2013.h5")
    assert "no-fer2013.h5: missing" in bench_real.classifier_rows([tmp_path / "x.onnx"])["skipped"]


def test_predict_ms_times_the_detector_as_make_predict_runs_it(tmp_path, monkeypatch):
    """One label a box at conf 0.25 (what a user gets), each photo once after one untimed call, the clock around
    the calls alone: a detector that takes 20 ms a call is timed at 20 ms, not at its reading of the photos."""
    import time
    calls = []

    class _Slow(_ReadsLargeFacesSmall):
        def __call__(self, image, conf, iou):
            calls.append((self.multi_label, conf, iou))
            time.sleep(0.02)
            return super().__call__(image, conf, iou)
    monkeypatch.setattr(detectors, "load_detector", lambda weights, imgsz=None, **kw: _Slow(**kw))
    photos = sorted(_one_face_photos(tmp_path / "set", 4).glob("*.jpg"))
    ms = bench_real.predict_ms(Path("det.onnx"), photos)
    assert calls == [(False, 0.25, 0.7)] * 5
    assert 20 <= ms < 60


def test_network_ms_times_the_main_pass_forward_alone(tmp_path, monkeypatch):
    """The network at its input size: one forward per photo at the main size after one untimed call, the photos
    letterboxed before the clock starts; no extra pass and no decoding is run (a detector whose __call__ would take
    a second is timed at its 20 ms forward)."""
    import time
    sizes = []

    class _Forward(_ReadsLargeFacesSmall):
        def raw_batch(self, x):
            sizes.append(x.shape)
            time.sleep(0.02)
            return super().raw_batch(x)

        def __call__(self, image, conf, iou):
            raise AssertionError("network_ms decodes nothing")
    monkeypatch.setattr(detectors, "load_detector", lambda weights, imgsz=None, **kw: _Forward(**kw))
    photos = sorted(_one_face_photos(tmp_path / "set", 3).glob("*.jpg"))
    ms = bench_real.network_ms(Path("det.onnx"), photos)
    assert sizes == [(1, 3, 64, 64)] * 4
    assert 20 <= ms < 60


def test_real_section_names_the_machine_it_was_timed_on(tmp_path, monkeypatch):
    """The shared machines change between runs (and a network's milliseconds with them): the real part's section
    says which CPU and runtime its times come from."""
    import json
    from scripts import bench
    monkeypatch.setattr(bench, "BENCH_DIR", tmp_path)
    machine = dict(cpu="Example CPU 9000", cores=2, torch="2.0", opencv="4.0", onnxruntime="1.2.3",
                   date="2026-01-01 00:00")
    (tmp_path / "real.json").write_text(json.dumps({"markdown": "the tables", "machine": machine}))
    text = bench.benchmarks_markdown()
    section = text[text.index("## Real photos"):]
    assert "the tables" in section
    assert "Measured 2026-01-01 00:00 on Example CPU 9000, 2 cores; ONNX Runtime 1.2.3" in section
    assert set(bench.machine_info()) >= {"cpu", "cores", "onnxruntime", "date"}


def test_the_sweep_reports_small_faces_from_24_px_apart(tmp_path, monkeypatch):
    """Faces 30 px wide (in the small-face bin, each found) and 15 px wide (under it, missed): the bin counts the
    first only, and the set's recall both."""
    folder = tmp_path / "small"
    folder.mkdir()
    for k in range(2):
        cv2.imwrite(str(folder / f"s{k}.jpg"), np.full((300, 300, 3), 90, np.uint8))
        (folder / f"s{k}.txt").write_text("1 0.5 0.5 0.1 0.1\n1 0.2 0.2 0.05 0.05\n")
    monkeypatch.setattr(bench_real, "VAL_SETS", {"small": folder})
    monkeypatch.setattr(bench_real, "RUNS_DIR", tmp_path / "runs")

    class _FindsTheCentralFace(_ReadsLargeFacesSmall):
        def raw(self, x):
            out = super().raw(x)
            size = x.shape[-1]
            out[:4, 0] = [size / 2, size / 2, size * 0.1, size * 0.1]  # the 30 px face, wherever the input is
            out[4:, 0] = [0.0, 0.8]
            return out

    monkeypatch.setattr(detectors, "load_detector",
                        lambda weights, imgsz, extra_passes=(), **decode: _FindsTheCentralFace(extra_passes, **decode))
    r = bench_real.size_sweep(tmp_path / "det.onnx", ["64"])["64"]["small"]
    assert r["small_faces"] == 2 and r["small_found"] == 1.0 and r["small_right"] == 1.0
    assert r["big_faces"] == 0 and r["recall"] == 0.5 and r["right"] == 0.5
    assert r["input_faces"] == 0  # at a 64 px main pass both faces are under 24 px (6.4 and 3.2)

    class _At320(_FindsTheCentralFace):
        imgsz = 320

    monkeypatch.setattr(detectors, "load_detector",
                        lambda weights, imgsz, extra_passes=(), **decode: _At320(extra_passes, **decode))
    r = bench_real.size_sweep(tmp_path / "det.onnx", ["320"])["320"]["small"]
    # at 320 px each photo's central face is 32 px wide at the input (counted, found), the other 16 px (not counted)
    assert r["input_faces"] == 2 and r["input_found"] == 1.0
