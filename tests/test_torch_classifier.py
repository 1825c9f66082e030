"""The torch classifier's training loop: multi-scale augmentation and a tiny run, on made-up faces."""
import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scripts.torch_classifier import augment, class_balance_weights, epoch_order, main
from scripts.torch_models import Preprocess


def _smooth_faces(n: int = 4) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    return torch.stack([torch.sin(3 * xx + k) * torch.cos(2 * yy - k) for k in range(n)])[:, None]


def test_default_size_is_the_input_size():
    prep, x = Preprocess(), _smooth_faces()
    a = augment(x, prep, torch.Generator().manual_seed(1))
    b = augment(x, prep, torch.Generator().manual_seed(1), prep.input_size)
    assert a.shape == (4, 1, 40, 40) and torch.equal(a, b)


def test_a_larger_size_renders_the_same_crop_at_a_finer_resolution():
    prep, x = Preprocess(), _smooth_faces()
    fine = augment(x, prep, torch.Generator().manual_seed(3), 80)
    coarse = augment(x, prep, torch.Generator().manual_seed(3), 40)
    assert fine.shape == (4, 1, 80, 80)
    # same flip, angle, shift and erased area, so 2x2 averaging of the fine rendering gives the coarse one
    # (up to interpolation and the erased rectangle's rounding at its edges)
    diff = (F.avg_pool2d(fine, 2) - coarse).abs()
    assert diff.median() < 0.01 and diff.mean() < 0.05
    other = augment(x, prep, torch.Generator().manual_seed(4), 40)
    assert (other - coarse).abs().mean() > 5 * diff.mean()  # a different draw is far off: the check can fail


def test_training_at_several_sizes_with_balancing_runs_and_records_them(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        for usage, n in (("Training", 32), ("PublicTest", 16)):
            h5[f"{usage}_pixel"] = rng.integers(0, 255, (n, 2304)).astype(np.uint8)
            h5[f"{usage}_label"] = rng.integers(0, 7, n)
    out = tmp_path / "run"
    assert main(["--data", str(tmp_path / "d.h5"), "--model", "fertiny", "--epochs", "2", "--batch", "8",
                 "--train-sizes", "24", "56", "--balance", "0.5", "--threads", "1", "--out", str(out),
                 "--quiet"]) == 0
    ck = torch.load(out / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and ck["args"]["train_sizes"] == "[24, 56]" and ck["args"]["balance"] == "0.5"
    assert 0.0 <= ck["history"][-1]["val_top1"] <= 1.0


def test_no_balance_is_a_plain_permutation():
    assert class_balance_weights(np.array([0, 0, 1]), 0.0) is None
    order = epoch_order(10, None, torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(10))


def test_balance_draws_classes_by_count_to_the_minus_power():
    labels = np.array([0] * 900 + [5] * 100)  # 9:1, like happy against disgust
    full = class_balance_weights(labels, 1.0)
    assert torch.allclose(full[:900].sum(), full[900:].sum())  # power 1: both classes equally often
    half = class_balance_weights(labels, 0.5)
    assert torch.isclose(half[:900].sum() / half[900:].sum(), torch.tensor(3.0, dtype=half.dtype))  # sqrt(9)
    drawn = labels[epoch_order(len(labels), full, torch.Generator().manual_seed(0)).numpy()]
    assert len(drawn) == 1000 and 0.44 < (drawn == 5).mean() < 0.56  # was 0.10 before balancing


def test_extra_tables_join_the_training_faces_with_their_rare_classes_evened(tmp_path):
    """--extra T:2 lists table T's faces twice; --extra-even 5 first lists each of T's classes up to 5 times more,
    towards its largest class (rounded), never fewer than once."""
    import numpy as np
    from converters.labels import class_names
    from converters.writers import write_h5
    from scripts.torch_classifier import training_mix
    faces = lambda n: np.zeros((n, 2304), np.uint8)  # noqa: E731
    write_h5(tmp_path / "main.h5", {"train": (faces(3), np.array([0, 1, 2]), ["a", "b", "c"])}, class_names(7))
    labels = np.array([0] * 10 + [1] * 9 + [2] * 1)
    write_h5(tmp_path / "x.h5", {"train": (faces(20), labels, [str(i) for i in range(20)])}, class_names(7))
    _, y = training_mix(tmp_path / "main.h5", [f"{tmp_path / 'x.h5'}:2"])
    assert np.bincount(y).tolist() == [1 + 20, 1 + 18, 1 + 2]
    _, y = training_mix(tmp_path / "main.h5", [f"{tmp_path / 'x.h5'}:2"], even=5)
    assert np.bincount(y).tolist() == [1 + 20, 1 + 18, 1 + 2 * 5]


def _tiny_table(path, n=96, seed=0):
    import numpy as np
    from converters.labels import class_names
    from converters.writers import write_h5
    rng = np.random.default_rng(seed)
    faces = rng.integers(0, 255, (n, 2304), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    write_h5(path, {"train": (faces, labels, [f"t{i}" for i in range(n)]),
                    "val": (faces[:32], labels[:32], [f"v{i}" for i in range(32)])}, class_names(7))
    return path


def test_two_process_ddp_on_the_cpu_writes_a_checkpoint_like_a_single_process_run(tmp_path):
    """torchrun --nproc_per_node 2 with the gloo backend: one checkpoint, written by the first process, in the
    single-process format, which loads and predicts like one."""
    import subprocess
    import sys
    import numpy as np
    from scripts.classifiers import load_classifier
    from scripts.torch_classifier import main
    table = _tiny_table(tmp_path / "t.h5")
    common = ["--data", str(table), "--model", "fertiny", "--epochs", "1", "--batch", "16", "--device", "cpu",
              "--threads", "1", "--quiet", "--no-bf16"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29533", "-m", "scripts.torch_classifier", *common, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    assert ddp.stdout.count("epoch 1/1") == 1 and "x 2 processes" in ddp.stdout  # logged once, by rank 0
    one, two = (torch.load(tmp_path / d / "best.pt", weights_only=False) for d in ("one", "two"))
    assert one.keys() == two.keys() and one["model"].keys() == two["model"].keys()
    assert all(one["model"][k].shape == two["model"][k].shape for k in one["model"])
    faces = np.random.default_rng(1).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    assert load_classifier(tmp_path / "two" / "best.pt").probabilities(faces, 7).shape == (5, 7)


@pytest.mark.parametrize("native", [True, False])
def test_cpu_training_takes_bfloat16_only_where_the_cpu_runs_it(monkeypatch, native):
    """Emulated bfloat16 made a CPU training step 10x slower than float32: --bf16 is a request, honoured where the
    CPU has AVX-512 BF16 or AMX; --no-bf16 is float32 everywhere."""
    import scripts.device
    from scripts.torch_classifier import training_autocast
    monkeypatch.setattr(scripts.device, "cpu_has_bf16", lambda: native)
    assert training_autocast(torch.device("cpu"), True) is (torch.bfloat16 if native else None)
    assert training_autocast(torch.device("cpu"), False) is None
