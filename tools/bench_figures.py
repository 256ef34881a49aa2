"""What a tools/bench.py run's timings come to (the ratios against their pass marks, each
candidate's images/s and FLOP rate, the CPU's peak, the compile's cost) and the report printed."""

from __future__ import annotations

import statistics
from pathlib import Path

from tools.bench_candidates import Candidate
from tools.cost import GRID_TARGET_MINUTES

# Pass marks, printed beside each ratio (not asserted anywhere).
TARGETS = {
    "model_hand_vs_torchvision": 0.95,  # same architecture, so the same speed within noise
    "loop_fast_vs_model": 0.90,  # the fast data path costs at most 10% of the model's speed
    "aug_batched_vs_pil": 10.0,  # batching beats per-image PIL by an order of magnitude
}
# The whole loop's speed that issue #14 asks of the H200 at batch 512 (bf16, device-resident
# data, augmentation): the grid's seed 0 in about 6 minutes takes that, or lanes that add up to it.
LOOP_TARGET = {"batch_size": 512, "images_per_s": 35_000}
# Each ratio: (candidate, reference, what). A precision variant's candidates are model_<tag> and
# loop_<tag> (precision_variants), or the main step's where it is that variant.
RATIOS = {
    "model_hand_vs_torchvision": ("model_hand", "model_torchvision", "hand-written / torchvision"),
    "loop_fast_vs_model": ("loop_fast", "model_hand", "DeviceLoader / model step"),
    "loop_pil_vs_model": ("loop_pil", "model_hand", "DataLoader+PIL / model step"),
    "loop_fast_vs_pil": ("loop_fast", "loop_pil", "DeviceLoader / DataLoader+PIL"),
    "aug_batched_vs_pil": ("aug_batched", "aug_pil", "batched / per-image PIL"),
    "model_bf16_vs_fp32": ("model_bf16", "model_fp32", "bf16 / fp32"),
    "loop_bf16_vs_fp32": ("loop_bf16", "loop_fp32", "bf16 / fp32 (DeviceLoader)"),
    "model_channels_last_vs_not": ("model_bf16", "model_bf16_nchw", "bf16, channels_last / not"),
    "loop_channels_last_vs_not": ("loop_bf16", "loop_bf16_nchw", "bf16, channels_last / not"),
    "model_fp32_channels_last_vs_not": (
        "model_fp32",
        "model_fp32_nchw",
        "fp32, channels_last / not",
    ),
    "loop_fp32_channels_last_vs_not": ("loop_fp32", "loop_fp32_nchw", "fp32, channels_last / not"),
    "model_compiled_vs_eager": ("model_compiled", "model_hand", "torch.compile / eager"),
    "loop_fast_compiled_vs_eager": ("loop_fast_compiled", "loop_fast", "torch.compile / eager"),
}
KINDS = {"model": "model step", "loop": "training loop", "aug": "augmentation"}


def cpu_peak(threads: int, cpuinfo: str | None = None) -> dict | None:
    """The CPU's peak GFLOP/s for `threads` cores: cores x clock x FLOPs per cycle per core.

    FLOPs per cycle: (vector bits / 32) float32 lanes x 2 (a fused multiply-add is a multiply
    and an add) x the FMA pipes that take a full vector each cycle: 2 on AVX-512 Xeons and Zen 5,
    1 on Zen 4 (family 25), which splits a 512-bit FMA over its two 256-bit pipes. AVX512-BF16's
    dot product (vdpbf16ps) does two bf16 multiply-adds per float32 lane, so bf16 counts 2x;
    without it bf16 is emulated through float32, so 1x. AMX tiles are not counted. Each torch
    thread counts as a core. The clock is the highest "cpu MHz" in /proc/cpuinfo: the current
    clock, neither the turbo limit nor an all-core average. None where Linux does not say;
    `cpuinfo` stands in for the file's text in tests."""
    try:
        cpuinfo = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    info = [line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line]
    field = {k.strip(): v.strip() for k, v in reversed(info)}  # the first core's values
    mhz = [float(v) for k, v in info if k.strip() == "cpu MHz"]
    if not mhz:
        return None
    flags = field.get("flags", "").split()
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    zen4 = field.get("vendor_id") == "AuthenticAMD" and field.get("cpu family") == "25"
    pipes = 1 if bits == 512 and zen4 else 2
    fp32 = bits // 32 * 2 * pipes
    per_cycle = {"fp32": fp32, "bf16": 2 * fp32 if "avx512_bf16" in flags else fp32}
    ghz = max(mhz) / 1000
    return {
        "cores": threads,
        "ghz": ghz,
        "clock_source": "highest 'cpu MHz' in /proc/cpuinfo (current clock)",
        "vector_bits": bits,
        "fma_pipes": pipes,
        "flops_per_cycle": per_cycle,
        "gflops": {k: threads * ghz * v for k, v in per_cycle.items()},
    }


