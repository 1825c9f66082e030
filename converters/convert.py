"""`make convert`: a labelled face dataset -> crops, Darknet classifier set, FER2013-style table, YOLO detection set.

Input shapes (found from what the folder holds; one reader each, one record stream to the writers):
  affectnet   <root>/<split>.csv + Manually_Annotated_Images/       (AffectNet's own layout; the default sample)
  yolo        <root>/data.yaml + <split>/images, <split>/labels    (Roboflow / Ultralytics exports; names mapped)
  photos      <root>/labels.csv (image,emotion[,identity]) or <root>/<class>/*.jpg   (one face per photo; boxes
              from OpenCV's Haar cascade; train/val split by identity)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .affectnet import IMAGES_DIRNAME, SPLIT_CSV, StreamedRows, read_affectnet, row_runs, scan_affectnet
from .errors import EmoDetError, run_cli
from .face_boxes import BoxFit
from .face_photos import declared_names, read_face_photos
from .labels import custom_names
from .writers import finalize_table
from .pipeline import FORMATS, ConvertOptions, RecordStream, convert_split, summary_text
from .settings import DATA_DIR, SAMPLE_AFFECTNET, WEIGHTS_DIR
from .yolo_export import export_names, export_splits, read_yolo_export

SHAPES = ("affectnet", "yolo", "photos")
# split as named on the command line (AffectNet's CSV names or ours) -> the split we write
SPLIT_NAMES = dict(SPLIT_CSV) | {"train": "train", "val": "val", "valid": "val"}
# Haar box -> the face box of real-photo detection labels (fitted on roboflow-emotion/train by
# `python -m scripts.two_stage fit`); used for photos that come without boxes
PHOTO_BOX_FIT = WEIGHTS_DIR / "haar-box-fit-photos.json"


def input_shape(root: Path) -> str:
    """Which reader a dataset folder (or labels CSV) needs; one line naming what was looked for otherwise."""
    root = Path(root)
    if not root.exists():
        raise EmoDetError(f"{root}: no such file or folder")
    if root.is_dir() and (root / "data.yaml").is_file():
        return "yolo"
    if root.is_dir() and (root / IMAGES_DIRNAME).is_dir():
        return "affectnet"
    if root.is_file() or (root / "labels.csv").is_file() or (root.is_dir() and any(p.is_dir() for p in root.iterdir())):
        return "photos"
    raise EmoDetError(f"{root}: not a dataset EmoDet reads (looked for data.yaml, {IMAGES_DIRNAME}/, labels.csv or "
                      "class folders)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", "--affectnet", dest="input", type=Path, default=SAMPLE_AFFECTNET,
                   help="dataset folder: AffectNet root, YOLO export or face photos (default: the synthetic sample)")
    p.add_argument("--split", nargs="+", default=None, choices=sorted(SPLIT_NAMES),
                   help="splits to convert (default: AffectNet training validation; every split of a YOLO export; "
                        "train val of face photos)")
    p.add_argument("--out", type=Path, default=DATA_DIR / "affectnet", help="output folder (default: %(default)s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 96], help="crop sizes in px")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7, help="8 keeps contempt")
    p.add_argument("--names", default=None, metavar="auto|FILE|a,b,c",
                   help="the dataset's own classes instead of the canonical table (YOLO exports and face photos): "
                        "`auto` = as it declares them (data.yaml names, class folders, labels.csv), a names file "
                        "(one per line, in order) or a comma list; every output, training and prediction then uses "
                        "them")
    p.add_argument("--color", choices=("gray", "rgb"), default="gray")
    p.add_argument("--box-scale", type=float, default=1.0, help="enlarge face boxes about their centre")
    p.add_argument("--align", action="store_true", help="eye-aligned crops from the 68 landmarks")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="face photos: share of identities held out as val (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--strict", action="store_true", help="exit with an error on any bad row")
    p.add_argument("--overwrite", action="store_true", help="replace a split converted with other options")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def dataset_names(spec: str | None, root: Path) -> tuple[str, ...] | None:
    """A dataset's own classes from --names (None: the canonical table), checked (labels.custom_names)."""
    if spec is None:
        return None
    shape = input_shape(root)
    if spec == "auto":
        if shape == "affectnet":
            raise EmoDetError("--names: AffectNet's classes are its codes; custom classes come with YOLO exports "
                              "and face photos")
        names = export_names(root) if shape == "yolo" else declared_names(root)
    elif Path(spec).is_file():
        names = [line.strip() for line in Path(spec).read_text().splitlines() if line.strip()]
    else:
        names = [n for n in spec.split(",") if n.strip()]
    try:
        return custom_names(names)
    except ValueError as exc:
        raise EmoDetError(f"--names {spec}: {exc}") from None


