"""A classifier made by averaging the weights of two checkpoints of one architecture: a model and its fine-tune
(a "model soup" along the line between them). The fine-tune that learned real face photos forgot some FER2013;
part-way along the line keeps most of both. Each mix (the fine-tune's share) and test-time augmentation is scored
on the validation splits with the fine-tune's own selection score, and the best is saved with its TTA recorded as
the model's default.

  python -m scripts.average --models weights/fer2013-vggc.pt runs/torch/faces-vggc-ft/best.pt \\
      --mix 0.5 0.6 0.7 0.8 1 --tta none flip --select-extra data/fitw/table/fer2013.h5 --out runs/torch/faces-vggc

With --detector, two Ultralytics detector checkpoints are mixed at one share, chosen beforehand on the validation
sets by `python -m scripts.bench_real --sweep` on each mix (a detector's selection scores photos, not a table).
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from converters.errors import EmoDetError, run_cli
from converters.settings import FER2013_TABLE

TTA_CHOICES = ("none", "flip", "tencrop")


def averaged(a: dict, b: dict, share: float) -> dict:
    """Checkpoint `b` with its floating-point tensors replaced by (1 - share) * a + share * b (batch-norm counters
    and other integers stay b's). Refuses checkpoints of different architectures or classes."""
    for key in ("arch", "classes"):
        if a.get(key) != b.get(key):
            raise EmoDetError(f"cannot average a {key} {a.get(key)!r} checkpoint with a {b.get(key)!r} one")
    return dict(b, model=mixed_tensors(a["model"], b["model"], share))


def mixed_tensors(a: dict, b: dict, share: float) -> dict:
    """State dict `b` with its floating-point tensors replaced by (1 - share) * a + share * b, in b's dtypes."""
    if a.keys() != b.keys():
        raise EmoDetError("cannot average checkpoints whose tensors differ")
    return {k: (a[k].float() * (1 - share) + v.float() * share).to(v.dtype) if v.is_floating_point() else v
            for k, v in b.items()}


def averaged_detector(a: dict, b: dict, share: float) -> dict:
    """Ultralytics checkpoint `b` (its class names, training arguments and our keys kept) with its network's
    weights mixed as `averaged` does; no EMA or optimizer state (a mix is not a training state to resume)."""
    if a["model"].yaml != b["model"].yaml:
        raise EmoDetError("cannot average detectors of different architectures or classes")
    model = copy.deepcopy(b["model"])
    model.load_state_dict(mixed_tensors(a["model"].state_dict(), b["model"].state_dict(), share))
    return dict(b, model=model, ema=None, optimizer=None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.average", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", type=Path, nargs=2, required=True, metavar=("BASE", "FINE_TUNE"),
                   help="two torch classifier checkpoints of one architecture and class list")
    p.add_argument("--mix", type=float, nargs="+", required=True,
                   help="the fine-tune's shares to try, 0 (BASE) to 1 (FINE_TUNE)")
    p.add_argument("--tta", nargs="+", choices=TTA_CHOICES, default=["none"], help="test-time augmentations to try")
    p.add_argument("--data", type=Path, default=FER2013_TABLE, help="table whose val split (PublicTest) selects")
    p.add_argument("--select-extra", type=Path, default=None,
                   help="also this table's val macro recall (classes with >= --min-support faces), as the fine-tune")
    p.add_argument("--min-support", type=int, default=50)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True, help="run folder: best.pt and sweep.json")
    p.add_argument("--quiet", action="store_true", help="(accepted from recipes; the sweep is a few lines anyway)")
    p.add_argument("--detector", action="store_true",
                   help="the models are Ultralytics detectors: write the one --mix given, unscored")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from scripts.torch_classifier import load_split, predict_logits, selection_score, supported_classes
    from scripts.torch_models import model_from_checkpoint
    if args.threads:
        torch.set_num_threads(args.threads)
    if any(not 0 <= m <= 1 for m in args.mix):
        raise EmoDetError(f"--mix: shares lie in 0..1, got {' '.join(map(str, args.mix))}")
    for path in args.models:
        if not path.exists():
            raise EmoDetError(f"{path}: no such checkpoint (its recipe names the command that makes it)")
    base, tuned = (torch.load(p, map_location="cpu", weights_only=False) for p in args.models)
    if args.detector:
        return write_detector_mix(base, tuned, args.mix, args.out)
    x_val, y_val = load_split(args.data, "val")
    x_sel = y_sel = classes = None
    if args.select_extra:
        x_sel, y_sel = load_split(args.select_extra, "val")
        classes = supported_classes(args.select_extra, args.min_support)
    sweep, best = [], None
    for share in args.mix:
        ck = averaged(base, tuned, share)
        model, prep, _, _ = model_from_checkpoint(ck, args.out)
        for tta in args.tta:
            logits_sel = predict_logits(model, x_sel, prep, tta) if args.select_extra else None
            row = dict(mix=share, tta=tta, **selection_score(predict_logits(model, x_val, prep, tta), y_val,
                                                             logits_sel, y_sel, classes))
            sweep.append(row)
            extra = f"  val macro recall {row['extra_macro_recall']:.4f}" if args.select_extra else ""
            print(f"mix {share:.2f} tta {tta:5s}: PublicTest top-1 {row['val_top1']:.4f}{extra}  "
                  f"selection {row['score']:.4f}", flush=True)
            if best is None or row["score"] > best[0]["score"]:
                best = row, ck
    row, ck = best
    args.out.mkdir(parents=True, exist_ok=True)
    ck = dict(ck, preprocess=dict(ck["preprocess"], tta=row["tta"]), best_val=row["score"], epoch=-1,
              history=sweep, args={k: str(v) for k, v in vars(args).items()})
    for key in ("optimizer", "scheduler", "rng"):  # a mix is not a training state to resume
        ck.pop(key, None)
    torch.save(ck, args.out / "best.pt")
    (args.out / "sweep.json").write_text(json.dumps(sweep, indent=1))
    print(f"best: mix {row['mix']:.2f} of {args.models[1]}, tta {row['tta']} (selection {row['score']:.4f}) "
          f"-> {args.out / 'best.pt'}")
    return 0


def write_detector_mix(base: dict, tuned: dict, mix: list[float], out: Path) -> int:
    import torch
    if len(mix) != 1:
        raise EmoDetError("--detector: give one --mix (choose it with python -m scripts.bench_real --sweep)")
    out.mkdir(parents=True, exist_ok=True)
    torch.save(averaged_detector(base, tuned, mix[0]), out / "best.pt")
    print(f"detector mix {mix[0]:.2f} of the fine-tune -> {out / 'best.pt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
