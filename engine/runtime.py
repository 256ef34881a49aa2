"""Where and how a training step runs: the device, seeding, mixed precision, torch.compile,
and the record of the machine saved with every result."""

from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass

import numpy as np
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
    try:  # recorded, never needed: a broken torchvision must not stop a run
        env["torchvision"] = torchvision().__version__
    except LabError:
        env["torchvision"] = None
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    else:
        env["cpu"] = cpu_model()
    return env


def torchvision():
    """torchvision, imported where it is needed (torchvision's own CIFAR-10 files, the v2
    reference augmentations, the bench), or one line that says how to fix the install.

    A torchvision built for another torch (pip mixing indexes: a CPU torch beside a CUDA
    torchvision) fails on import with "operator torchvision::nms does not exist"; training never
    needs torchvision, so only these callers see it."""
    try:
        import torchvision as tv

        return tv
    except Exception as e:  # noqa: BLE001  (ImportError, or RuntimeError from a mismatched build)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    version = torch.__version__.split("+")[0]
    major, minor = (int(x) for x in version.split(".")[:2])
    index = ""
    if "+cpu" in torch.__version__:
        index = " --index-url https://download.pytorch.org/whl/cpu"
    raise LabError(
        f"torchvision cannot be used with torch {torch.__version__} ({reason}); install a "
        f"matching pair from one source: pip install --force-reinstall torch=={version} "
        f"'torchvision=={major - 2}.{minor + 15}.*'{index}"
    )


def command_line(argv: list[str] | None = None) -> str:
    """The command that made a result, without machine paths (issue #13): an absolute path under
    the working directory becomes relative, any other one keeps only its last part ("…/name")."""
    import sys

    argv = list(sys.argv if argv is None else argv)
    if argv and os.path.isabs(argv[0]):
        argv[0] = os.path.basename(argv[0])
    cwd = os.getcwd()

    def clean(token: str) -> str:
        key, eq, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if os.path.isabs(value):
            rel = os.path.relpath(value, cwd)
            value = rel if not rel.startswith("..") else "…/" + os.path.basename(value.rstrip("/"))
        return key + eq + value

    return " ".join(clean(t) for t in argv)


def cpu_model() -> str:
    """The CPU's model name where Linux tells it (/proc/cpuinfo), else the architecture."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
    except OSError:
        pass
    return model


def hardware_name(device: torch.device) -> str:
    """The machine in words, for banners and results: the GPU's name, or the CPU's model (where
    Linux tells it) and the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()}), {torch.get_num_threads()} threads"


# torch.compile's modes. "reduce-overhead" adds CUDA graphs, which remove the per-kernel launch
# cost that bounds a ResNet18 step on 32x32 images on a big GPU (about 10 ms per batch of 128 on
# an H200 in eager mode, results/bench/bench_nvidia-h200.json); on the CPU it falls back to the
# default mode.
COMPILE_MODES = (
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
)


def compile_for_training(model: torch.nn.Module, mode: str | None) -> torch.nn.Module:
    """`model` itself (mode None: eager) or a `torch.compile` wrapper sharing its parameters.

    Only the training step goes through the wrapper: evaluation runs in large batches where
    launch overhead does not matter, and keeping it eager avoids compiling an eval-mode graph.
    Checkpoints save `model` itself, so their keys never carry the wrapper's `_orig_mod.`."""
    if check_compile_mode(mode) is None:
        return model
    return torch.compile(model, mode=mode)


# The compiled training steps of a model in a child process (see probe_compile): train()'s own
# step (train_step) on each input in turn, as the run's epochs meet them.
_PROBE = """
import sys, torch
from engine.runtime import train_step
model, xs, precision = torch.load(sys.argv[1], weights_only=False)
model = model.to(memory_format=precision.memory_format)
opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
step = torch.compile(model, mode=sys.argv[2])
for x in xs:
    x = x.to(memory_format=precision.memory_format)
    train_step(step, opt, x, torch.zeros(len(x), dtype=torch.long), precision)
"""
_PROBED: set = set()


def probe_compile(model: torch.nn.Module, shapes: list[tuple], mode: str, precision) -> None:
    """Compile `model`'s training step in a child process first, on a CPU: one step on an input
    of each of `shapes` (a run's full batch twice, then its last, smaller one if any, which
    makes torch.compile compile again with dynamic shapes).

    torch.compile's CPU backend (inductor, generated C++) has crashed with a segmentation fault
    in the lab's ResNet18 backward pass on an AVX2-only processor (torch 2.14.1, gcc 12), and
    on an AVX-512 Xeon when the last batch's shape made it compile again (SIGABRT): in the run
    itself that kills the process, a notebook's kernel included, without a word. In a child
    it becomes this one line. The probe compiles the same graph as the run (same model, batch
    shape, precision and memory layout), so the run then reads it from inductor's cache and the
    probe costs little more than the compile it precedes. Once per process and graph."""
    import signal
    import subprocess
    import sys
    import tempfile

    key = (repr(model), tuple(shapes), mode, precision.name, precision.channels_last)
    if key in _PROBED:
        return
    module = sys.modules[type(model).__module__]
    where = os.path.dirname(os.path.abspath(module.__file__ or "."))  # the model's module
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # engine's
    path_list = [where, root, os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path_list)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "probe.pt")
        torch.save((model, [torch.randn(shape) for shape in shapes], precision), path)
        args = [path, mode]
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, *args], env=env, capture_output=True, text=True
        )
    if done.returncode < 0:
        sig = signal.Signals(-done.returncode).name
        raise LabError(
            f"torch.compile crashed ({sig}) compiling one training step in a child process on "
            "this CPU: a fault of its compiler backend (inductor), not of the lab's code (a stale "
            "compile cache can do it too: delete TORCHINDUCTOR_CACHE_DIR, by default "
            "/tmp/torchinductor_<user>); run without --compile (or LAB3_COMPILE): eager mode "
            "trains the same run"
        )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise LabError(
            f"torch.compile failed on one training step in a child process ({last}); run "
            "without --compile (or LAB3_COMPILE), eager mode trains the same run"
        )
    _PROBED.add(key)


