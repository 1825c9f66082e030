"""Weight averaging of two classifier checkpoints: the arithmetic, the refusals, and a sweep that keeps the best
mix and TTA by the validation score and records the TTA as the model's default."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from converters.errors import EmoDetError
from scripts.average import averaged, main
from scripts.torch_classifier import selection_score


def _checkpoint(seed: int, arch: str = "fertiny") -> dict:
    from scripts.torch_models import build_model
    torch.manual_seed(seed)
    model, prep = build_model(arch, 7)
    return dict(model=model.state_dict(), arch=arch, classes=["neutral", "happy", "sad", "surprise", "fear",
                                                               "disgust", "anger"], preprocess=prep.__dict__)


def test_averaged_is_the_weighted_mean_of_floats_and_keeps_integer_counters():
    a, b = _checkpoint(0), _checkpoint(1)
    mid = averaged(a, b, 0.25)
    for k, v in b["model"].items():
        if v.is_floating_point():
            assert torch.allclose(mid["model"][k], 0.75 * a["model"][k] + 0.25 * v, atol=1e-6)
        else:
            assert torch.equal(mid["model"][k], v)
    assert all(torch.equal(averaged(a, b, 0.0)["model"][k], a["model"][k]) for k in a["model"]
               if a["model"][k].is_floating_point())


def test_averaging_different_architectures_is_refused():
    with pytest.raises(EmoDetError, match="cannot average a arch"):
        averaged(_checkpoint(0, "fertiny"), _checkpoint(0, "fervgg-c"), 0.5)


def test_selection_score_is_the_fine_tunes_mean_of_top1_and_macro_recall():
    logits = np.eye(3)[[0, 1, 2, 0]]  # predicts 0, 1, 2, 0
    assert selection_score(logits, np.array([0, 1, 2, 1]), None, None, None) == dict(val_top1=0.75, score=0.75)
    s = selection_score(logits, np.array([0, 1, 2, 1]), logits, np.array([0, 0, 2, 0]), np.array([0, 2]))
    assert s["extra_macro_recall"] == pytest.approx((2 / 3 + 1) / 2) and s["score"] == pytest.approx(
        (0.75 + s["extra_macro_recall"]) / 2)


def test_the_sweep_keeps_the_best_mix_and_tta_and_the_model_then_uses_that_tta(tmp_path):
    from scripts.classifiers import load_classifier
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "t.h5", "w") as f:  # a tiny table in the converter's layout
        for usage in ("Training", "PublicTest", "PrivateTest"):
            f[f"{usage}_pixel"] = rng.integers(0, 255, (40, 48 * 48), dtype=np.uint8)
            f[f"{usage}_label"] = np.arange(40) % 7
    for i in (0, 1):
        torch.save(_checkpoint(i), tmp_path / f"m{i}.pt")
    out = tmp_path / "soup"
    assert main(["--models", str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt"), "--mix", "0", "0.5", "1",
                 "--tta", "none", "flip", "--data", str(tmp_path / "t.h5"), "--out", str(out)]) == 0
    ck = torch.load(out / "best.pt", weights_only=False)
    best = max(ck["history"], key=lambda r: r["score"])
    assert len(ck["history"]) == 6 and ck["best_val"] == best["score"]
    assert ck["preprocess"]["tta"] == best["tta"] and "optimizer" not in ck
    assert load_classifier(out / "best.pt").tta == best["tta"]
    with pytest.raises(EmoDetError, match="shares lie in 0..1"):
        main(["--models", str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt"), "--mix", "2", "--out", str(out)])


def test_two_detectors_mix_at_one_share_keeping_the_fine_tunes_keys(tmp_path):
    from converters.settings import WEIGHTS_DIR
    base, tuned = WEIGHTS_DIR / "real-det-colour.pt", WEIGHTS_DIR / "real-det.pt"  # one architecture, 7 classes
    out = tmp_path / "mix"
    assert main(["--detector", "--models", str(base), str(tuned), "--mix", "0.25", "--out", str(out)]) == 0
    mixed, a, b = (torch.load(p, map_location="cpu", weights_only=False) for p in (out / "best.pt", base, tuned))
    sa, sb, sm = a["model"].state_dict(), b["model"].state_dict(), mixed["model"].state_dict()
    for k, v in sb.items():
        if v.is_floating_point():
            assert sm[k].dtype == v.dtype
            assert torch.allclose(sm[k].float(), 0.75 * sa[k].float() + 0.25 * v.float(), atol=2e-3, rtol=2e-3), k
        else:
            assert torch.equal(sm[k], v)
    assert not torch.equal(sm["model.28.cv3.0.0.conv.weight"], sb["model.28.cv3.0.0.conv.weight"])
    assert mixed["emodet_input"] == b["emodet_input"] and mixed["ema"] is None and mixed["optimizer"] is None
    with pytest.raises(EmoDetError, match="give one --mix"):
        main(["--detector", "--models", str(base), str(tuned), "--mix", "0.2", "0.5", "--out", str(out)])


def test_detectors_of_other_classes_are_not_averaged():
    import copy
    from converters.settings import WEIGHTS_DIR
    from scripts.average import averaged_detector
    a = torch.load(WEIGHTS_DIR / "real-det.pt", map_location="cpu", weights_only=False)
    b = copy.deepcopy(a)
    b["model"].yaml = dict(b["model"].yaml, nc=8)
    with pytest.raises(EmoDetError, match="different architectures"):
        averaged_detector(a, b, 0.5)
