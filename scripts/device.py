"""Where computation runs: `auto` (the first CUDA GPU when there is one, else the CPU), `cpu`, or GPU indices
(`0`, `0,1`). One resolution for every command that trains, predicts, evaluates or exports; the chosen device is
printed and recorded with results."""
from __future__ import annotations

import re

from converters.errors import EmoDetError

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, or GPU indices such as 0 or 0,1 (default: auto)"


def resolve_device(spec: str | None = "auto") -> str:
    """Ultralytics' spelling of a device: 'cpu', '0' or '0,1'; one line for a spelling we do not know or a GPU
    that is not there."""
    import torch
    text = (spec or "auto").strip().lower().replace("cuda:", "")
    if text == "auto":
        return "0" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if not re.fullmatch(r"\d+(,\d+)*", text):
        raise EmoDetError(f"device {spec!r}: expected {DEVICE_HELP}")
    wanted = [int(i) for i in text.split(",")]
    available = torch.cuda.device_count()
    if max(wanted) >= available:
        raise EmoDetError(f"device {spec!r}: {available} CUDA GPU(s) here" + ("" if available else
                          " (a CPU-only machine or a CPU build of torch); use DEVICE=cpu or auto"))
    return text


def torch_device(device: str):
    """The torch.device of a resolved spelling (the first GPU of a list: one process drives one GPU)."""
    import torch
    return torch.device("cpu" if device == "cpu" else f"cuda:{device.split(',')[0]}")


def describe(device: str) -> str:
    """'cpu' or 'cuda:0 (NVIDIA H200)': what a result records."""
    if device == "cpu":
        return "cpu"
    import torch
    return ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(int(i))})" for i in device.split(","))


def onnx_providers() -> list[str]:
    """ONNX Runtime providers: CUDA first when onnxruntime-gpu is installed and a GPU is visible, else the CPU."""
    import onnxruntime as ort
    available = ort.get_available_providers()
    return (["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in available
            else ["CPUExecutionProvider"])


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX-512 BF16 / AMX). Elsewhere bf16 autocast is emulated and
    slower, not faster: a fervgg-c training step took 10x its float32 time on an AVX2 EPYC."""
    import torch
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(device: str):
    """Mixed-precision type for training: bfloat16 where the GPU (Ampere and later) or CPU supports it, else
    float16 on older GPUs (with a gradient scaler), None for a CPU without bfloat16."""
    import torch
    if device == "cpu":
        return torch.bfloat16 if cpu_has_bf16() else None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
