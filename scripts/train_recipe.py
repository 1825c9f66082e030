"""Train a shipped model from its recipe file (cfg/recipes/*.yaml): the data mix, initialisation and every
hyper-parameter that made it, so `--recipe FILE` reproduces it and a benchmark only calls it.

  python -m scripts.train_recipe --recipe cfg/recipes/real-det.yaml [--hours 0.02] [--name NAME]
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import yaml

from converters.errors import EmoDetError, run_cli
from converters.io import images_in
from converters.labels import class_names
from converters.settings import PROJECT_ROOT, RUNS_DIR
from converters.yolo_format import read_yolo_rows
from scripts.device import DEVICE_HELP


def load_recipe(path: Path) -> dict:
    try:
        recipe = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise EmoDetError(f"{path}: no such recipe (see cfg/recipes/)") from None
    except yaml.YAMLError as exc:
        raise EmoDetError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(recipe, dict):
        raise EmoDetError(f"{path}: a recipe is a YAML mapping (name, task, ...); this file holds "
                          f"{type(recipe).__name__}")
    required = {"detect": ("name", "task", "imgsz", "train", "val"), "classify": ("name", "task", "args"),
                "average": ("name", "task", "args")}
    if recipe.get("task") not in required:
        raise EmoDetError(f"{path}: task must be one of {', '.join(required)}")
    for key in required[recipe["task"]]:
        if key not in recipe:
            raise EmoDetError(f"{path}: recipe has no `{key}`")
    if recipe["task"] == "detect" and ("init" in recipe) == ("init_backbone" in recipe):
        raise EmoDetError(f"{path}: a detect recipe starts from `init` (a detector) or `init_backbone` (a classifier)")
    if recipe.get("input", "colour") not in ("colour", "grey"):
        raise EmoDetError(f"{path}: input must be colour or grey, not {recipe['input']!r}")
    if not 0 <= float(recipe.get("soften", 0)) <= 1:
        raise EmoDetError(f"{path}: soften is a share of the training images, 0 to 1, not {recipe['soften']}")
    return recipe


def options_argv(options: dict) -> list[str]:
    """A recipe's mapping written as command-line options: `--key value`, a list's values after one flag, a switch
    as its flag alone (true) or nothing (false)."""
    argv = []
    for key, value in options.items():
        if isinstance(value, bool):
            argv += [f"--{key}"] if value else []
            continue
        values = value if isinstance(value, list) else [value]
        argv += [f"--{key}", *map(str, values)]
    return argv


def args_argv(recipe: dict, out: Path) -> list[str]:
    """The command line of a recipe that runs one of our scripts (classify: scripts.torch_classifier; average:
    scripts.average, classifiers or detectors): its `args`, written as options."""
    return options_argv(recipe["args"]) + ["--out", str(out), "--quiet"]


DISTILL_OPTIONS = ("temperature", "hard-weight", "tta", "threads", "data", "extra", "extra-even")


def distill_argv(step: dict) -> list[str]:
    """scripts.distill's command line for a recipe's `distill` step (teachers' softened probabilities -> the
    soft-target CSV its `args.soft` names); the teachers and the CSV are paths from the project's root."""
    return ["--teachers", *(str(PROJECT_ROOT / t) for t in step["teachers"]),
            *options_argv({k: v for k, v in step.items() if k in DISTILL_OPTIONS}),
            "--out", str(PROJECT_ROOT / step["out"])]


def train_classifier_recipe(recipe: dict, name: str | None = None) -> Path:
    from scripts import torch_classifier
    out = RUNS_DIR / "torch" / (name or recipe["name"])
    for table in recipe.get("data", []):
        if not (PROJECT_ROOT / table).exists():
            raise EmoDetError(f"{PROJECT_ROOT / table}: missing; make it first (see the recipe's comment)")
    if step := recipe.get("distill"):
        missing = [t for t in step["teachers"] if not (PROJECT_ROOT / t).exists()]
        if missing:
            raise EmoDetError(f"teacher {missing[0]} missing: train it first (its recipe is named in this recipe)")
        if not (PROJECT_ROOT / step["out"]).exists():
            from scripts import distill
            distill.main(distill_argv(step))
    torch_classifier.main(args_argv(recipe, out))
    (out / "recipe.json").write_text(json.dumps(recipe, indent=1))
    return out


def average_recipe(recipe: dict, name: str | None = None) -> Path:
    """A classifier or detector averaged from two checkpoints (scripts.average, its `args` as options)."""
    from scripts import average
    out = RUNS_DIR / "torch" / (name or recipe["name"])
    average.main(args_argv(recipe, out))
    (out / "recipe.json").write_text(json.dumps(recipe, indent=1))
    return out


def _first_class(image: Path) -> int:
    rows = read_yolo_rows(image.with_suffix(".txt"))
    return int(rows[0, 0]) if len(rows) else -1


def entry_images(entry: dict, rng: random.Random) -> list[Path]:
    """The image paths one data entry contributes: its folder's images, capped per class (`per_class`) or in
    total (`limit`) by a seeded draw, listed `repeat` times."""
    folder = PROJECT_ROOT / entry["path"]
    if not folder.is_dir():
        raise EmoDetError(f"{folder}: missing; make it first (see the recipe's comment on this entry)")
    images = images_in(folder)
    if "per_class" in entry:
        by_class: dict[int, list[Path]] = {}
        for p in images:
            by_class.setdefault(_first_class(p), []).append(p)
        images = sorted(q for c, ps in by_class.items() for q in rng.sample(ps, min(len(ps), entry["per_class"])))
    if "limit" in entry and len(images) > entry["limit"]:
        images = sorted(rng.sample(images, entry["limit"]))
    return images * int(entry.get("repeat", 1))


