"""AffectNet at scale: a CSV is converted as a stream (memory flat in its rows) to exactly the files the
list-reading path writes; the process pool draws its jobs lazily; an image whose rows lie apart falls back to
reading the whole CSV; every skipped row is listed; the JPEG header parser agrees with PIL."""
from __future__ import annotations

import csv
import hashlib
import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from converters import affectnet as an
from converters.convert import convert_dataset, read_split
from converters.jpeg_header import read_file_header, read_jpeg_header
from converters.parallel import IN_FLIGHT, parallel_map
from converters.pipeline import ConvertOptions, RecordStream, convert_split
from converters.synthetic import AFFECTNET_SIDE, generate_sample

OPTS = ConvertOptions(sizes=(48,), workers=2, progress=False)


def _tree(root: Path) -> dict[str, str]:
    here = str(root.resolve()).encode()
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes().replace(here, b"OUT")).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".emodet.lock"}


def test_a_streamed_csv_writes_the_files_of_the_listed_one(sample_dir, tmp_path):
    split, stream = read_split(sample_dir, "affectnet", "training", OPTS, stream=True)
    assert isinstance(stream, RecordStream) and stream.images == 48
    convert_split(stream, split, tmp_path / "streamed", OPTS)
    _, listed = read_split(sample_dir, "affectnet", "training", OPTS)
    convert_split(listed.records, split, tmp_path / "listed", OPTS, listed.rejects, digest=listed.digest)
    streamed, reference = _tree(tmp_path / "streamed"), _tree(tmp_path / "listed")
    assert len(streamed) > 100 and streamed == reference


def _double(x: int) -> int:
    return 2 * x


def test_the_pool_draws_a_generator_as_it_goes():
    drawn = []

    def jobs():
        for i in range(10_000):
            drawn.append(i)
            yield i
    results = parallel_map(_double, jobs(), workers=2, chunksize=4)
    assert next(results) == 0
    assert len(drawn) <= IN_FLIGHT * 2 * 4 + 4  # not the 10,000 Pool.imap would have queued
    assert sum(results) == sum(range(2, 20_000, 2))


