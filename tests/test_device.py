"""Device resolution: auto falls back to the CPU without a GPU, a malformed or absent device is one line, and on a
machine with CUDA a classifier trains two steps and predicts there (skipped elsewhere, with the reason)."""
import pytest
import torch

from converters.errors import EmoDetError
from scripts.device import describe, resolve_device, torch_device


def test_auto_is_the_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu" and describe("cpu") == "cpu"
    assert torch_device("cpu").type == "cpu"


def test_auto_is_the_first_gpu_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "0" and resolve_device("cuda:1") == "1" and resolve_device("0,1") == "0,1"
    assert str(torch_device("0,1")) == "cuda:0"


@pytest.mark.parametrize("spec", ["gpu", "0;1", "-1", "cuda:x", "1.5"])
def test_a_malformed_device_is_one_line(spec):
    with pytest.raises(EmoDetError, match="expected auto"):
        resolve_device(spec)


def test_a_gpu_that_is_not_there_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(EmoDetError, match="0 CUDA GPU"):
        resolve_device("0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_smoke_a_classifier_trains_two_steps_and_predicts_on_the_gpu():
    from scripts.torch_models import build_model
    device = torch_device(resolve_device("auto"))
    model, _ = build_model("fervgg-s", 7)
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.rand(8, 1, 40, 40, device=device), torch.randint(0, 7, (8,), device=device)
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (8, 7) and torch.isfinite(loss).item()
