"""Where and how a training step runs: the device, seeding, mixed precision, torch.compile,
and the record of the machine saved with every result."""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

from engine.errors import LabError


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LabError("CUDA was asked for but torch sees no GPU; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def environment(device: torch.device) -> dict:
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
    }
    if os.environ.get("LAB3_RUN_NOTE"):  # e.g. how many runs shared the device
        env["note"] = os.environ["LAB3_RUN_NOTE"]
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


# torch.compile's modes. "reduce-overhead" adds CUDA graphs, which remove the per-kernel launch
# cost that bounds a ResNet18 step on 32x32 images on a big GPU (about 10 ms per batch of 128 on
# an H200 in eager mode, results/bench/bench_nvidia-h200.json); on the CPU it falls back to the
# default mode.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_for_training(model: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    """`model` itself (mode None: eager) or a `torch.compile` wrapper sharing its parameters.

    Only the training step goes through the wrapper: evaluation runs in large batches where
    launch overhead does not matter, and keeping it eager avoids compiling an eval-mode graph.
    Checkpoints save `model` itself, so their keys never carry the wrapper's `_orig_mod.`."""
    if check_compile_mode(mode) is None:
        return model
    return torch.compile(model, mode=mode)


def check_compile_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in COMPILE_MODES:
        raise LabError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    return mode


def autocast_for(device: torch.device):
    """(autocast context, GradScaler or None): bf16 on CUDA where supported, else fp16 with a
    scaler (fp16's narrow range underflows small gradients); plain float32 on the CPU."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False), None
    if torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16), None
    return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
