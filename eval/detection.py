"""Detection evaluation: mAP@0.5, mAP@0.5:0.95, per-class AP, and P/R/F1/TP/FP/FN/avg IoU at a confidence,
in the convention you name (--style darknet | ultralytics | coco; see shared/ENGINES.md).

  python eval/detection.py --gt data/affectnet/yolo/val --pred runs/predict/labels --style ultralytics
  python eval/detection.py --gt data/affectnet/yolo/valid.txt --pred results/ --format darknet --names emotion.names
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from converters.errors import EmoDetError, run_cli
from converters.io import images_in, write_json
from eval.ap import INTERPOLATIONS
from eval.detection_metrics import STYLES
from eval.detection_report import evaluate_folders, report_text, write_plots


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python eval/detection.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", type=Path, default=None, help="YOLO label folder, or a list file of image paths")
    p.add_argument("--pred", type=Path, default=None,
                   help="folder of YOLO+conf .txt files, or of Darknet comp4_det_test_<class>.txt files")
    p.add_argument("--weights", type=Path, default=None,
                   help="a trained detector (Ultralytics .pt/.onnx, or Darknet .weights with --cfg): predict first")
    p.add_argument("--data", type=Path, default=None,
                   help="with --weights: data.yaml (Ultralytics) or emotion.data (Darknet); evaluates its val split")
    p.add_argument("--cfg", type=Path, default=None, help="with Darknet .weights: the detector's .cfg")
    p.add_argument("--imgsz", type=int, default=None,
                   help="with --weights: inference size (default: the size its weights carry: the one chosen "
                        "for it, else its training size)")
    p.add_argument("--format", choices=("auto", "yolo", "darknet"), default="auto")
    p.add_argument("--names", type=Path, default=None, help="class names file (default: canonical 7/8 classes)")
    p.add_argument("--style", choices=sorted(STYLES), default="darknet")
    p.add_argument("--interp", choices=INTERPOLATIONS, default=None, help="override the style's AP interpolation")
    p.add_argument("--conf", type=float, default=0.25, help="confidence for P/R/F1 (styles with a fixed threshold)")
    p.add_argument("--map-view", action="store_true",
                   help="score Darknet output as AlexeyAB's `detector map` does (its boxes: `detector test` at conf "
                        "0.005, NMS 0.45, or `detector valid` output cut so; TP/FP/FN in its box order); on by "
                        "itself with --darknet-map")
    p.add_argument("--darknet-map", action="store_true",
                   help="with Darknet --weights on AlexeyAB/Hank.ai builds: also run `detector map` on the same list "
                        "and print both engines' numbers side by side")
    p.add_argument("--json", type=Path, default=None, help="write all metrics as JSON")
    p.add_argument("--plots", type=Path, default=None, help="folder for pr_curve.png and detection_confusion.png")
    return p


def predictions_from_weights(args) -> tuple[Path, Path]:
    """(ground-truth folder, prediction folder) after running --weights on the ground-truth images."""
    if Path(args.weights).suffix == ".weights":  # Darknet: `detector valid` on the .data file's valid list
        from converters.darknet_files import read_data_file
        from scripts import darknet
        if not (args.cfg and args.data and Path(args.data).suffix == ".data"):
            raise EmoDetError("Darknet .weights need --cfg DETECTOR.cfg and --data emotion.data")
        run = Path(args.pred or Path(args.weights).parent / "eval")
        entries = read_data_file(args.data)
        data_file = darknet.data_file_copy(Path(args.data), run / "eval.data", results=run / "results")
        if (args.map_view or args.darknet_map) and darknet.has_map():  # the very boxes `detector map` scores
            results = darknet.detector_test(Path(args.cfg), Path(args.weights), data_file, run)
        else:
            results = darknet.validate_detector(Path(args.cfg), Path(args.weights), data_file, run)
        return Path(args.gt or entries["valid"]), results
    from scripts.scoring import write_scoring_predictions
    gt = args.gt
    if gt is None and args.data:
        import yaml
        spec = yaml.safe_load(Path(args.data).read_text())
        gt = Path(spec.get("path", Path(args.data).parent)) / spec["val"]
    if gt is None or not Path(gt).is_dir():
        raise EmoDetError("--weights needs --gt FOLDER (labels beside images) or --data data.yaml")
    images = images_in(gt)
    out = args.pred
    if out is None:  # a folder of its own per weights and ground truth, emptied first: runs never mix files
        import shutil
        out = Path(args.json or args.weights).with_suffix("").parent / f"pred_{Path(args.weights).stem}_{Path(gt).name}"
        shutil.rmtree(out, ignore_errors=True)
    return Path(gt), write_scoring_predictions(args.weights, images, Path(out), args.imgsz)


def darknet_cross_check(args, ours) -> dict:
    """AlexeyAB's `detector map` on the same weights and list, printed beside our Darknet-style numbers."""
    from scripts import darknet
    if not (args.weights and Path(args.weights).suffix == ".weights"):
        raise EmoDetError("--darknet-map needs Darknet --weights with --cfg and --data")
    run = Path(args.pred).parent  # predictions_from_weights' folder: eval.data and results/
    theirs = darknet.detector_map(Path(args.cfg), Path(args.weights), run / "eval.data", run)
    print(f"detector map ({theirs['engine']}): mAP@0.5 {theirs['map50']:.4f} against ours {ours['map50']:.4f} "
          f"(difference {ours['map50'] - theirs['map50']:+.4f}); at conf 0.25 TP/FP/FN {theirs.get('tp')}/"
          f"{theirs.get('fp')}/{theirs.get('fn')} against {ours['tp']}/{ours['fp']}/{ours['fn']}")
    return theirs


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.weights:
        args.gt, args.pred = predictions_from_weights(args)
    elif args.gt is None or args.pred is None:
        raise EmoDetError("give --gt and --pred, or --weights with --gt/--data")
    m = evaluate_folders(args.gt, args.pred, args.style, args.names, args.conf, args.interp, args.format,
                         map_view=args.map_view or args.darknet_map)
    print(report_text(m))
    if args.darknet_map:
        m["darknet_map"] = darknet_cross_check(args, m)
    if args.plots:
        for p in write_plots(m, args.plots):
            print(f"plot: {p}")
    if args.json:
        print(f"json: {write_json(args.json, m.to_json())}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
