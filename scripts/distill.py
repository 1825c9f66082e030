"""`python -m scripts.distill --teachers A.pt B.pt --out soft.csv`: knowledge-distillation targets for the torch
classifier. The teachers' probabilities on the train split, softened by a temperature and averaged,
are mixed with the (hard) training labels; the CSV is what `scripts.torch_classifier --soft` reads.

Why offline: running a large teacher on every augmented batch would double the cost of an epoch on 2 cores;
one pass of the teachers over the 28,709 training faces (centre crop) takes about two minutes.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from converters.errors import EmoDetError, run_cli
from converters.settings import FER2013_TABLE
from scripts.classifiers import softmax
from scripts.torch_classifier import TTA, load_split, predict_logits, training_mix
from scripts.torch_models import load_checkpoint


def teacher_probabilities(checkpoints: list[Path], faces: np.ndarray, temperature: float = 1.0,
                          tta: str = "none") -> np.ndarray:
    """Mean over teachers of their temperature-softened probabilities, (N, C)."""
    probs = []
    for path in checkpoints:
        model, prep, _, _ = load_checkpoint(path)
        probs.append(softmax(predict_logits(model, faces, prep, tta), temperature))
    if len({p.shape[1] for p in probs}) != 1:
        raise EmoDetError("teachers disagree on the number of classes")
    return np.mean(probs, 0)


def distillation_targets(teacher: np.ndarray, labels: np.ndarray, hard_weight: float) -> np.ndarray:
    """hard_weight x one-hot label + (1 - hard_weight) x teacher distribution; rows sum to 1."""
    onehot = np.eye(teacher.shape[1], dtype=np.float64)[labels]
    return hard_weight * onehot + (1 - hard_weight) * teacher


def with_extra_labels(targets: np.ndarray, mix_labels: np.ndarray) -> np.ndarray:
    """The main table's distillation targets followed by one-hot rows for the faces the training mix adds after
    them (`--extra` tables, in `training_mix`'s order): the trainer's `--soft` reads one row a training face, and
    the FER2013 teachers have no opinion worth learning on real photos (they call most real neutral faces sad)."""
    extra = mix_labels[len(targets):]
    return np.concatenate([targets, np.eye(targets.shape[1], dtype=targets.dtype)[extra]])


def write_soft_csv(path: Path, targets: np.ndarray, note: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        f.write(f"# {note}\n")
        w = csv.writer(f)
        w.writerow(["row"] + [f"p{k}" for k in range(targets.shape[1])])
        w.writerows([i, *(f"{v:.5f}" for v in row)] for i, row in enumerate(targets))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", type=Path, nargs="+", required=True, help="EmoDet torch checkpoints (.pt)")
    p.add_argument("--data", type=Path, default=FER2013_TABLE)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--hard-weight", type=float, default=0.5, help="weight of the one-hot training label")
    p.add_argument("--tta", choices=TTA, default="none",
                   help="teacher views (ten-crop costs 10x: about 15 min for fervgg-m on 2 cores)")
    p.add_argument("--extra", nargs="+", default=[], metavar="H5[:REPEAT]",
                   help="the trainer's --extra tables: their faces follow with their own (hard) labels")
    p.add_argument("--extra-even", type=int, default=0, help="the trainer's --extra-even")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True, help="soft-target CSV for --soft")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for t in args.teachers:
        if not t.exists():
            raise EmoDetError(f"{t}: no such teacher checkpoint")
    faces, labels = load_split(args.data, "train")
    teacher = teacher_probabilities(args.teachers, faces, args.temperature, args.tta)
    targets = distillation_targets(teacher, labels, args.hard_weight)
    if args.extra:
        targets = with_extra_labels(targets, training_mix(args.data, args.extra, args.extra_even)[1])
    write_soft_csv(args.out, targets, f"teachers {' '.join(map(str, args.teachers))}, T={args.temperature}, "
                                      f"hard weight {args.hard_weight}")
    agree = float((teacher.argmax(1) == labels).mean())
    print(f"{len(labels)} training faces ({len(targets)} rows with the extras); teachers' top-1 on them {agree:.4f}; "
          f"mean teacher max-probability (T={args.temperature}) {teacher.max(1).mean():.3f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