def ratios(cands: list[Candidate], alias: dict[str, str]) -> dict:
    """RATIOS: the median over repeats of candidate / reference, the two timed in the same
    repeat (None where either was not timed), with its label and pass mark."""
    by_key = {c.key: c for c in cands}
    out = {}
    for key, (a, b, what) in RATIOS.items():
        a, b = alias.get(a, a), alias.get(b, b)
        value = None
        if a in by_key and b in by_key:
            pairs = zip(by_key[a].rates(), by_key[b].rates())
            value = statistics.median(x / y for x, y in pairs)
        target = TARGETS.get(key)
        out[key] = {
            "label": f"{KINDS[key.split('_')[0]]}: {what}",
            "value": value,
            "target": target,
            "pass": None if value is None or target is None else value >= target,
        }
    return out


def figure(c: Candidate, rate: float, warmup_s: float, flops: float, peak: dict | None) -> dict:
    """One candidate's figures; a training step's FLOP rate, and on the CPU its share of the
    peak in its precision."""
    gflops = rate * flops / 1e9 if c.precision else None
    of_peak = (peak or {}).get("gflops", {}).get(c.precision)
    return {
        "label": c.label,
        "precision": c.precision,
        "images_per_s": rate,
        "repeats": c.rates(),
        "images_per_repeat": c.images,
        "warmup_seconds": warmup_s,
        "tflops": None if gflops is None else gflops / 1e3,
        "peak_fraction": gflops / of_peak if gflops and of_peak else None,
    }


def loop_target(loops: dict, batch_size: int, cuda: bool) -> dict | None:
    """The fastest whole loop measured (`loops`: images/s of loop_fast and, compiled,
    loop_fast_compiled) against LOOP_TARGET; None where it does not apply (the CPU, another
    batch size)."""
    if not cuda or batch_size != LOOP_TARGET["batch_size"]:
        return None
    key = max(loops, key=loops.get)
    target = LOOP_TARGET["images_per_s"]
    return {"key": key, "images_per_s": loops[key], "target": target, "pass": loops[key] >= target}


def compile_figures(mode, warmup_s: dict, rate: dict, cfg: dict, bs: int) -> dict | None:
    """What compiling costs once (the compiled step's warm-up less the eager step's time for as
    many steps) and after how many training images the faster steps have paid it back (None:
    they never do)."""
    if mode is None:
        return None
    eager_s = max(1, cfg["warmup"]) * bs / rate["model_hand"]  # its warm-up steps, uncompiled
    compile_s = max(0.0, warmup_s["model_compiled"] - eager_s)
    saved_per_image = 1 / rate["model_hand"] - 1 / rate["model_compiled"]
    return {
        "mode": mode,
        "compile_seconds": compile_s,
        "caches": "disabled (a cold compile)",
        "break_even_images": compile_s / saved_per_image if saved_per_image > 0 else None,
    }


