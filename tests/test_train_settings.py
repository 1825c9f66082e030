"""Settings that follow the data and the machine (scripts/train_settings.py): a small set on a 2-core CPU keeps
everything in RAM, AffectNet's size on GPUs caches on disk with a batch sized to the GPU, the user's values win."""
from pathlib import Path

from scripts.train_settings import Machine, cache_bytes, choose, count_images

GB = 2 ** 30
CFG = {"batch": 16, "epochs": 30, "cache": "auto", "workers": "auto"}
LAPTOP = Machine(cores=2, ram_free=20 * GB, disk_free=60 * GB)
GPU_BOX = Machine(cores=16, ram_free=100 * GB, disk_free=2000 * GB, gpus=2, gpu_memory=80 * GB)


def test_a_small_set_on_two_cores_trains_from_ram_for_the_full_epochs():
    c = choose("detect", 300, 256, LAPTOP, CFG, {})
    assert (c.cache, c.workers, c.batch, c.epochs) == (True, 2, 16, 30)
    assert "fit in RAM" in c.text()


def test_affectnet_on_two_gpus_caches_on_disk_with_a_gpu_sized_batch_and_few_epochs():
    n = 283_901
    assert cache_bytes(n, 256) > 50 * GB  # why RAM is out: 55 GB decoded
    c = choose("detect", n, 256, GPU_BOX, CFG, {})
    assert c.cache == "disk"
    assert c.workers == 7  # 16 cores shared by 2 training processes, one core each for the process itself
    assert c.batch == 2 * 80  # 1 image per GB of GPU memory at 256 px, per GPU
    assert c.epochs == 3  # about 600,000 images seen, like the published recipe's 14,000 x 64
    assert c.batch % 2 == 0


def test_nothing_fits_then_no_cache():
    tiny = Machine(cores=4, ram_free=1 * GB, disk_free=1 * GB)
    assert choose("classify", 200_000, 64, tiny, {**CFG, "batch": 32}, {}).cache is False


def test_the_users_values_and_concrete_cfg_values_win():
    c = choose("detect", 283_901, 256, GPU_BOX, CFG, {"cache": True, "batch": 64, "epochs": 50, "workers": 3})
    assert (c.cache, c.workers, c.batch, c.epochs) == (True, 3, 64, 50) and c.why == []
    fixed = choose("detect", 300, 256, LAPTOP, {**CFG, "cache": False, "workers": 1}, {})
    assert (fixed.cache, fixed.workers) == (False, 1)


def test_batch_shrinks_with_the_input_area_on_a_gpu():
    small = Machine(cores=8, ram_free=30 * GB, disk_free=100 * GB, gpus=1, gpu_memory=16 * GB)
    assert choose("detect", 50_000, 256, small, CFG, {}).batch == 16
    assert choose("detect", 50_000, 512, small, CFG, {}).batch == 8  # a quarter, floored at 8


def test_images_are_counted_from_a_classification_root_and_a_detection_yaml(tmp_path: Path):
    for i in range(3):
        (tmp_path / "cls" / "train" / "happy").mkdir(parents=True, exist_ok=True)
        (tmp_path / "cls" / "train" / "happy" / f"{i}.png").write_bytes(b"")
    (tmp_path / "cls" / "train" / "notes.txt").write_text("not an image")
    assert count_images(tmp_path / "cls") == 3
    (tmp_path / "det").mkdir()
    (tmp_path / "det" / "train.txt").write_text("a.jpg\nb.jpg\n\n")
    (tmp_path / "det" / "data.yaml").write_text(f"path: {tmp_path / 'det'}\ntrain: train.txt\nval: train.txt\n")
    assert count_images(tmp_path / "det" / "data.yaml") == 2
