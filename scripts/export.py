"""`make export`: ONNX copies of trained models. Torch FER classifiers carry their class names and
preprocessing in the ONNX metadata (so `eval/confusion.py --weights x.onnx` needs nothing else);
Ultralytics detectors/classifiers go through Ultralytics' own exporter."""
from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.io import images_in
from scripts.onnx_graph import faster_detector
from scripts.ultra import set_onnx_metadata


def export_torch_classifier(weights: Path, out: Path | None = None, opset: int = 17) -> Path:
    """ONNX of an EmoDet torch checkpoint (input (N, 1, S, S) normalised floats, output logits)."""
    import onnx
    import torch
    from scripts.torch_models import load_checkpoint
    model, prep, names, arch = load_checkpoint(weights)
    out = Path(out or Path(weights).with_suffix(".onnx"))
    dummy = torch.zeros(1, prep.channels, prep.input_size, prep.input_size)
    torch.onnx.export(model, dummy, str(out), input_names=["faces"], output_names=["logits"], opset_version=opset,
                      dynamic_axes={"faces": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    proto = onnx.load(str(out))
    for key, value in (("names", json.dumps(names)), ("preprocess", json.dumps(prep.__dict__)), ("arch", arch)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    return out


CALIBRATIONS = ("minmax", "entropy", "percentile")  # how int8 ranges are read from the calibration data


def calibration_options(method: str) -> dict:
    """quantize_static's options for a calibration method: "minmax" (each tensor's whole range), "entropy" (the
    range whose int8 histogram loses least information) or "percentile" ("percentile" alone: 99.999; or
    "percentile:99.99": the range holding that share of the values, outliers clipped)."""
    from onnxruntime.quantization import CalibrationMethod
    name, _, value = method.partition(":")
    if name not in CALIBRATIONS or (value and name != "percentile"):
        raise EmoDetError(f"calibration {method!r}: use one of {', '.join(CALIBRATIONS)} (percentile:99.99 sets the "
                          f"share kept)")
    if name == "percentile":
        try:
            share = float(value or 99.999)
        except ValueError:
            share = -1.0
        if not 90 < share <= 100:
            raise EmoDetError(f"calibration {method!r}: the percentile is a share of the values, 90-100")
        return {"calibrate_method": CalibrationMethod.Percentile, "extra_options": {"CalibPercentile": share}}
    return {"calibrate_method": CalibrationMethod.MinMax if name == "minmax" else CalibrationMethod.Entropy}


@contextmanager
def histograms_one_input_at_a_time():
    """While it lasts, ONNX Runtime's histogram calibrators (entropy, percentile) take the calibration inputs one
    at a time. Why: they stack every input's activations into one array before the histogram, which fails for a
    detector calibrated through passes of different input sizes (and holds all of them in memory at once); given
    one input per call, each input's histogram is merged into the running one (the collector's own merge)."""
    from onnxruntime.quantization.calibrate import HistogramCalibrater
    collect = HistogramCalibrater.collect_data

    class One:
        def __init__(self, item):
            self.item = item

        def get_next(self):
            item, self.item = self.item, None
            return item

    def one_at_a_time(self, reader):
        while (item := reader.get_next()) is not None:
            collect(self, One(item))

    HistogramCalibrater.collect_data = one_at_a_time
    try:
        yield
    finally:
        HistogramCalibrater.collect_data = collect


def quantized_copy(onnx_path: Path, batches: list[np.ndarray], out: Path, exclude: tuple[str, ...] = (),
                   calibration: str = "minmax") -> Path:
    """Static int8 (QDQ, per-channel) copy of an ONNX model, calibrated on `batches` (inputs as the model takes
    them, from training data: never the split it is scored on; ranges read by `calibration`: calibration_options),
    with the nodes named in `exclude` kept in float. CPUs with VNNI run int8 convolutions several times faster; the
    metadata (names, preprocessing, input) is carried over so every loader treats it like the float model."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    source = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in source.metadata_props}
    name = source.graph.input[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: np.ascontiguousarray(batch)}

    out = Path(out)
    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    with histograms_one_input_at_a_time():
        quantize_static(str(prepared), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude), **calibration_options(calibration))
    prepared.unlink()
    set_onnx_metadata(out, meta)
    return out


def int8_name(onnx_path: Path) -> Path:
    return Path(onnx_path).with_name(Path(onnx_path).stem + "-int8.onnx")


def quantize_classifier(onnx_path: Path, faces: np.ndarray, out: Path | None = None,
                        calibration: str = "minmax") -> Path:
    """quantized_copy of an exported FER classifier, calibrated on `faces` (uint8 (N, S, S) training faces)."""
    import onnx
    from scripts.torch_classifier import centre_crop
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    prep = json.loads(meta["preprocess"])
    x = (faces.astype(np.float32) / 255.0 - prep["mean"]) / prep["std"]
    x = centre_crop(x[:, None], prep["input_size"])
    return quantized_copy(onnx_path, np.array_split(x, max(1, len(x) // 32)), out or int8_name(onnx_path),
                          calibration=calibration)


def detector_head_tail(onnx_path: Path) -> tuple[str, ...]:
    """The nodes of an Ultralytics detector's last module that decode boxes and scores (DFL, anchors, strides,
    sigmoid, concatenations), left out of int8: box coordinates in pixels and the scores' last digits are what
    the mAP is made of, and those few nodes cost nothing next to the convolutions."""
    import onnx
    names = [n.name for n in onnx.load(str(onnx_path)).graph.node]
    last = max(int(n.split("/")[1].split(".")[1]) for n in names if n.startswith("/model."))
    return tuple(n for n in names if n.startswith(f"/model.{last}/") and "/cv" not in n)


def quantize_detector(onnx_path: Path, images: list[Path], out: Path | None = None,
                      main_size: int | None = None, calibration: str = "minmax") -> Path:
    """quantized_copy of an exported detector, calibrated on `images` (training photos) fed as predict feeds them:
    through every pass the detector runs (its main size, or `main_size`, and its extra passes, whose shrunk photos
    on a grey margin have activations of their own). `main_size` calibrates the main pass at another size than the
    one it runs at: the activation ranges differ a little with the size, and which range reads the validation
    photos better is measured, not assumed."""
    import cv2
    from scripts.detectors import Pass, load_detector
    det = load_detector(onnx_path, threads=1)
    batches = []
    for path in images:
        image = cv2.imread(str(path))
        if image is None:
            raise EmoDetError(f"{path}: not an image (calibration)")
        # crop passes read parts of these same photos near their own resolution: the whole-photo passes cover them
        passes = ((main_size or det.imgsz, 1.0), *((p.size, p.fill) for p in det.extra_passes if isinstance(p, Pass)))
        batches.extend(det.network_input(image, size, fill)[0] for size, fill in passes)
    out = quantized_copy(onnx_path, batches, out or int8_name(onnx_path), detector_head_tail(onnx_path), calibration)
    return faster_detector(out, det.grey)


def slim_checkpoint(src: Path, dst: Path) -> Path:
    """The checkpoint without optimizer/scheduler state: what users load (and what fits in git)."""
    import torch
    ck = torch.load(src, map_location="cpu", weights_only=False)
    keep = {k: ck[k] for k in ("model", "arch", "classes", "preprocess", "epoch", "args", "best_val", "history") if k in ck}
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(keep, dst)
    return dst


def max_abs_difference(weights: Path, onnx_path: Path, faces: np.ndarray) -> float:
    """Largest |logit| difference between the torch checkpoint and its ONNX export on the same faces."""
    from scripts.classifiers import load_classifier
    a = load_classifier(weights).scores(faces)
    b = load_classifier(onnx_path).scores(faces)
    return float(np.abs(a - b).max())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.export", description=__doc__)
    p.add_argument("weights", type=Path, nargs="+", help="EmoDet torch .pt or Ultralytics .pt files")
    p.add_argument("--imgsz", type=int, default=None,
                   help="Ultralytics models: input size (default: the size it was trained at, from its checkpoint); "
                        "with --extra-passes also recorded in the .pt and the .onnx as the main pass's size")
    p.add_argument("--extra-passes", "--extra-sizes", nargs="+", default=None, metavar="PX[:FILL[:FROM]]|cropPX[:CONTEXT[:TO]]",
                   help="Ultralytics detectors: a second opinion from another input (PX:FILL:FROM: the photo's long "
                        "side fills that share of a PX input, judging the main pass's boxes from FROM of the photo "
                        "up; 128:0.67:0.45 shows a large face at a size a small-face backbone knows), or from crops "
                        "(cropPX:CONTEXT:TO: each face up to TO of the photo cut out CONTEXT times its size and read "
                        "at PX; crop64:1.2:0.3 shows a small face near its own resolution); recorded in "
                        "the .pt and its (dynamic) .onnx, so predict, eval and the app use them")
    p.add_argument("--ship", default=None, help="also write weights/<SHIP>.pt (torch classifiers: slim) and its .onnx")
    p.add_argument("--int8", action="store_true",
                   help="also write <name>-int8.onnx, calibrated on the training data of --calib")
    p.add_argument("--calib-imgsz", type=int, default=None,
                   help="detectors: the main pass's size for --int8 calibration (default: the size it runs at)")
    p.add_argument("--calib-method", default="minmax", metavar="|".join(CALIBRATIONS),
                   help="how --int8 reads each tensor's range from the calibration data: minmax (the "
                        "whole range, default), entropy, or percentile[:SHARE] (outliers beyond SHARE, default "
                        "99.999, clipped)")
    p.add_argument("--calib", type=Path, default=None,
                   help="classifiers: HDF5 table whose Training faces calibrate --int8 (default: the FER2013 "
                        "conversion); detectors: a folder of training photos or a list of them (e.g. a recipe's "
                        "runs/recipes/<name>/train.txt), of which 64 are drawn")
    return p


def calibration_faces(table: Path, n: int = 1024, seed: int = 0) -> np.ndarray:
    """`n` random Training faces (uint8 (n, 48, 48)) of a converter-written HDF5 table."""
    import h5py
    if not Path(table).exists():
        raise EmoDetError(f"{table}: no HDF5 table to calibrate on (make convert-fer2013, or pass --calib)")
    with h5py.File(table, "r") as f:
        pixels = f["Training_pixel"]
        idx = np.sort(np.random.default_rng(seed).choice(len(pixels), min(n, len(pixels)), replace=False))
        return pixels[idx].reshape(-1, 48, 48)


def calibration_images(source: Path | None, n: int = 64, seed: int = 0) -> list[Path]:
    """`n` training photos drawn (seeded) from a folder of images or a text file listing them, one per line."""
    import random
    if source is None:
        raise EmoDetError("--int8 for a detector: name its training photos with --calib FOLDER or --calib LIST.txt")
    if Path(source).is_dir():
        paths = images_in(source)
    elif Path(source).is_file():
        paths = sorted({Path(line.strip()) for line in Path(source).read_text().splitlines() if line.strip()})
    else:
        raise EmoDetError(f"{source}: no such folder or list of training photos")
    if not paths:
        raise EmoDetError(f"{source}: no images to calibrate on")
    return sorted(random.Random(seed).sample(paths, min(n, len(paths))))


def _trained_imgsz(checkpoint: dict) -> int:
    """The input size an Ultralytics checkpoint was trained at (256 if it does not say)."""
    size = (checkpoint.get("train_args") or {}).get("imgsz") if isinstance(checkpoint, dict) else None
    return int(size[0] if isinstance(size, (list, tuple)) else size) if size else 256


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    calibration_options(args.calib_method)  # a misspelt method is refused before any export
    import torch
    from scripts import ultra
    from scripts.ultra_env import offline_env
    offline_env()
    for w in args.weights:
        ck = torch.load(w, map_location="cpu", weights_only=False)
        if isinstance(ck, dict) and "arch" in ck:
            if args.ship:
                from converters.settings import WEIGHTS_DIR
                w = slim_checkpoint(w, WEIGHTS_DIR / f"{args.ship}.pt")
            out = export_torch_classifier(w)
            faces = np.random.default_rng(0).integers(0, 255, (8, 48, 48)).astype(np.uint8)
            print(f"{w} -> {out} (max |logit| difference on 8 faces: {max_abs_difference(w, out, faces):.2e})")
            if args.int8:
                from converters.settings import FER2013_TABLE
                calib = calibration_faces(args.calib or FER2013_TABLE)
                int8 = quantize_classifier(out, calib, calibration=args.calib_method)
                print(f"{out} -> {int8} (int8, calibrated on {len(calib)} training faces, {args.calib_method})")
        else:
            if args.ship:
                import shutil
                from converters.settings import WEIGHTS_DIR
                w = Path(shutil.copyfile(w, WEIGHTS_DIR / f"{args.ship}.pt"))
            if args.extra_passes:
                from scripts.detectors import IMGSZ_KEY, SCALES_KEY, parse_passes, passes_text
                sizes = passes_text(parse_passes(args.extra_passes, "--extra-passes"))
                carried = {SCALES_KEY: sizes} | ({IMGSZ_KEY: str(args.imgsz)} if args.imgsz else {})
                torch.save(dict(ck, **carried), w)  # the .pt carries them too
                out = ultra.export_onnx(w, args.imgsz or _trained_imgsz(ck), dynamic=True)
                set_onnx_metadata(out, carried)
                size = f"main pass {args.imgsz} px, " if args.imgsz else ""
                print(f"{w} -> {out} (dynamic input; {size}extra passes {sizes} recorded in both files)")
            else:
                out = ultra.export_onnx(w, args.imgsz or _trained_imgsz(ck))
                print(f"{w} -> {out}")
            if args.int8:
                images = calibration_images(args.calib)
                at = f" at {args.calib_imgsz} px" if args.calib_imgsz else ""
                int8 = quantize_detector(out, images, main_size=args.calib_imgsz, calibration=args.calib_method)
                print(f"{out} -> {int8} (int8, calibrated on {len(images)} training photos{at}, "
                      f"{args.calib_method})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