def data_yaml(recipe: dict, folder: Path) -> Path:
    """Write train.txt, val.txt and data.yaml for the recipe's data mix into `folder`; returns data.yaml."""
    rng = random.Random(recipe.get("seed", 0))
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "val"):
        images = [p for e in recipe[split] for p in entry_images(e, rng)]
        (folder / f"{split}.txt").write_text("".join(f"{p}\n" for p in images))
        counts[split] = len(images)
    names = class_names(recipe.get("classes", 7))
    spec = dict(path=str(folder), train="train.txt", val="val.txt", nc=len(names), names=dict(enumerate(names)))
    (folder / "data.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    print(f"data mix: {counts['train']} training images, {counts['val']} validation images -> {folder}")
    return folder / "data.yaml"


def detector_init(recipe: dict, name: str) -> tuple[Path, int | None]:
    """(initial checkpoint, layers to freeze) of a detect recipe: its `init` checkpoint, or a fresh `model` with the
    backbone of the classifier `init_backbone` copied in (then `freeze` defaults to that whole backbone)."""
    if "init_backbone" not in recipe:
        init = PROJECT_ROOT / recipe["init"]
        if not init.exists():
            raise EmoDetError(f"{init}: the recipe's initial weights are missing")
        return init, recipe.get("freeze")
    from scripts import ultra
    backbone = PROJECT_ROOT / recipe["init_backbone"]
    if not backbone.exists():
        raise EmoDetError(f"{backbone}: no FER backbone classifier (see its model card for the command)")
    model = recipe.get("model") or ultra.backbone_detector(backbone)
    detector, report = ultra.transfer_backbone(backbone, model, recipe.get("classes", 7))
    init = ultra.save_detection_init(detector, class_names(recipe.get("classes", 7)),
                                     RUNS_DIR / "ultralytics" / f"{name}-init.pt")
    freeze = recipe.get("freeze")
    return init, report.layers() if freeze is None else freeze


def teacher_trainer(recipe: dict, train_list: Path):
    """The detector trainer whose class loss takes soft targets from the recipe's `distill` teacher (a FER
    classifier, `hard`: the share of the face's own label) for the faces of the train entries marked
    `distill: true` (scripts.det_distill.teacher_soft_rows); other faces keep their one-hot labels."""
    from scripts import det_distill
    spec = recipe["distill"]
    folders = [(PROJECT_ROOT / e["path"]).resolve() for e in recipe["train"] if e.get("distill")]
    if not folders or "teacher" not in spec:
        raise EmoDetError("recipe distill: name a `teacher` and mark train entries `distill: true`")
    listed = {Path(line) for line in train_list.read_text().splitlines() if line}
    images = [p for p in listed if p.resolve().parent in folders]
    rows, table = det_distill.teacher_soft_rows(images, PROJECT_ROOT / spec["teacher"], float(spec.get("hard", 0.5)),
                                                recipe.get("classes", 7), bool(spec.get("peak", False)))
    print(f"distillation: {len(table)} faces of {len(rows)} images take {spec['teacher']}'s soft targets")
    return det_distill.soft_trainer(rows, table)


def train_detector_recipe(recipe: dict, name: str | None = None, hours: float | None = None,
                          trainer=None) -> Path:
    """Train the recipe's detector; returns the run folder (recipe.json beside Ultralytics' args.yaml).
    `trainer`: an Ultralytics DetectionTrainer subclass (e.g. the distillation trainer of the scenes bench)."""
    from scripts import ultra
    name = name or recipe["name"]
    yaml_path = data_yaml(recipe, RUNS_DIR / "recipes" / name)
    init, freeze = detector_init(recipe, name)
    hyp = dict(recipe.get("hyp", {}))
    if recipe.get("distill"):
        trainer = teacher_trainer(recipe, yaml_path.parent / "train.txt")
    if recipe.get("input") == "grey" or recipe.get("soften"):
        trainer = ultra.photo_input_trainer(grey=recipe.get("input") == "grey", soften=float(recipe.get("soften", 0)),
                                            base=trainer)
    ultra.train_detector(yaml_path, init, imgsz=recipe["imgsz"], name=name, time=hours or recipe.get("hours"),
                         freeze=freeze, seed=recipe.get("seed", 0), project=RUNS_DIR / "ultralytics",
                         trainer=trainer, **hyp)
    run = RUNS_DIR / "ultralytics" / name
    (run / "recipe.json").write_text(json.dumps(recipe | {"freeze": freeze}, indent=1))
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_recipe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, required=True, help="cfg/recipes/<model>.yaml")
    p.add_argument("--name", default=None, help="run name (default: the recipe's)")
    p.add_argument("--hours", type=float, default=None, help="override the recipe's training time (a short try)")
    p.add_argument("--device", default=None, help=DEVICE_HELP.replace("default: auto", "default: the recipe's, else auto"))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    recipe = load_recipe(args.recipe)
    if args.device:  # where to train is the machine's business, not the recipe's
        key = "args" if recipe["task"] == "classify" else "hyp"
        recipe[key] = dict(recipe.get(key, {}), device=args.device)
    if recipe["task"] == "classify":
        run = train_classifier_recipe(recipe, args.name)
    elif recipe["task"] == "average":
        run = average_recipe(recipe, args.name)
    else:
        run = train_detector_recipe(recipe, args.name, args.hours)
    print(f"trained {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