def check_compile_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in COMPILE_MODES:
        raise LabError(f"unknown compile mode {mode!r}; choose one of {', '.join(COMPILE_MODES)}")
    return mode


# Precision of the training and evaluation steps (issue #22). "auto" picks the fastest that the
# hardware runs natively; "bf16" and "fp32" force one.
PRECISIONS = ("auto", "bf16", "fp32")


def cpu_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16). Elsewhere torch
    emulates bfloat16 through float32 conversions, which is slower than float32 itself."""
    caps = getattr(torch.cpu, "get_capabilities", None)
    if caps is not None:
        try:
            c = caps()
            return bool(c.get("avx512_bf16") or c.get("amx_bf16"))
        except Exception:  # noqa: BLE001  (an older torch without cpuinfo: read the flags)
            pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class Precision:
    """How a step computes: `name` (bf16 | fp16 | fp32), channels_last memory, and why."""

    name: str
    device_type: str
    channels_last: bool
    reason: str

    def autocast(self):
        """The autocast context of a forward pass (a disabled one in float32)."""
        if self.name == "fp32":
            return torch.autocast(self.device_type, enabled=False)
        dtype = torch.bfloat16 if self.name == "bf16" else torch.float16
        return torch.autocast(self.device_type, dtype=dtype)

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
    """The one precision decision for every step (training, evaluation, LR range test, bench).

    - CUDA: bf16 autocast where the GPU supports it, else fp16 with a GradScaler; channels_last.
    - CPU: bf16 autocast where the processor runs bf16 natively (2x the float32 rate on an
      AVX512-BF16 EPYC: `python -m tools.bench --device cpu`), float32 elsewhere: an emulated
      bf16 is slower than float32. channels_last in both: it stepped the lab's ResNet18 in
      float32 1.2-1.3x faster on an AVX2-only EPYC and 1.4-1.5x on an AVX-512 Xeon (widths
      16-64, batch 128), and bf16 1.05x (the bench's `*_channels_last_vs_not` ratios).
    - `requested` "bf16" or "fp32" forces one (`native_bf16` stands in for the CPU's answer in
      tests)."""
    requested = requested or "auto"
    if requested not in PRECISIONS:
        raise LabError(f"unknown precision {requested!r}; choose one of {', '.join(PRECISIONS)}")
    device = torch.device(device)
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "fp32":
            return Precision("fp32", "cuda", True, "forced (--precision fp32)")
        if requested == "bf16" and not bf16:
            raise LabError("this GPU has no bfloat16; use --precision auto (fp16) or fp32")
        if bf16:
            why = "forced (--precision bf16)" if requested == "bf16" else "GPU supports bf16"
            return Precision("bf16", "cuda", True, why)
        return Precision("fp16", "cuda", True, "GPU lacks bf16: fp16 with a GradScaler")
    if device.type != "cpu":
        raise LabError(f"device {device.type!r} is not supported; use cuda or cpu")
    if requested == "fp32":
        return Precision("fp32", "cpu", True, "forced (--precision fp32)")
    if requested == "bf16":
        return Precision("bf16", "cpu", True, "forced (--precision bf16)")
    native = cpu_native_bf16() if native_bf16 is None else native_bf16
    if native:
        return Precision("bf16", "cpu", True, "CPU has native bf16 (AVX512-BF16 or AMX)")
    return Precision("fp32", "cpu", True, "CPU lacks native bf16 (it would be emulated)")


def precision_of(result: dict) -> str:
    """The precision a saved result trained with. Files older than the field trained in float32
    on a CPU, and under bf16 autocast on a GPU (the code then used it wherever the GPU had it,
    as every GPU of those runs did)."""
    env = result.get("env") if isinstance(result, dict) else None
    env = env if isinstance(env, dict) else {}
    value = env.get("precision")
    if isinstance(value, str):
        return value
    return "bf16" if str(env.get("device", "")).startswith("cuda") else "fp32"


def train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    precision: Precision,
    scaler=None,
    label_smoothing: float = 0.0,
    weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step: forward under `precision`'s autocast, cross-entropy, backward, update.
    Returns (logits, loss); `weight` scales the loss that is backpropagated (a DDP rank's share
    of the global batch), not the loss returned. train(), the LR range test, the benchmark and
    the cost projection all step through here."""
    with precision.autocast():
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    optimizer_step(loss if weight == 1.0 else loss * weight, opt, scaler)
    return logits, loss


def optimizer_step(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler=None) -> None:
    """Backward and update; with a GradScaler (fp16) the loss is scaled and steps are skipped
    on overflow."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """The lr of every group: in place where it is a tensor (a fused optimizer's tensor lr)."""
    for group in opt.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


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
