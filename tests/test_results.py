import csv

import pytest

from eval.results import COLUMNS, append_result


def test_rows_append_under_one_header(tmp_path):
    append_result("fer2013", dict(model="a", split="PrivateTest", top1=0.5), tmp_path)
    append_result("fer2013", dict(model="b", split="PrivateTest", top1=0.25, tta="tencrop"), tmp_path)
    rows = list(csv.DictReader((tmp_path / "fer2013.csv").open()))
    assert list(rows[0]) == list(COLUMNS)
    assert [(r["model"], r["top1"], r["tta"]) for r in rows] == [("a", "0.5000", ""), ("b", "0.2500", "tencrop")]
    with pytest.raises(ValueError):
        append_result("fer2013", dict(accuracy=1.0), tmp_path)


def test_a_new_measurement_of_the_same_model_split_and_tta_replaces_the_old_row(tmp_path):
    append_result("fer2013", dict(model="a", split="PrivateTest", tta="none", top1=0.5), tmp_path)
    append_result("fer2013", dict(model="a", split="PrivateTest", tta="tencrop", top1=0.6), tmp_path)
    append_result("fer2013", dict(model="a", split="PrivateTest", tta="none", top1=0.7), tmp_path)
    rows = list(csv.DictReader((tmp_path / "fer2013.csv").open()))
    assert [(r["tta"], r["top1"]) for r in rows] == [("tencrop", "0.6000"), ("none", "0.7000")]