def _rewrite(src: Path, dst: Path, rows) -> Path:
    dst.mkdir()
    (dst / an.IMAGES_DIRNAME).symlink_to((src / an.IMAGES_DIRNAME).resolve())
    with open(dst / "training.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return dst


def test_rows_of_an_image_apart_are_read_whole_and_grouped(sample_dir, tmp_path, capsys):
    rows = list(csv.reader(open(sample_dir / "training.csv")))
    header, body = rows[0], rows[1:]
    multi = next(i for i in range(len(body) - 1) if body[i][0] == body[i + 1][0])  # an image with 2+ faces
    moved = body[:multi + 1] + body[multi + 2:] + [body[multi + 1]]  # its second face now last
    root = _rewrite(sample_dir, tmp_path / "apart", [header] + moved)
    split, read = read_split(root, "affectnet", "training", OPTS, stream=True)
    assert not isinstance(read, RecordStream) and "lie apart" in capsys.readouterr().err
    [(report, rejects, _)] = convert_dataset(root, ["training"], tmp_path / "out", OPTS)
    assert report.faces == len(body) and rejects == []
    stem = f"i{multi + 2:07d}"  # named after the image's first row (line multi + 2 of the file)
    assert len((tmp_path / "out" / "yolo" / "train" / f"{stem}.txt").read_text().splitlines()) >= 2


def test_every_skipped_row_is_listed_and_counted(sample_dir, tmp_path):
    rows = list(csv.reader(open(sample_dir / "training.csv")))
    bad = [rows[0], *rows[1:6], [rows[1][0], "x", *rows[1][2:]], [*rows[2][:6], "9", *rows[2][7:]],
           ["1/nothing-here.jpg", *rows[3][1:]]]
    root = _rewrite(sample_dir, tmp_path / "bad", bad)
    [(report, rejects, _)] = convert_dataset(root, ["training"], tmp_path / "out", OPTS)
    listed = list(csv.DictReader(open(tmp_path / "out" / "rejects_train.csv")))
    assert sorted(r["reason"] for r in listed) == sorted([an.R_BOX_TEXT, an.R_NOT_EXPR, an.R_MISSING])
    assert [int(r["row"]) for r in sorted(listed, key=lambda r: int(r["row"]))] == [7, 8, 9]
    assert sum(report.rejects.values()) == 3 and len(rejects) == 3 and report.faces == 5


def _jpeg(w: int, h: int, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, "JPEG", **save)
    return buf.getvalue()


def test_the_jpeg_header_parser_reads_size_orientation_and_completeness():
    plain = _jpeg(321, 123)
    h = read_jpeg_header(plain, plain[-4096:])
    assert (h.width, h.height, h.orientation, h.complete) == (321, 123, 1, True)
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = _jpeg(40, 30, exif=exif.tobytes())
    assert read_jpeg_header(rotated, rotated[-4096:]).orientation == 6
    cut = plain[:len(plain) // 2]
    assert read_jpeg_header(cut, cut[-4096:]).complete is False
    png = cv2.imencode(".png", np.zeros((5, 5), np.uint8))[1].tobytes()
    assert read_jpeg_header(png, png) is None and read_jpeg_header(b"", b"") is None


def test_the_parser_agrees_with_pil_on_real_photos(sample_dir, real_affectnet):
    photos = sorted((real_affectnet / an.IMAGES_DIRNAME).rglob("*.jp*g"))
    photos += sorted((sample_dir / an.IMAGES_DIRNAME).rglob("*.jpg"))[:20]
    for p in photos:
        header = read_file_header(p)
        with Image.open(p) as im:
            assert (header.width, header.height) == im.size, p
            assert header.orientation == im.getexif().get(0x0112, 1), p


def test_affectnet_sized_photos_spread_like_affectnet(tmp_path):
    generate_sample(tmp_path, n_train=40, n_val=0, seed=3, size="affectnet", workers=1, progress=False)
    mean, std, lo, hi = AFFECTNET_SIDE
    read = an.read_affectnet(tmp_path / "training.csv")
    sides = [max(r.image_size) for r in read.records]
    assert len(read.records) == 40 and read.rejects == []  # one face a photo
    assert all(lo <= s <= hi for s in sides) and np.std(sides) > 100


def test_the_scale_bench_splits_the_converters_extra_cpu_into_user_and_kernel():
    """Known answer: per-photo CPU figures and the kernel's share of what the converter adds over the ceiling that
    decodes as it does."""
    from scripts.bench_scale import cpu_seconds, cpu_table, with_cpu
    r = {"rows": 1000,
         "cpu_ceiling_all": {"user": 1.4, "system": 0.2, "iowait": 0.0, "steal": 0.0},
         "cpu_region_all": {"user": 1.0, "system": 0.2, "iowait": 0.0, "steal": 0.0},
         "cpu_ceiling_writes_all": {"user": 1.1, "system": 1.0, "iowait": 0.1, "steal": 0.0},
         "cpu_convert_all": {"user": 1.3, "system": 1.1, "iowait": 0.0, "steal": 0.1}}
    text = "\n".join(cpu_table(r))
    assert "| converter | 1.30 | 1.10 | 0.00 | 0.10 |" in text and "| ceiling (decode, crop, resize) | 1.40 |" in text
    assert "+0.30 ms user and +0.90 ms kernel per photo (75% of the added CPU time in the kernel)" in text
    assert "plainly adds +0.10 ms user and +0.80 ms kernel" in text
    before = cpu_seconds()
    assert set(before) == {"user", "system", "iowait", "steal"} and before["user"] > 0
    out, spent = with_cpu(sum, range(2_000_000))
    assert out == sum(range(2_000_000)) and spent["user"] >= 0 and set(spent) == set(before)


def test_the_full_size_runs_are_summarised_over_their_rounds():
    """Known answer: medians of the seconds, the largest peak, the mean CPU and each round's ratio."""
    from scripts.bench_scale import full_size, markdown
    cpu = {"user": 1.0, "system": 0.5, "iowait": 0.0, "steal": 0.0}
    rounds = [dict(ceiling_s=c, region_s=g, convert_s=v, writes_s=w, rss_kb=k, cpu_ceiling=cpu, cpu_writes=cpu,
                   cpu_region=cpu, cpu_convert={**cpu, "user": u}) for c, g, v, w, k, u in
              [(10, 8, 20, 12, 70_000, 2.0), (12, 9, 16, 13, 72_000, 3.0), (11, 10, 18, 20, 71_000, 4.0)]]
    r = full_size(rounds)
    assert (r["ceiling_all_s"], r["convert_all_s"], r["ceiling_writes_all_s"], r["rss_all_kb"]) == (11, 18, 13, 72_000)
    assert r["cpu_convert_all"]["user"] == 3.0 and [round(x, 3) for x in r["ratios"]] == [0.5, 0.75, 0.611]
    assert r["region_ceiling_all_s"] == 9 and [round(x, 3) for x in r["region_ratios"]] == [0.4, 0.562, 0.556]
    small = {f"{kind}_small_{n}_s": 5.0 for kind in ("ceiling", "region", "convert", "ceiling_writes") for n in (1, 2)}
    text = markdown({**r, **small, "rows": 50_000, "small": 5_000, "workers": 2, "rss_small_1_kb": 60_000,
                     "rss_small_2_kb": 60_000, "resume": dict(killed_after_s=1, crops_before_rerun=9,
                                                               rerun_seconds=2, equal_to_clean=True)})
    assert "| 50,000 | 2 | 4545 | 5556 | 3846 | 2778 | 61% | 50% | 72% | 70 MB |" in text
    assert "Converter / ceiling in each round: 50%, 75%, 61%; converter / face's part: 40%, 56%, 56%." in text
    assert "converter over the face's-part ceiling: +0.04 ms user and +0.00 ms kernel" in text


def test_the_feeding_process_hands_each_image_its_run_of_raw_lines(tmp_path):
    lines = [",".join(an.HEADER),
             'a/1.jpg,1,2,3,4,,1,0,0', 'a/1.jpg,5,6,7,8,,2,0,0', '',
             '"a/2,x.jpg",1,2,3,4,,1,0,0',  # a quoted first field holding a comma
             'not,enough,fields',
             'a/1.jpg,9,9,3,4,,3,0,0']  # the first image again, after others: a run of its own
    path = tmp_path / "training.csv"
    path.write_text("\n".join(lines) + "\n")
    runs = list(an.row_runs(path))
    assert [[n for n, _ in run] for run in runs] == [[2, 3], [5], [6], [7]]
    assert runs[1][0][1] == lines[4]  # the text as in the file: the worker parses it
    parsed = an.StreamedRows(str(path), str(tmp_path / an.IMAGES_DIRNAME), 7)(runs[0] + runs[2])
    assert [type(p).__name__ for p in parsed] == ["FaceRecord", "FaceRecord", "Reject"]
    assert parsed[0].box == (1.0, 2.0, 3.0, 4.0) and parsed[1].expression == 2 and parsed[2].reason == an.R_COLUMNS
    listed = an.read_affectnet(path, check_images=False)
    assert [r.row for r in listed.records] == [2, 3, 5, 7] and [j.row for j in listed.rejects] == [6]


@pytest.mark.parametrize("unnamed", [True, False])
def test_a_new_file_appears_whole_under_its_name_and_nothing_else_is_left(tmp_path, monkeypatch, unnamed):
    from converters import io as cio
    monkeypatch.setattr(cio, "_UNNAMED", unnamed and cio._UNNAMED)
    path = tmp_path / "new" / "folder" / "crop.png"
    data = bytes(range(256)) * 40
    assert cio.atomic_write_bytes(path, data, known_missing=True)
    assert path.read_bytes() == data and [p.name for p in path.parent.iterdir()] == ["crop.png"]
    # "known missing" and there after all: replaced, still whole, still alone
    assert cio.atomic_write_bytes(path, b"other", known_missing=True)
    assert path.read_bytes() == b"other" and [p.name for p in path.parent.iterdir()] == ["crop.png"]
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask
