"""`make export`: ONNX copies of trained models. Torch FER classifiers carry their class names and
preprocessing in the ONNX metadata (so `eval/confusion.py --weights x.onnx` needs nothing else);
Ultralytics detectors/classifiers go through Ultralytics' own exporter."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from converters.errors import run_cli


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
    p.add_argument("--imgsz", type=int, default=256, help="Ultralytics models: input size")
    p.add_argument("--ship", default=None, help="torch classifier: also write weights/<SHIP>.pt (slim) and .onnx")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from scripts import ultra
    ultra.offline_env()
    for w in args.weights:
        ck = torch.load(w, map_location="cpu", weights_only=False)
        if isinstance(ck, dict) and "arch" in ck:
            if args.ship:
                from converters.settings import WEIGHTS_DIR
                w = slim_checkpoint(w, WEIGHTS_DIR / f"{args.ship}.pt")
            out = export_torch_classifier(w)
            faces = np.random.default_rng(0).integers(0, 255, (8, 48, 48)).astype(np.uint8)
            print(f"{w} -> {out} (max |logit| difference on 8 faces: {max_abs_difference(w, out, faces):.2e})")
        else:
            print(f"{w} -> {ultra.export_onnx(w, args.imgsz)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
