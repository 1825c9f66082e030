"""Every recipe file loads, names files that exist or that a make target writes, and its options are ones the
trainer knows (a typo in a recipe fails here, not an hour into a training)."""
from pathlib import Path

import pytest

from converters.errors import EmoDetError
from converters.settings import CFG_DIR, PROJECT_ROOT
from scripts.train_recipe import args_argv, load_recipe

RECIPES = sorted((CFG_DIR / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    shipped = {p.stem for p in (PROJECT_ROOT / "weights").glob("*.md")} - {"README", "haar-box-fit"}
    assert {p.stem for p in RECIPES} >= shipped  # every shipped model has its recipe


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_a_recipe_is_complete_and_its_options_are_known(path):
    recipe = load_recipe(path)
    if recipe["task"] == "classify":
        from scripts.torch_classifier import build_parser
        args = build_parser().parse_args(args_argv(recipe, Path("/tmp/x")))
        assert args.model == recipe["args"]["model"]
        if step := recipe.get("distill"):
            from scripts.distill import build_parser as distill_parser
            from scripts.train_recipe import distill_argv
            d = distill_parser().parse_args(distill_argv(step))
            assert str(d.out).endswith(recipe["args"]["soft"])  # the recipe trains on what its step writes
            assert (d.extra, d.extra_even) == (args.extra or [], args.extra_even)  # one row a face of its mix
            for teacher in step["teachers"]:
                assert _made_here(teacher), teacher
    elif recipe["task"] == "average":
        from scripts.average import build_parser
        args = build_parser().parse_args(args_argv(recipe, Path("/tmp/x")))
        assert all(_made_here(str(m)) for m in args.models) and all(0 <= m <= 1 for m in args.mix)
    else:
        from scripts.ultra import defaults
        known = set(defaults("detect")) | {"cls", "cls_pw", "scale", "close_mosaic", "lr0", "batch", "workers",
                                           "epochs", "mosaic", "fliplr", "hsv_s", "plots"}
        assert set(recipe.get("hyp", {})) <= known
        init = recipe.get("init") or recipe["init_backbone"]
        assert Path(init).suffix == ".pt" and _made_here(init), init
        assert all("path" in e for e in recipe["train"] + recipe["val"])
        if step := recipe.get("distill"):  # a shipped teacher, and faces that take its targets
            assert _made_here(step["teacher"]) and any(e.get("distill") for e in recipe["train"])


def _made_here(checkpoint: str) -> bool:
    """A shipped model, or the run of another recipe here (which names the command that makes it)."""
    parts = Path(checkpoint).parts
    return (PROJECT_ROOT / checkpoint).exists() and parts[0] == "weights" or \
        (parts[:2] in {("runs", "torch"), ("runs", "ultralytics")} and parts[2] in {p.stem for p in RECIPES})


def test_a_recipe_without_its_task_fields_is_refused(tmp_path):
    (tmp_path / "r.yaml").write_text("name: x\ntask: classify\n")
    with pytest.raises(EmoDetError, match="no `args`"):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("name: x\ntask: segment\n")
    with pytest.raises(EmoDetError, match="task must be one of"):
        load_recipe(tmp_path / "r.yaml")


def test_an_empty_or_broken_recipe_file_is_refused_in_one_line(tmp_path):
    for text, why in (("", "a YAML mapping"), ("- a\n- b\n", "a YAML mapping"), ("name: [x\n", "not YAML")):
        (tmp_path / "r.yaml").write_text(text)
        with pytest.raises(EmoDetError, match=why):
            load_recipe(tmp_path / "r.yaml")
