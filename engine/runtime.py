"""Where and how a training step runs, knowing nothing of runs: the device, the machine's record,
mixed precision, torch.compile and the step itself. `python -m engine.runtime` checks a set-up."""

from __future__ import annotations

import io
import os
import platform
import signal
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.errors import LabError


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LabError("CUDA was asked for but torch sees no GPU; use --device cpu")
    return device


def torchvision():
    """torchvision, or one line naming the fix: one built for another torch (a CPU torch beside a
    CUDA torchvision) fails on import with "operator torchvision::nms does not exist"."""
    try:
        import torchvision as tv

        return tv
    except Exception as e:  # noqa: BLE001  (ImportError, or RuntimeError from a mismatched build)
        reason = (str(e).splitlines() or [type(e).__name__])[0]
    version, _, build = torch.__version__.partition("+")  # pip picks the torchvision it pins
    index = f" --index-url https://download.pytorch.org/whl/{build}" if build else ""
    raise LabError(
        f"torchvision cannot be used with torch {torch.__version__} ({reason}); install a "
        f"matching pair from one source: pip install --force-reinstall torch=={version} "
        f"torchvision{index}"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def hardware_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({_cpu_model()}), {torch.get_num_threads()} threads"


def environment(device: torch.device) -> dict:
    """The machine and versions, saved with every result (training never needs torchvision)."""
    try:
        tv = torchvision().__version__
    except LabError:
        tv = None
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "torchvision": tv,
        "gpu" if cuda else "cpu": torch.cuda.get_device_name(device) if cuda else _cpu_model(),
    }


def command_line(argv: list[str] | None = None) -> str:
    """The command that made a result without machine paths (issue #13): an absolute path under
    the working directory becomes relative, any other one keeps only its last part ("…/name")."""

    def clean(token: str) -> str:
        key, eq, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if os.path.isabs(value):
            rel = os.path.relpath(value, os.getcwd())
            value = rel if not rel.startswith("..") else "…/" + os.path.basename(value.rstrip("/"))
        return key + eq + value

    argv = list(sys.argv if argv is None else argv)
    return " ".join([os.path.basename(argv[0]), *map(clean, argv[1:])] if argv else [])


PRECISIONS = ("auto", "bf16", "fp32")  # auto: the fastest the hardware runs natively (#22)


@dataclass(frozen=True)
class Precision:
    """How a step computes: `name` (bf16 | fp16 | fp32), channels_last memory, and why."""

    name: str
    device_type: str
    channels_last: bool
    reason: str

    def autocast(self):
        dtype = torch.float16 if self.name == "fp16" else torch.bfloat16
        return torch.autocast(self.device_type, dtype=dtype, enabled=self.name != "fp32")

    def scaler(self):
        """A GradScaler for fp16 (its narrow range underflows small gradients), else None."""
        return torch.amp.GradScaler("cuda") if self.name == "fp16" else None

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def record(self) -> dict:
        return {"precision": self.name, "precision_reason": self.reason}


def choose_precision(
    device: torch.device, requested: str | None = "auto", native_bf16: bool | None = None
) -> Precision:
    """The one precision decision for every step: bf16 where the hardware runs it natively (2x
    float32 on an AVX512-BF16 EPYC; emulated, it is slower than float32), else fp16 with a
    GradScaler on a GPU, float32 on a CPU; channels_last everywhere (1.2-1.5x faster CPU steps,
    `python -m tools.bench`). `native_bf16` stands in for the CPU's answer in tests."""
    requested = requested or "auto"
    if requested not in PRECISIONS:
        raise LabError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if kind not in ("cuda", "cpu"):
        raise LabError(f"device {kind!r} is not supported; use cuda or cpu")
    gpu_bf16 = kind == "cuda" and torch.cuda.is_bf16_supported()
    if requested == "bf16" and kind == "cuda" and not gpu_bf16:
        raise LabError("this GPU has no bfloat16; use --precision auto (fp16) or fp32")
    if native_bf16 is None and kind == "cpu":
        caps = getattr(torch.cpu, "get_capabilities", dict)()
        native_bf16 = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    if requested != "auto":
        name, reason = requested, f"forced (--precision {requested})"
    elif gpu_bf16:
        name, reason = "bf16", "GPU supports bf16"
    elif kind == "cuda":
        name, reason = "fp16", "GPU lacks bf16: fp16 with a GradScaler"
    elif native_bf16:
        name, reason = "bf16", "CPU has native bf16 (AVX512-BF16 or AMX)"
    else:
        name, reason = "fp32", "CPU lacks native bf16 (it would be emulated)"
    return Precision(name, kind, True, reason)


