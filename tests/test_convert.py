from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from converters import affectnet as an
from converters import pipeline
from converters.convert import convert_affectnet
from converters.darknet_files import classes_in_path, read_data_file
from converters.labels import class_names, canonical_to_fer2013
from converters.pipeline import ConvertOptions

OPTS = ConvertOptions(sizes=(48, 96), workers=1, progress=False)


def _files(root: Path) -> dict[Path, str]:
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def converted(sample_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "affectnet"
    results = convert_affectnet(sample_dir, ["training", "validation"], out, OPTS)
    return out, results


def test_yolo_lines_of_the_real_rows_equal_the_csv(real_affectnet, tmp_path):
    out = tmp_path / "out"
    convert_affectnet(real_affectnet, ["training"], out, ConvertOptions(formats=("yolo",), workers=1, progress=False))
    sources = dict(csv.reader((out / "yolo" / "sources_train.csv").open()))
    by_image = {v: k for k, v in sources.items()}
    rows = list(csv.reader((real_affectnet / "training.csv").open()))[1:]
    checked = 0
    for rel, fx, fy, fw, fh, _, expr, _, _ in rows:
        image = real_affectnet / an.IMAGES_DIRNAME / rel
        if int(expr) > 7:
            assert str(image) not in by_image
            continue
        w, h = cv2.imread(str(image)).shape[1::-1]
        x, y, bw, bh = map(float, (fx, fy, fw, fh))
        expect = [int(expr), (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h]
        label = out / "yolo" / "train" / f"{by_image[str(image)]}.txt"
        got = [float(v) for v in label.read_text().split()]
        assert got[0] == expect[0] and got[1:] == pytest.approx(expect[1:], abs=1e-6)
        assert (out / "yolo" / "train" / f"{by_image[str(image)]}.jpg").read_bytes() == image.read_bytes()
        checked += 1
    assert checked == 9


def _one_image_set(tmp_path: Path, img: np.ndarray, rows: list[tuple]) -> Path:
    root = tmp_path / "an"
    (root / an.IMAGES_DIRNAME / "7").mkdir(parents=True)
    cv2.imwrite(str(root / an.IMAGES_DIRNAME / "7" / "a.png"), img)
    with (root / "training.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(an.HEADER)
        for box, expr in rows:
            w.writerow(["7/a.png", *map(str, box), "", str(expr), "0", "0"])
    return root


def test_crop_is_rows_y_columns_x(tmp_path):
    # A box at x=100, y=20 (w=40, h=60) filled white in an image that is black elsewhere; a swapped
    # crop (rows x, columns y) would be mostly black.
    img = np.zeros((200, 300), np.uint8)
    img[20:80, 100:140] = 255
    root = _one_image_set(tmp_path, img, [((100, 20, 40, 60), 1)])
    out = tmp_path / "out"
    convert_affectnet(root, ["training"], out, ConvertOptions(sizes=(48,), formats=("crops",), workers=1,
                                                               progress=False))
    crop = cv2.imread(str(out / "crops" / "48" / "train" / "happy" / "r0000002.png"), cv2.IMREAD_UNCHANGED)
    assert crop.shape == (48, 48) and crop.min() == 255


def test_two_faces_one_label_file_two_lines(tmp_path):
    img = np.full((200, 300, 3), 90, np.uint8)
    root = _one_image_set(tmp_path, img, [((10, 10, 80, 80), 2), ((150, 50, 100, 120), 6)])
    out = tmp_path / "out"
    convert_affectnet(root, ["training"], out, ConvertOptions(formats=("yolo",), workers=1, progress=False))
    labels = list((out / "yolo" / "train").glob("*.txt"))
    assert len(labels) == 1 and len(list((out / "yolo" / "train").glob("*.jpg"))) == 1
    lines = [l.split() for l in labels[0].read_text().splitlines()]
    assert [l[0] for l in lines] == ["2", "6"]
    assert [float(v) for v in lines[1][1:]] == pytest.approx([200 / 300, 110 / 200, 100 / 300, 120 / 200], abs=1e-6)
    # the PNG source was re-encoded as a JPEG that decodes to the same size
    jpg = next((out / "yolo" / "train").glob("*.jpg"))
    assert jpg.read_bytes()[:2] == b"\xff\xd8" and cv2.imread(str(jpg)).shape == (200, 300, 3)


def test_every_darknet_path_holds_exactly_its_class(converted):
    out, _ = converted
    names = class_names(7)
    for size in (48, 96):
        root = out / "darknet" / str(size)
        data = read_data_file(root / "emotion-classifier.data")
        assert data["classes"] == "7" and Path(data["train"]).exists() and Path(data["valid"]).exists()
        assert (root / "labels.txt").read_text().split() == list(names)
        for list_name in ("train.list", "valid.list"):
            paths = (root / list_name).read_text().split()
            assert paths
            for p in paths:
                found = classes_in_path(p, names)
                assert len(found) == 1 and Path(p).name.endswith(f"_{found[0]}.png") and Path(p).exists()


def test_crops_counts_match_the_reader_and_the_layout(converted, sample_dir):
    out, results = converted
    records = an.read_affectnet(sample_dir / "training.csv").records
    for size in (48, 96):
        files = list((out / "crops" / str(size) / "train").glob("*/*.png"))
        assert len(files) == len(records)
        img = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (size, size)
    report = results[0][0]
    assert report.faces == len(records) and sum(report.per_class.values()) == len(records)


def test_table_csv_and_h5_round_trip_equal_the_crops(converted):
    out, _ = converted
    names = class_names(7)
    with h5py.File(out / "table" / "fer2013.h5") as h5:
        pixels, labels, ids = h5["Training_pixel"][:], h5["Training_label"][:], h5["Training_id"][:]
        assert pixels.dtype == np.uint8 and pixels.shape[1] == 2304 and "PublicTest_pixel" in h5
    rows = list(csv.reader((out / "table" / "fer2013.csv").open()))
    assert rows[0] == ["emotion", "pixels", "Usage"]
    train_rows = [r for r in rows[1:] if r[2] == "Training"]
    assert len(train_rows) == len(pixels)
    for i in range(0, len(pixels), 7):
        crop = cv2.imread(str(out / "crops" / "48" / "train" / names[labels[i]] / f"{ids[i].decode()}.png"),
                          cv2.IMREAD_UNCHANGED)
        assert np.array_equal(crop.reshape(-1), pixels[i])
        assert np.array_equal(np.array(train_rows[i][1].split(), dtype=np.uint8), pixels[i])
        assert int(train_rows[i][0]) == canonical_to_fer2013(labels[i])


def test_landmarks_are_saved_in_crop_coordinates(converted, sample_dir):
    out, _ = converted
    rec = an.read_affectnet(sample_dir / "training.csv").records[0]
    rows = {r[0]: r for r in csv.reader((out / "crops" / "96" / "landmarks_train.csv").open())}
    pts = np.array(rows[rec.face_id][2:], dtype=float).reshape(68, 2)
    x, y, w, h = rec.box
    expect = (rec.landmarks - [x, y]) * [96 / w, 96 / h]
    assert np.abs(pts - expect).max() < 96 / min(w, h) * 2 + 0.5  # within a decode pixel


def test_aligned_crops_put_the_eyes_level(sample_dir, tmp_path):
    out = tmp_path / "al"
    convert_affectnet(sample_dir, ["training"], out,
                      ConvertOptions(sizes=(64,), formats=("crops",), align=True, workers=1, progress=False))
    rows = list(csv.reader((out / "crops" / "64" / "landmarks_train.csv").open()))[1:]
    assert rows and all(r[1] == "1" for r in rows)
    for r in rows[:20]:
        pts = np.array(r[2:], dtype=float).reshape(68, 2)
        left, right = pts[36:42].mean(0), pts[42:48].mean(0)
        assert left == pytest.approx([0.3 * 64, 0.38 * 64], abs=0.01)  # CSV keeps 2 decimals
        assert right == pytest.approx([0.7 * 64, 0.38 * 64], abs=0.01)


def test_reduced_decoding_matches_full_decoding(sample_dir):
    rec = an.read_affectnet(sample_dir / "training.csv").records
    rec = max(rec, key=lambda r: r.box[2])
    full = cv2.imread(str(rec.image), cv2.IMREAD_GRAYSCALE)
    x, y, w, h = (int(v) for v in rec.box)
    ref = cv2.resize(full[y:y + h, x:x + w], (48, 48), interpolation=cv2.INTER_AREA).astype(float)
    task = pipeline.image_tasks([rec], "train")[0]
    factor = pipeline.geo.decode_factor([rec.box], 48)
    assert factor >= 2
    img = pipeline._decode(task, factor, "gray")
    shape = (-(-rec.image_size[1] // factor), -(-rec.image_size[0] // factor))
    assert img.shape == shape
    crop = pipeline.geo.box_crop(img, rec.box, factor, shape, 48).astype(float)
    assert np.abs(crop - ref).mean() < 6


def test_rerun_writes_nothing_and_output_is_deterministic(sample_dir, tmp_path):
    out = tmp_path / "o"
    convert_affectnet(sample_dir, ["training", "validation"], out, OPTS)
    first, times = _files(out), _mtimes(out)
    convert_affectnet(sample_dir, ["training", "validation"], out, OPTS)
    assert _mtimes(out) == times
    for p in list(out.rglob("*")):  # and a fresh run gives the same bytes
        if p.is_file():
            p.unlink()
    convert_affectnet(sample_dir, ["training", "validation"], out, ConvertOptions(sizes=(48, 96), workers=2,
                                                                                  progress=False))
    assert _files(out) == first


def test_interrupted_run_resumes_to_the_same_result(sample_dir, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    convert_affectnet(sample_dir, ["training"], ref, OPTS)
    out = tmp_path / "ref"  # same absolute paths in lists, so bytes compare
    expected = _files(ref)
    for p in list(ref.rglob("*")):
        if p.is_file():
            p.unlink()
    real, calls = pipeline.convert_group, {"n": 0}

    def dies_after_ten(*args):
        calls["n"] += 1
        if calls["n"] > 10:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(pipeline, "convert_group", dies_after_ten)
    with pytest.raises(KeyboardInterrupt):
        convert_affectnet(sample_dir, ["training"], out, OPTS)
    partial = _files(out)
    assert 0 < len([p for p in partial if p.suffix == ".png"]) < len([p for p in expected if p.suffix == ".png"])
    assert not [p for p in out.rglob("*.tmp")]
    monkeypatch.setattr(pipeline, "convert_group", real)
    convert_affectnet(sample_dir, ["training"], out, OPTS)
    assert _files(out) == expected


def test_other_options_on_the_same_output_are_refused(sample_dir, tmp_path):
    from converters.errors import EmoDetError
    out = tmp_path / "o"
    opts = ConvertOptions(sizes=(48,), formats=("crops",), workers=1, progress=False)
    convert_affectnet(sample_dir, ["validation"], out, opts)
    other = ConvertOptions(sizes=(48,), formats=("crops",), box_scale=1.3, workers=1, progress=False)
    with pytest.raises(EmoDetError, match="box_scale"):
        convert_affectnet(sample_dir, ["validation"], out, other)
    convert_affectnet(sample_dir, ["validation"], out, other, overwrite=True)


def test_a_changed_csv_on_the_same_output_is_refused_then_replaced_whole(sample_dir, tmp_path):
    """Output files are named after CSV rows: reusing them for another CSV would keep the old faces."""
    import shutil

    from converters.errors import EmoDetError
    src, out = tmp_path / "src", tmp_path / "o"
    shutil.copytree(sample_dir, src)
    opts = ConvertOptions(sizes=(48,), formats=("yolo",), workers=1, progress=False)
    convert_affectnet(src, ["validation"], out, opts)
    before = {p.name: p.read_bytes() for p in (out / "yolo" / "val").glob("*.txt")}
    lines = (src / "validation.csv").read_text().splitlines()
    (src / "validation.csv").write_text("\n".join([lines[0], *lines[3:]]) + "\n")  # two faces fewer
    with pytest.raises(EmoDetError, match="records"):
        convert_affectnet(src, ["validation"], out, opts)
    convert_affectnet(src, ["validation"], out, opts, overwrite=True)
    after = {p.name: p.read_bytes() for p in (out / "yolo" / "val").glob("*.txt")}
    assert after and set(after) != set(before)
    fresh = tmp_path / "fresh"
    convert_affectnet(src, ["validation"], fresh, opts)
    assert after == {p.name: p.read_bytes() for p in (fresh / "yolo" / "val").glob("*.txt")}


def test_undecodable_image_is_counted_not_fatal(tmp_path):
    root = _one_image_set(tmp_path, np.zeros((100, 100), np.uint8), [((10, 10, 50, 50), 1)])
    jpg = root / an.IMAGES_DIRNAME / "7" / "b.jpg"
    ok, buf = cv2.imencode(".jpg", np.zeros((100, 100, 3), np.uint8))
    jpg.write_bytes(buf.tobytes()[:300])  # header intact (the reader accepts it), data truncated
    with (root / "training.csv").open("a", newline="") as f:
        csv.writer(f).writerow(["7/b.jpg", "10", "10", "50", "50", "", "2", "0", "0"])
    out = tmp_path / "out"
    (report, rejects, _), = convert_affectnet(root, ["training"], out,
                                              ConvertOptions(sizes=(48,), workers=1, progress=False))
    assert report.faces + len(rejects) == 2


def test_yolo_files_sit_beside_their_images_and_paths_are_engine_safe(converted):
    out, _ = converted
    import yaml
    spec = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    assert spec["names"][6] == "anger" and spec["nc"] == 7
    assert (Path(spec["path"]) / spec["val"]).is_dir()
    data = read_data_file(out / "yolo" / "emotion.data")
    assert (Path(data["backup"])).is_dir() and Path(data["results"]).is_dir()
    for p in (out / "yolo" / "train.txt").read_text().split():
        assert Path(p).exists() and Path(p).with_suffix(".txt").exists()
        assert "images" not in p and "raw" not in p
        for line in Path(p).with_suffix(".txt").read_text().splitlines():
            c, *xywh = line.split()
            assert 0 <= int(c) < 7 and all(0 <= float(v) <= 1 for v in xywh)


def test_small_crops_are_stored_uncompressed_and_larger_ones_deflated(converted):
    out, _ = converted
    small = sorted((out / "crops" / "48").rglob("*.png"))[0]
    large = sorted((out / "crops" / "96").rglob("*.png"))[0]
    # a stored 48 px grey crop is its 2,304 pixels plus headers; deflate would make it smaller than that
    assert 48 * 48 < small.stat().st_size < 48 * 48 + 256 and large.stat().st_size < 96 * 96
    for path, size in ((small, 48), (large, 96)):
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape == (size, size)
    assert not pipeline.stored(np.zeros((48, 48, 3), np.uint8))  # colour: 6.9 KB raw, over one block
    assert small.read_bytes() == pipeline.png_bytes(cv2.imread(str(small), cv2.IMREAD_UNCHANGED))  # as written


@pytest.mark.parametrize("shape", [(48, 48), (1, 7), (40, 60)])
def test_a_stored_png_written_here_reads_back_the_same_everywhere(shape, tmp_path):
    from PIL import Image
    grey = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = pipeline.png_bytes(grey)
    assert len(data) < grey.size + 256  # stored, not deflated
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), grey)
    (tmp_path / "g.png").write_bytes(data)
    with Image.open(tmp_path / "g.png") as im:  # PIL checks every chunk's CRC
        im.load()
        assert im.mode == "L" and np.array_equal(np.asarray(im), grey)