def report(res: dict) -> str:
    s = res["settings"]
    lines = [
        f"ResNet18 x CIFAR-10 bench on {res['device']['name']}",
        f"torch {res['versions']['torch']}, torchvision {res['versions'].get('torchvision')}; "
        f"batch {s['batch_size']}, width {s['width']}, {s['steps']} timed steps x "
        f"{s['repeats']} repeats (median); main step {s['precision']} ({s['precision_reason']}),"
        f" channels_last {s['channels_last']}",
        f"data: {res['data']['source']}",
        "",
        f"{'ratio':48s}{'value':>8s}{'target':>10s}",
    ]
    for r in res["ratios"].values():
        if r["value"] is None and "compile" in r["label"]:
            continue  # not asked for (--compile)
        value = "n/a" if r["value"] is None else f"{r['value']:.2f}"
        target = "" if r["target"] is None else f">= {r['target']:g}"
        verdict = {True: "PASS", False: "FAIL", None: ""}[r["pass"]]
        lines.append(f"{r['label']:48s}{value:>8s}{target:>10s}  {verdict}".rstrip())
    lines += ["", f"{'images/s':62s}{'median':>8s}   min..max over repeats   GFLOP/s"]
    for f in res["figures"].values():
        spread = f"{min(f['repeats']):.0f}..{max(f['repeats']):.0f}"
        gflops = "" if f["tflops"] is None else f"{f['tflops'] * 1e3:9.1f}"
        if f["peak_fraction"]:
            gflops += f" ({f['peak_fraction']:.1%} of peak)"
        lines.append(f"{f['label']:62s}{f['images_per_s']:8.0f}   {spread:22s}{gflops}".rstrip())
    lines += extra_lines(res)
    lines += [f"note: {n}" for n in res["notes"]]
    return "\n".join(lines)


def extra_lines(res: dict) -> list[str]:
    """The compile's cost, the loop target, the CPU's peak, the FLOPs and the grid."""
    lines = []
    if c := res.get("compile"):
        paid = c["break_even_images"]
        paid = "never" if paid is None else f"after {paid:,.0f} training images"
        lines.append(
            f"torch.compile {c['mode']}: {c['compile_seconds']:.0f} s to compile "
            f"(cold), paid back {paid}"
        )
    if t := res.get("loop_target"):
        lines.append(
            f"whole loop at batch {res['settings']['batch_size']} ({t['key']}): "
            f"{t['images_per_s']:,.0f} images/s, target >= {t['target']:,}  "
            + ("PASS" if t["pass"] else "FAIL")
        )
    if p := res.get("cpu_peak"):
        per = p["flops_per_cycle"]
        lines.append(
            f"CPU peak: {p['cores']} threads x {p['ghz']:.2f} GHz ({p['clock_source']})\n  x "
            f"{per['fp32']} fp32 FLOP/cycle ({p['vector_bits'] // 32} lanes x 2 (FMA) x "
            f"{p['fma_pipes']} FMA pipe(s)) = {p['gflops']['fp32']:.0f} GFLOP/s fp32;\n  bf16 "
            f"{per['bf16']} FLOP/cycle (2x with AVX512-BF16, else emulated: 1x) = "
            f"{p['gflops']['bf16']:.0f} GFLOP/s; AMX not counted"
        )
    lines.append(
        f"one training image (forward + backward): {res['train_flops_per_image'] / 1e9:.2f} "
        "GFLOP (torch.utils.flop_counter: convolutions and matrix products)"
    )
    for g in (res["grid_projection"] or {}).values():
        how = {"minutes_loop_fast": "eager", "minutes_loop_fast_compiled": "compiled"}
        minutes = ", ".join(f"{g[k]:.1f} min {v}" for k, v in how.items() if k in g)
        lines.append(
            f"full grid, {g['experiments']} experiments x {g['seeds']} seed(s), "
            f"{g['train_images'] / 1e6:.1f}M training images: {minutes} (one run at a time); "
            f"under {GRID_TARGET_MINUTES} min takes {g['tflops_for_target']:.0f} TFLOP/s"
        )
    return lines
