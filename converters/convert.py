"""`make convert`: AffectNet CSV(s) -> crops, Darknet classifier set, FER2013-style table, YOLO detection set."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .affectnet import IMAGES_DIRNAME, SPLIT_CSV, read_affectnet
from .errors import EmoDetError, run_cli
from .labels import class_names
from .writers import finalize_table
from .pipeline import FORMATS, ConvertOptions, convert_split, summary_text
from .settings import DATA_DIR, SAMPLE_AFFECTNET


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.convert", description=__doc__)
    p.add_argument("--affectnet", type=Path, default=SAMPLE_AFFECTNET,
                   help="AffectNet root holding <split>.csv and Manually_Annotated_Images/ (default: the synthetic sample)")
    p.add_argument("--split", nargs="+", default=["training", "validation"], choices=sorted(SPLIT_CSV),
                   help="CSV(s) to convert: training -> train, validation -> val")
    p.add_argument("--out", type=Path, default=DATA_DIR / "affectnet", help="output folder (default: %(default)s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[48, 96], help="crop sizes in px")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7, help="8 keeps contempt")
    p.add_argument("--color", choices=("gray", "rgb"), default="gray")
    p.add_argument("--box-scale", type=float, default=1.0, help="enlarge face boxes about their centre")
    p.add_argument("--align", action="store_true", help="eye-aligned crops from the 68 landmarks")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--strict", action="store_true", help="exit with an error on any bad row")
    p.add_argument("--overwrite", action="store_true", help="replace a split converted with other options")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def options_from_args(args) -> ConvertOptions:
    extra = {} if args.workers is None else {"workers": args.workers}
    return ConvertOptions(sizes=tuple(args.sizes), n_classes=args.classes, color=args.color,
                          box_scale=args.box_scale, align=args.align, formats=tuple(args.formats),
                          progress=not args.quiet, **extra)


def convert_affectnet(root: Path, splits, out: Path, options: ConvertOptions, strict: bool = False,
                      overwrite: bool = False):
    """Read and convert each AffectNet split CSV; returns [(report, rejects, fixes)] per split."""
    results = []
    for name in splits:
        csv_path = Path(root) / f"{name}.csv"
        if not csv_path.exists():
            raise EmoDetError(f"{csv_path}: not found (expected AffectNet's {name}.csv beside {IMAGES_DIRNAME}/)")
        read = read_affectnet(csv_path, Path(root) / IMAGES_DIRNAME, options.n_classes)
        if strict and read.rejects:
            raise EmoDetError(f"{len(read.rejects)} bad row(s), first: {read.rejects[0].line()}")
        report, rejects = convert_split(read.records, SPLIT_CSV[name], out, options, read.rejects, overwrite)
        if strict and len(rejects) > len(read.rejects):
            raise EmoDetError(f"bad image: {rejects[len(read.rejects)].line()}")
        results.append((report, rejects, read.fixes))
    if "table" in options.formats:
        finalize_table(out, class_names(options.n_classes))
    return results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from_args(args)
    t0 = time.perf_counter()
    results = convert_affectnet(args.affectnet, args.split, args.out, options, args.strict, args.overwrite)
    for report, rejects, fixes in results:
        print(summary_text(report, options))
        if fixes:
            print(f"  boxes clipped to the image: {len(fixes)}")
        for r in rejects[:10]:
            print(f"    {r.line()}", file=sys.stderr)
        if len(rejects) > 10:
            print(f"    ... {len(rejects) - 10} more", file=sys.stderr)
    print(f"wrote {args.out.resolve()} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
