"""Replace machine paths in results files by what they stand for (issue #13).

Runs written before data sources were named by content recorded where the images had been
unpacked ("image folder /tmp/lab3-cache/unpacked-.../cifar10-jpeg") and where the GPU job wrote
("--out /root/out/results"). This rewrites those strings, and only those strings:

- "image folder <path>/cifar10-jpeg" -> the copy's content name, as `engine.data` names it now
  ("CIFAR-10 JPEG copy (quality 75, lossy), sha256 4a07d12c…"; likewise for cifar10-png);
- "/root/out" (the GPU job's OUT folder, scripts/gpu_full_grid.sh OUT) -> "OUT".

The text is edited in place, so numbers and formatting stay byte for byte; a JSON file is
parsed before and after and refused unless only strings changed. Any other machine path left
(/tmp, /root, /work, /home, ...) is listed and the exit status is 1, so `--check` suits CI.

    python -m tools.scrub_paths results/full          # rewrite, then list what is left
    python -m tools.scrub_paths --check results README.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

# The offline copies' content names (sha256 of each tarball, ../shared/data/README.md).
COPIES = {
    "cifar10-jpeg": "CIFAR-10 JPEG copy (quality 75, lossy), sha256 4a07d12c…",
    "cifar10-png": "CIFAR-10 PNG copy (lossless), sha256 a7acb84d…",
}
IMAGE_FOLDER = re.compile(r"image folder (/[^\s\"']*/)?(" + "|".join(COPIES) + r")\b")
GPU_OUT = re.compile(r"/root/out(?=[/\s\"']|$)")
MACHINE_PATH = re.compile(
    r"(?<![\w.~])/(?:tmp|root|work|home|Users|mnt|scratch|var)/[^\s\"',;)\]]*"
)
SUFFIXES = (".json", ".log", ".txt", ".md", ".csv")


def scrub(text: str, as_json: bool) -> str:
    def copy_name(m: re.Match) -> str:
        name = COPIES[m.group(2)]
        return json.dumps(name)[1:-1] if as_json else name  # JSON files keep ensure_ascii

    return GPU_OUT.sub("OUT", IMAGE_FOLDER.sub(copy_name, text))


def _numbers(obj):
    """Everything in a JSON value but its strings: must not change."""
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    return None if isinstance(obj, str) else obj


def files_under(paths: list[Path]):
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES)
        elif p.is_file():
            yield p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="files or folders (json/log/txt/md/csv)")
    ap.add_argument("--check", action="store_true", help="change nothing; list machine paths")
    args = ap.parse_args(argv)
    changed, left = 0, []
    for f in files_under(args.paths):
        text = f.read_text(encoding="utf-8")
        new = text if args.check else scrub(text, as_json=f.suffix == ".json")
        if new != text:
            if f.suffix == ".json" and _numbers(json.loads(new)) != _numbers(json.loads(text)):
                print(f"{f}: rewriting would change more than strings; left as it is")
                return 1
            f.write_text(new, encoding="utf-8")
            changed += 1
        for i, line in enumerate(new.splitlines(), 1):
            left += [f"{f}:{i}: {m}" for m in MACHINE_PATH.findall(line)]
    if not args.check:
        print(f"rewrote {changed} file(s)")
    for line in left:
        print(line)
    if left:
        print(f"{len(left)} machine path(s) left; name them by what they are, not where they were")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
