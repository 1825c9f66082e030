"""Property: whatever the lines of an input file, every line is either converted or reported with its reason
(never silently lost, never a traceback) - for the AffectNet CSV reader, the YOLO export reader, eval's YOLO
label/prediction reader and the FER2013 reader."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters.affectnet import HEADER, read_affectnet
from converters.errors import EmoDetError
from converters.yolo_export import read_yolo_export

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
junk = st.text(alphabet=st.sampled_from(list('0123456789.,;-" eE/\\nanif\t\r')), max_size=60)


@pytest.fixture(scope="module")
def csv_lines(sample_dir):
    return (sample_dir / "training.csv").read_text().splitlines()[1:]


def _mutate(line: str, data) -> str:
    fields = line.split(",")
    k = data.draw(st.integers(0, len(fields) - 1))
    fields[k] = data.draw(junk)
    return ",".join(fields)


@SETTINGS
@given(data=st.data())
def test_every_affectnet_csv_line_is_converted_or_reported(sample_dir, csv_lines, tmp_path_factory, data):
    lines = [data.draw(st.sampled_from(csv_lines)) for _ in range(data.draw(st.integers(1, 12)))]
    lines = [_mutate(line, data) if data.draw(st.booleans()) else line for line in lines]
    lines += data.draw(st.lists(junk, max_size=3))
    path = tmp_path_factory.mktemp("csv") / "training.csv"
    path.write_text(",".join(HEADER) + "\n" + "\n".join(lines) + "\n")
    read = read_affectnet(path, sample_dir / "Manually_Annotated_Images")
    seen = [r.row for r in read.records] + [r.row for r in read.rejects]
    physical = path.read_text().splitlines()
    expected = [n for n, text in enumerate(physical, start=1) if n > 1 and text.replace(",", "").strip()]
    assert sorted(seen) == expected


label_line = st.one_of(
    st.tuples(st.integers(-1, 8), *[st.one_of(st.floats(-0.5, 1.5), st.just(float("nan")))] * 4).map(
        lambda t: " ".join(str(v) for v in t)),
    junk)


@SETTINGS
@given(lines=st.lists(label_line, max_size=8))
def test_every_yolo_export_label_line_is_converted_or_reported(tmp_path_factory, lines):
    import cv2
    root = tmp_path_factory.mktemp("export")
    (root / "data.yaml").write_text("names: ['angry', 'happy', 'neutral']\n")
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir()
    cv2.imwrite(str(root / "train" / "images" / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    (root / "train" / "labels" / "a.txt").write_text("\n".join(lines))
    read = read_yolo_export(root, "train")
    seen = sorted(r.row for r in read.records) + sorted(r.row for r in read.rejects)
    text = (root / "train" / "labels" / "a.txt").read_text().splitlines()
    assert sorted(seen) == [n for n, t in enumerate(text, start=1) if t.split()]


@SETTINGS
@given(lines=st.lists(label_line, max_size=8), with_conf=st.booleans())
def test_eval_reads_every_label_line_or_names_the_bad_one(tmp_path_factory, lines, with_conf):
    from converters.yolo_format import parse_yolo_line, read_yolo_rows
    path = tmp_path_factory.mktemp("labels") / "x.txt"
    path.write_text("\n".join(lines))
    physical = path.read_text().splitlines()
    bad = []
    for n, t in enumerate(physical, start=1):
        try:
            parse_yolo_line(t, with_conf)
        except ValueError:
            bad.append(n)
    if bad:
        with pytest.raises(EmoDetError, match=rf"x.txt:{bad[0]}: "):
            read_yolo_rows(path, with_conf)
    else:
        rows = read_yolo_rows(path, with_conf)
        assert len(rows) == sum(1 for t in physical if t.split()) and np.isfinite(rows).all()


fer_row = st.tuples(st.one_of(st.integers(-2, 9).map(str), junk.filter(lambda s: "," not in s and "\n" not in s)),
                    st.one_of(st.just("valid"), junk.filter(lambda s: "," not in s and "\n" not in s)),
                    st.sampled_from(["Training", "PublicTest", "PrivateTest", "Other", ""]))


@SETTINGS
@given(rows=st.lists(fer_row, min_size=1, max_size=10), seed=st.integers(0, 10))
def test_every_fer2013_row_is_converted_or_reported(tmp_path_factory, rows, seed):
    from converters.fer2013 import read_fer2013
    rng = np.random.default_rng(seed)
    text = ["emotion,pixels,Usage"]
    for emotion, pixels, usage in rows:
        if pixels == "valid":
            pixels = " ".join(map(str, rng.integers(0, 256, 2304)))
        text.append(f"{emotion},{pixels.strip()},{usage}")
    path = tmp_path_factory.mktemp("fer") / "fer2013.csv"
    path.write_text("\n".join(text) + "\n")
    try:
        by_split, rejects = read_fer2013(path)
    except EmoDetError:
        return  # refused as a whole, in one line (e.g. no usable rows at all)
    seen = sorted([r.row for rs in by_split.values() for r in rs] + [r.row - 2 for r in rejects])
    assert seen == list(range(len(rows)))
