"""`make demo`: the whole pipeline on the embedded synthetic AffectNet-format sample, with a final table.

sample -> convert -> pretrain classifier (Ultralytics -cls) -> transfer backbone -> train detector ->
evaluate (classifier top-1/top-2; detector mAP@0.5 in Darknet and Ultralytics styles, P/R/F1) -> plots and
annotated images in one folder.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from converters.errors import run_cli
from converters.settings import RUNS_DIR


class Stages:
    """Prints each stage as it starts and how long it took."""

    def __init__(self):
        self.times: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.times[name] = time.perf_counter() - t0
        print(f"== {name}: {self.times[name]:.1f} s", flush=True)
        return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=RUNS_DIR / "demo", help="everything the demo writes")
    p.add_argument("--train-images", type=int, default=240)
    p.add_argument("--val-images", type=int, default=60)
    p.add_argument("--cls-epochs", type=int, default=30)
    p.add_argument("--det-epochs", type=int, default=55)  # 13 min on two threads, less than 40 took on one
    p.add_argument("--imgsz", type=int, default=256)
    p.add_argument("--det", default="v8n", help="detector family (v8n or 11n: both have a -cls twin)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=("ultralytics", "darknet"), default="ultralytics",
                   help="darknet: Darknet classifier -> partial -> detector; AlexeyAB's build (make darknet) when "
                        "present: yolov4-tiny, scored by `detector map` and by our evaluator side by side; else "
                        "pjreddie's: yolov3-tiny (single-threaded)")
    p.add_argument("--dk-det", choices=("v3-tiny", "v4-tiny"), default=None,
                   help="darknet detector (default: v4-tiny on AlexeyAB/Hank.ai builds, v3-tiny on pjreddie's)")
    p.add_argument("--dk-imgsz", type=int, default=None, help="darknet detector input (default 160)")
    p.add_argument("--dk-cls-epochs", type=float, default=None,
                   help="darknet classifier epochs over the crops (default: small 60, v4-tiny 10)")
    p.add_argument("--dk-det-epochs", type=float, default=20,
                   help="darknet detector epochs (>= 500 iterations are needed before batch-norm statistics settle)")
    return p


def ultralytics_chain(args, st: Stages, data: Path, out: Path):
    """Stages 3-6 with Ultralytics; returns (classifier metrics, detector metrics per style, detector label, predictions, engine)."""
    from converters.labels import class_names
    from eval.classification_report import write_outputs
    from scripts.scoring import evaluate_classifier
    from eval.detection_report import evaluate_folders, write_plots
    from eval.detection_io import read_yolo_predictions
    from scripts import ultra
    from scripts.scoring import write_scoring_predictions
    runs = out / "runs"
    cls_best = st.run("3 pretrain classifier (Ultralytics -cls, 64 px)", ultra.train_classifier, data / "crops" / "48",
                      args.det, args.cls_epochs, 64, 32, 2, args.seed, runs, "cls")
    model, report = st.run("4 transfer classifier backbone -> detector", ultra.transfer_backbone, cls_best, args.det, 7)
    print(report.summary())
    init = ultra.save_detection_init(model, class_names(7), runs / "det-init.pt")
    det_best = st.run(f"5 train detector ({args.det}, {args.imgsz} px)", ultra.train_detector,
                      data / "yolo" / "data.yaml", init, args.det_epochs, args.imgsz, 16, 2, args.seed, runs, "det")

    def evaluate():
        cls = evaluate_classifier(cls_best, data / "crops" / "48", "val", k=2)
        write_outputs(cls, out / "plots")
        val_images = sorted((data / "yolo" / "val").glob("*.jpg"))
        pred = write_scoring_predictions(det_best, val_images, out / "predictions", args.imgsz)
        dets = {s: evaluate_folders(data / "yolo" / "val", pred, s) for s in ("darknet", "ultralytics")}
        write_plots(dets["darknet"], out / "plots")
        return cls, dets, pred

    cls, dets, pred = st.run("6 evaluate on the validation split", evaluate)
    cls["model"] = f"{args.det}-cls 64 px"
    det_label = f"{args.det} {args.imgsz} px, initialised from the classifier backbone"
    return cls, dets, det_label, read_yolo_predictions(pred), f"Ultralytics {ultra.version()}"


def _two_detectors(yolo: Path, runs: Path, conv: Path, epochs: float, model: str, size: int):
    from scripts import darknet
    (main, scratch), together = darknet.side_by_side(
        lambda: darknet.train_detector(yolo, runs / "det", conv, epochs, size, 8, model=model),
        lambda: darknet.train_detector(yolo, runs / "det-scratch", None, epochs, size, 8, model=model))
    print("   the two detectors trained " + ("side by side (one core each)" if together else
                                             "one after the other (no second free core)"))
    return main, scratch


# sized to finish `make demo BACKEND=darknet` within 20 min on 2 cores (BENCHMARKS.md); the recipe trains v4-tiny at 256 px
DK_DEFAULTS = {"v3-tiny": dict(size=160, cls_epochs=60), "v4-tiny": dict(size=160, cls_epochs=10)}


def darknet_chain(args, st: Stages, data: Path, out: Path):
    """Stages 3-6 with the Darknet binary: classifier -> partial -> detector -> `detector valid` scored by our
    evaluator (and, on AlexeyAB/Hank.ai builds, `detector map` beside it). pjreddie's single-threaded build also
    trains the same detector from scratch on the second core, to show what the transfer buys."""
    from eval.detection_report import evaluate_folders, load_predictions, write_plots
    from scripts import darknet
    runs = out / "runs"
    engine = darknet.engine()
    print(f"   engine: {engine['label']}")
    multi = darknet.has_map()
    det_model = args.dk_det or ("v4-tiny" if multi else "v3-tiny")
    size = args.dk_imgsz or DK_DEFAULTS[det_model]["size"]
    cls_model, n_layers = darknet.backbone_of(det_model)
    cls_size = darknet.classifier_size(cls_model)
    cfg, weights = st.run(f"3 pretrain classifier (Darknet {cls_model}, {cls_size} px)", darknet.train_classifier,
                          data / "darknet" / "48", runs / "cls", args.dk_cls_epochs or DK_DEFAULTS[det_model]["cls_epochs"],
                          32, model=cls_model)
    template = darknet.DETECTOR_TEMPLATES[det_model]
    probe = darknet.shape_check_cfg(det_model, runs / "shape-check.cfg", size)
    conv = st.run(f"4 darknet partial ({n_layers} layers)", darknet.partial, cfg, weights,
                  runs / f"{cfg.stem}.conv.{n_layers}", n_layers, probe)
    if multi:  # OpenMP already uses every core: no free core for a scratch twin
        det_cfg, det_w = st.run(f"5 train detector ({template}, {size} px) from the classifier's {n_layers} layers",
                                darknet.train_detector, data / "yolo", runs / "det", conv, args.dk_det_epochs, size, 8,
                                model=det_model)
    else:  # the scratch detector shows what the transfer buys; on a second free core it costs no wall-clock time
        (det_cfg, det_w), (scratch_cfg, scratch_w) = st.run(
            f"5 train detectors ({template}, {size} px): from the classifier's {n_layers} layers + from scratch",
            _two_detectors, data / "yolo", runs, conv, args.dk_det_epochs, det_model, size)

    def evaluate():
        v = darknet.validate_classifier(cfg, weights, runs / "cls" / "classifier.data", runs / "cls")
        # AlexeyAB: the boxes its `detector map` scores (detector test), so both engines score the same detections
        results = (darknet.detector_test if multi else darknet.validate_detector)(det_cfg, det_w,
                                                                                 runs / "det" / "emotion.data",
                                                                                 runs / "det")
        names = data / "yolo" / "emotion.names"
        dets = {s: evaluate_folders(data / "yolo" / "val", results, s, names, map_view=multi)
                for s in ("darknet", "ultralytics")}
        if multi:
            dets["detector_map"] = darknet.detector_map(det_cfg, det_w, runs / "det" / "emotion.data", runs / "det")
        else:
            scratch = darknet.validate_detector(scratch_cfg, scratch_w, runs / "det-scratch" / "emotion.data",
                                                runs / "det-scratch")
            dets["darknet_scratch"] = evaluate_folders(data / "yolo" / "val", scratch, "darknet", names)
        write_plots(dets["darknet"], out / "plots")
        for log in ("cls/train-classifier", "det/train-detector"):
            darknet.training_curve(runs / f"{log}.log", runs / f"{log}.csv", out / "plots" / f"{log.split('/')[1]}.png")
        return v, dets, results

    v, dets, results = st.run("6 evaluate on the validation split", evaluate)
    cls = dict(top1=v["top1"], topk=v["topk"], n=v["n"],
               model=f"Darknet {cls_model} {cls_size} px (classifier valid)")
    det_label = f"{template} {size} px from the classifier's first {n_layers} layers"
    labels = [n for n in (data / "yolo" / "emotion.names").read_text().split()]
    pred = load_predictions(results, "auto", labels, data / "yolo" / "val")
    return cls, dets, det_label, pred, engine["label"]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import cv2
    import numpy as np
    from converters.convert import convert_affectnet
    from converters.labels import class_names
    from converters.pipeline import ConvertOptions, summary_text
    from converters.synthetic import generate_sample
    from eval.plots import annotated_image

    out = args.out.resolve()
    st = Stages()
    sample = out / "sample" / "affectnet"
    names = class_names(7)
    st.run("1 synthetic AffectNet-format sample", generate_sample, sample, args.train_images, args.val_images,
           args.seed, progress=False)
    data = out / "data"
    fmt = ("darknet", "yolo") if args.backend == "darknet" else ("crops", "yolo")
    opts = ConvertOptions(sizes=(48,), formats=fmt, progress=False)
    converted = st.run(f"2 convert (48 px {fmt[0]} set + YOLO set)", convert_affectnet, sample, ["training", "validation"],
                       data, opts)
    for report, _, _ in converted:
        print(summary_text(report, opts))
    chain = darknet_chain if args.backend == "darknet" else ultralytics_chain
    cls, dets, det_label, pred, engine = chain(args, st, data, out)
    for image in sorted((data / "yolo" / "val").glob("*.jpg"))[:6]:
        rows = pred.get(image.stem, np.zeros((0, 6)))
        rows = rows[rows[:, 1] >= 0.25]
        (out / "plots").mkdir(exist_ok=True)
        cv2.imwrite(str(out / "plots" / f"annotated_{image.stem}.jpg"), annotated_image(cv2.imread(str(image)), rows, names))
    summary = dict(classifier=dict(top1=cls["top1"], top2=cls["topk"], macro_f1=cls.get("macro_f1"), n=cls["n"],
                                   model=cls["model"]),
                   detector={s: {k: m[k] for k in ("map50", "map50_95", "precision", "recall", "f1", "conf", "tp",
                                                   "fp", "fn") if k in m}
                             for s, m in dets.items()},
                   seconds=st.times, engine=engine)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    d, u = dets["darknet"], dets["ultralytics"]
    print("\n" + "=" * 78)
    print(f"EmoDet demo (synthetic sample, validation split: {cls['n']} faces in {d['n_images']} images; {engine})")
    f1 = f"macro F1 {cls['macro_f1']:.3f}" if "macro_f1" in cls else "(Darknet's classifier valid reports top-k only)"
    print(f"  classifier  {cls['model']}:   top-1 {cls['top1']:.3f}   top-2 {cls['topk']:.3f}   {f1}")
    print(f"  detector    {det_label} (Darknet style: AUC AP, IoU>0.5, P/R at conf 0.25):")
    print(f"              mAP@0.5 {d['map50']:.3f}   mAP@0.5:0.95 {d['map50_95']:.3f}   P {d['precision']:.3f}   "
          f"R {d['recall']:.3f}   F1 {d['f1']:.3f}")
    print(f"              (Ultralytics style: mAP@0.5 {u['map50']:.3f}, P {u['precision']:.3f}, R {u['recall']:.3f} "
          f"at max-F1 conf {u['conf']:.2f}; annotated images show conf >= 0.25)")
    if x := dets.get("detector_map"):
        print(f"              Darknet's own `detector map` on the same weights and list: mAP@0.5 {x['map50']:.4f} "
              f"against ours {d['map50']:.4f}; TP/FP/FN at 0.25 {x.get('tp')}/{x.get('fp')}/{x.get('fn')} against "
              f"{d['tp']}/{d['fp']}/{d['fn']}")
    if s := dets.get("darknet_scratch"):
        print(f"              same detector from scratch, same iterations: mAP@0.5 {s['map50']:.3f} (Darknet style)")
    print("  timings     " + ", ".join(f"{k.split(' ', 1)[0]}: {v:.0f} s" for k, v in st.times.items())
          + f"; total {sum(st.times.values()) / 60:.1f} min")
    print(f"  outputs     {out / 'plots'} (confusion matrix, PR curve, annotated images), {out / 'summary.json'}")
    print("=" * 78)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