def options_from_args(args) -> ConvertOptions:
    extra = {} if args.workers is None else {"workers": args.workers}
    return ConvertOptions(sizes=tuple(args.sizes), n_classes=args.classes, color=args.color,
                          names=dataset_names(args.names, args.input),
                          box_scale=args.box_scale, align=args.align, formats=tuple(args.formats),
                          progress=not args.quiet, **extra)


def _photo_fit() -> BoxFit:
    from .face_boxes import load_fit
    return load_fit(PHOTO_BOX_FIT) if PHOTO_BOX_FIT.exists() else BoxFit()


def read_split(root: Path, shape: str, name: str, options: ConvertOptions, val_fraction: float = 0.2,
               stream: bool = False):
    """(our split name, ReadResult) of one split of a dataset of the given shape; with `stream`, an AffectNet CSV
    whose rows of each image follow each other comes as a RecordStream, read row by row while it converts (its
    memory does not grow with the CSV: AffectNet's training.csv has 414,799 rows)."""
    split = SPLIT_NAMES[name]
    if shape == "affectnet":
        csv_path = Path(root) / f"{name}.csv"
        if name not in SPLIT_CSV or not csv_path.exists():
            raise EmoDetError(f"{csv_path}: not found (expected AffectNet's {name}.csv beside {IMAGES_DIRNAME}/)")
        images = Path(root) / IMAGES_DIRNAME
        scan = scan_affectnet(csv_path, images)
        if stream and scan.adjacent:
            return split, RecordStream(row_runs(csv_path), StreamedRows(str(csv_path), str(images), options.n_classes),
                                       scan.digest, scan.images)
        if stream:
            print(f"{csv_path}: the rows of some images lie apart; reading the whole CSV first", file=sys.stderr)
        read = read_affectnet(csv_path, images, options.n_classes)
        read.digest = scan.digest
        return split, read
    if shape == "yolo":
        return split, read_yolo_export(root, split, options.n_classes, options.names)
    if split not in ("train", "val"):
        raise EmoDetError(f"{root}: face photos split into train and val by identity; no {name!r}")
    return split, read_face_photos(root, split, options.n_classes, val_fraction, fit=_photo_fit(),
                                   workers=options.workers, names=options.names)


def default_splits(root: Path, shape: str) -> list[str]:
    if shape == "yolo":
        return sorted(export_splits(root), key=["train", "val", "test"].index)
    return ["training", "validation"] if shape == "affectnet" else ["train", "val"]


def convert_dataset(root: Path, splits, out: Path, options: ConvertOptions, strict: bool = False,
                    overwrite: bool = False, val_fraction: float = 0.2):
    """Read and convert each split of a dataset of any shape; returns [(report, rejects, fixes)] per split."""
    shape = input_shape(root)
    results = []
    seen = set()
    for name in splits or default_splits(root, shape):
        if SPLIT_NAMES[name] in seen:
            continue
        seen.add(SPLIT_NAMES[name])
        split, read = read_split(root, shape, name, options, val_fraction, stream=not strict)
        if isinstance(read, RecordStream):
            report, rejects = convert_split(read, split, out, options, overwrite=overwrite)
            results.append((report, rejects, report.fixes))
            continue
        if strict and read.rejects:
            raise EmoDetError(f"{len(read.rejects)} bad row(s), first: {read.rejects[0].line()}")
        report, rejects = convert_split(read.records, split, out, options, read.rejects, overwrite, read.digest)
        if strict and len(rejects) > len(read.rejects):
            raise EmoDetError(f"bad image: {rejects[len(read.rejects)].line()}")
        results.append((report, rejects, read.fixes))
    if "table" in options.formats:
        finalize_table(out, options.label_names)
    return results


def convert_affectnet(root: Path, splits, out: Path, options: ConvertOptions, strict: bool = False,
                      overwrite: bool = False):
    """AffectNet's layout (kept for callers that know their input is AffectNet)."""
    return convert_dataset(root, splits, out, options, strict, overwrite)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from_args(args)
    t0 = time.perf_counter()
    print(f"reading {args.input} as {input_shape(args.input)}")
    results = convert_dataset(args.input, args.split, args.out, options, args.strict, args.overwrite,
                              args.val_fraction)
    for report, rejects, fixes in results:
        print(summary_text(report, options))
        for reason in sorted({f.reason for f in fixes}):
            print(f"  kept with a fix ({reason}): {sum(f.reason == reason for f in fixes)}")
        for r in rejects[:10]:
            print(f"    {r.line()}", file=sys.stderr)
        n_rejects = sum(report.rejects.values())
        if n_rejects > 10:
            print(f"    ... {n_rejects - 10} more: every skipped row is in "
                  f"{args.out / f'rejects_{report.split}.csv'}", file=sys.stderr)
    print(f"wrote {args.out.resolve()} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