def precision_of(result: dict) -> str:
    """A saved result's precision; older files trained in fp32 on a CPU, bf16 on a GPU."""
    env = result.get("env") or {}
    guess = "bf16" if str(env.get("device", "")).startswith("cuda") else "fp32"
    return env.get("precision") or guess


def train_step(
    model, opt, x, y, precision: Precision, scaler=None, label_smoothing=0.0, weight=1.0
):
    """One step (train(), the LR range test, the bench, the compile probe). Returns (logits,
    loss); `weight` scales the loss backpropagated (a DDP rank's share of the global batch)."""
    with precision.autocast():
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    scaled = loss * weight  # exact for 1.0
    if scaler is None:
        scaled.backward()
        opt.step()
    else:
        scaler.scale(scaled).backward()
        scaler.step(opt)
        scaler.update()
    return logits, loss


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


# "reduce-overhead" adds CUDA graphs: no per-kernel launch cost, which bounds a small step on a GPU
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_compile_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in COMPILE_MODES:
        raise LabError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    return mode


# A model's compiled training step on a random batch of each shape, in a child (probe_compile).
_PROBE = """
import io, sys, torch
from engine.runtime import train_step
model, shapes, prec = torch.load(io.BytesIO(sys.stdin.buffer.read()), weights_only=False)
opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
step = torch.compile(model, mode=sys.argv[1])
for shape in shapes:
    x = torch.randn(shape).contiguous(memory_format=prec.memory_format)
    train_step(step, opt, x, torch.zeros(shape[0], dtype=torch.long), prec)
"""
_PROBED: set = set()


def probe_compile(model: torch.nn.Module, shapes: list[tuple], mode: str, precision) -> None:
    """Compile `model`'s training step for each input shape in a child process first, once per
    graph: inductor has crashed (SIGSEGV, SIGABRT) on this ResNet18's backward on AVX2 and AVX-512
    CPUs, killing a notebook's kernel without a word. The run then reads inductor's cache."""
    if (key := (repr(model), tuple(shapes), check_compile_mode(mode), precision)) in _PROBED:
        return
    buffer = io.BytesIO()
    torch.save((model, shapes, precision), buffer)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # what this one imports
    cmd = [sys.executable, "-c", _PROBE, mode]
    done = subprocess.run(cmd, input=buffer.getvalue(), env=env, capture_output=True)
    if (rc := done.returncode) != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise LabError(
            f"torch.compile {f'crashed ({signal.Signals(-rc).name})' if rc < 0 else 'failed'} in a "
            f"child process ({last}): a fault of inductor, or a stale cache (delete /tmp/"
            "torchinductor_<user>); run without --compile (or LAB3_COMPILE): eager trains the same"
        )
    _PROBED.add(key)


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.runtime`: the set-up's last check (README), before anything trains."""
    device = pick_device()
    tv = torchvision()  # a torchvision of another build: one line and exit code 2
    prec = choose_precision(device)
    print(f"torch {torch.__version__} and torchvision {tv.__version__}: a working pair")
    print(f"device {hardware_name(device)}: trains in {prec.name} ({prec.reason})")
    return 0


if __name__ == "__main__":
    from engine.errors import run_cli

    raise SystemExit(run_cli(main))
