"""The GPU session's logistics, all runnable (and tested) on a CPU: data in parts, the plan of what
is still missing, packing results into one file, and unpacking them here with their provenance.

    python -m tools.runbook prepare                 # split ../shared/data/cifar10-png.tar.gz into .gpu/
    python -m tools.runbook parts                   # which parts are here, checked by sha256
    python -m tools.runbook join                    # parts -> .gpu/cifar10-png.tar.gz, checked
    python -m tools.runbook missing --profile full  # runs of the lossless grid not done yet
    python -m tools.runbook pack SESSION OUT/gpu_results.tar.gz
    python -m tools.runbook unpack gpu_results.tar.gz --into results/full

Why parts: one call to the device machine carries at most 64 MiB (the working tree included)
and the lossless copy is 160 MiB, so it travels as three equal parts of 53.4 MiB, one per call,
each checked against `scripts/cifar10-png.parts.sha256` (committed) and the whole file against
the sha256 in ../shared/data/README.md. A lossless WebP re-encode would fit in two parts, but
it would no longer be the file whose sha256 names the data in every results file, and the
loader reads PNG and JPEG only; one more call costs seconds of transfer.
Why one tarball back: $OUT returns at most 8 files of 16 MiB each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import math
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from engine.errors import LabError, run_cli

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "cifar10-png.tar.gz"
MANIFEST = REPO / "scripts" / "cifar10-png.parts.sha256"
PARTS_DIR = Path(".gpu")
PARTS = 3
CARRY_LIMIT = 64 * 2**20  # one device call: working tree + carried paths
OUT_FILE_LIMIT = 16 * 2**20  # one file back from $OUT
JPEG_MARKS = ("jpeg", "jpg", "lossy", "4a07d12c")  # the lossy copy (its name or its sha256)
LOSSLESS_MARKS = ("png", "lossless", "a7acb84d", "torchvision", "official")


# ---- parts ----------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    """{file name: sha256} from `sha256sum`-style lines; the first line names the whole file."""
    try:
        lines = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise LabError(f"cannot read the parts manifest {path} ({e.strerror})") from None
    return {name: digest for digest, name in lines}


def part_names(whole: str, n: int) -> list[str]:
    """`split`'s suffixes: cifar10-png.part-aa, -ab, ... (n <= 26)."""
    stem = whole.removesuffix(".tar.gz")
    return [f"{stem}.part-a{chr(ord('a') + i)}" for i in range(n)]


def split_file(src: Path, dest: Path, n: int = PARTS) -> dict[str, str]:
    """Cut `src` into n equal parts in `dest` (the last one shorter); return the manifest."""
    size = src.stat().st_size
    step = math.ceil(size / n)
    dest.mkdir(parents=True, exist_ok=True)
    manifest = {src.name: sha256(src)}
    with open(src, "rb") as f:
        for name in part_names(src.name, n):
            (dest / name).write_bytes(f.read(step))
            manifest[name] = sha256(dest / name)
    return manifest


def write_manifest(manifest: dict[str, str], path: Path) -> None:
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in manifest.items()))


def check_parts(folder: Path, manifest: dict[str, str]) -> dict[str, str]:
    """{part: 'ok' | 'missing' | 'bad sha256'} for every part the manifest names."""
    status = {}
    for name, digest in list(manifest.items())[1:]:
        p = Path(folder) / name
        status[name] = (
            "missing" if not p.is_file() else "ok" if sha256(p) == digest else "bad sha256"
        )
    return status


def join_parts(folder: Path, manifest: dict[str, str], out: Path | None = None) -> Path:
    """Concatenate the parts into the whole file and check its sha256; a bad join is deleted."""
    whole, digest = next(iter(manifest.items()))
    out = Path(out or Path(folder) / whole)
    if out.is_file() and sha256(out) == digest:
        return out
    bad = {k: v for k, v in check_parts(folder, manifest).items() if v != "ok"}
    if bad:
        raise LabError("cannot join: " + ", ".join(f"{k} {v}" for k, v in bad.items())
                       + "; carry those parts again (README, GPU runbook)")  # fmt: skip
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        for name in list(manifest)[1:]:
            with open(Path(folder) / name, "rb") as part:
                shutil.copyfileobj(part, f, 2**22)
    if sha256(tmp) != digest:
        tmp.unlink()
        raise LabError(f"joined parts do not give {whole} (sha256 differs); prepare them again")
    tmp.replace(out)
    return out


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what a device call sends besides `carry`: tracked + untracked, unignored files."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo,
                         capture_output=True, check=True).stdout  # fmt: skip
    files = (repo / f for f in out.decode().split("\0") if f)
    return sum(f.stat().st_size for f in files if f.is_file())


# ---- which runs are done --------------------------------------------------------------------


def is_lossless(source: str) -> bool:
    """Whether a results file's `data` names the lossless copy (or torchvision's official
    batches): JPEG-copy results never count as done for the lossless grid."""
    s = source.lower()
    return not any(m in s for m in JPEG_MARKS) and any(m in s for m in LOSSLESS_MARKS)


def done_runs(folder: Path, lossless_only: bool = True) -> set[tuple[str, int]]:
    """(name, seed) of every finished run saved in `folder` (results/<profile>)."""
    from engine.grid import read_json

    done = set()
    for p in sorted(Path(folder).glob("*__seed*.json")):
        r, problem = read_json(p, needs=("name", "seed"))
        if r is None:  # a half-written file is not a finished run: said, then run again
            print(f"warning: {p} is not a finished run ({problem}); it will be run again")
            continue
        if r.get("status") == "ok" and (not lossless_only or is_lossless(str(r.get("data", "")))):
            done.add((r["name"], int(r["seed"])))
    return done


def plan(
    names: list[str] | None, profile: str, seeds: int, done: set[tuple[str, int]]
) -> list[dict]:
    """The session's queue, in the issue's order: seed 0 of every experiment (the lr and batch
    groups first), then the final model, then seeds 1, 2, ... Inside a tier the longest run goes
    first, so that parallel lanes finish together (longest-processing-time scheduling)."""
    from engine.grid import GROUP_OF, expand
    from tools.cost import run_cost

    def tier(name: str, seed: int) -> int:
        if seed > 0:
            return 2 + seed
        return {"lr": 0, "batch": 0, "final": 2}.get(GROUP_OF[name], 1)

    jobs = [{"name": n, "seed": s, "tier": tier(n, s), **run_cost(n, profile)}
            for s in range(seeds) for n in expand(names or []) if (n, s) not in done]  # fmt: skip
    return sorted(jobs, key=lambda j: (j["tier"], -j["est_units"], j["name"]))


# ---- pack and unpack ------------------------------------------------------------------------


def pack(session: Path, tarball: Path, limit: int = OUT_FILE_LIMIT) -> dict:
    """Pack a session folder (results/<profile>/*.json, logs/, bench.json, provenance.json) into
    one tar.gz; checkpoints and weights stay behind. Over `limit`, the logs are dropped first."""
    session = Path(session)
    files = sorted(p for p in session.rglob("*") if p.is_file() and p.suffix not in (".pt", ".pth")
                   and "checkpoints" not in p.relative_to(session).parts)  # fmt: skip
    for keep_logs in (True, False):
        chosen = [p for p in files if keep_logs or p.relative_to(session).parts[0] != "logs"]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for p in chosen:
                tar.add(p, arcname=str(p.relative_to(session)))
        if buf.tell() <= limit:
            tarball.parent.mkdir(parents=True, exist_ok=True)
            tarball.write_bytes(buf.getvalue())
            return {"files": len(chosen), "bytes": buf.tell(), "logs": keep_logs}
    raise LabError(f"{session}'s results alone exceed {limit / 2**20:.0f} MiB; pack fewer runs")


def _tracked(path: Path) -> bool:
    r = subprocess.run(["git", "ls-files", "--error-unmatch", path.name], cwd=path.parent,
                       capture_output=True)  # fmt: skip
    return r.returncode == 0


def unpack(tarball: Path, into: Path, allow_lossy: bool = False) -> dict:
    """Unpack a session's tarball into `into` (results/<profile>): new runs are written; a
    lossless run already there that git tracks or that finished later is kept; a JPEG-copy run
    in the way is moved to `<into>-jpeg/`. Logs go to `<into>/gpu_sessions/<id>/`, and
    `<into>/PROVENANCE.md` gets (or replaces) this session's section."""
    into = Path(into)
    try:
        tar = tarfile.open(tarball)  # noqa: SIM115 (closed by the `with tar` below)
    except (OSError, tarfile.TarError) as e:
        raise LabError(
            f"cannot open {tarball} ({e}); fetch it again from the device call"
        ) from None
    with tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            return tar.extractfile(members[name]).read()

        prov = json.loads(read("provenance.json")) if "provenance.json" in members else {}
        session_id = prov.get("session", Path(tarball).name.split(".")[0])
        report = {"written": [], "kept": [], "lossy": [], "moved_jpeg": []}
        for name in sorted(n for n in members if n.startswith("results/") and n.endswith(".json")):
            new = json.loads(read(name))
            if "seed" not in new:
                continue
            if not is_lossless(str(new.get("data", ""))) and not allow_lossy:
                report["lossy"].append(Path(name).name)
                continue
            dest = into / Path(name).name
            if dest.exists():
                old = json.loads(dest.read_text())
                if is_lossless(str(old.get("data", ""))):
                    if _tracked(dest) or old.get("finished_at", "") >= new.get("finished_at", ""):
                        report["kept"].append(dest.name)
                        continue
                else:
                    aside = into.with_name(into.name + "-jpeg") / dest.name
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    if not aside.exists():
                        shutil.copy2(dest, aside)
                    report["moved_jpeg"].append(dest.name)
            into.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".tmp")
            tmp.write_bytes(read(name))
            tmp.replace(dest)
            report["written"].append((dest.name, new.get("status"), new.get("test_acc")))
        logs = [
            n for n in members if n.startswith("logs/") or n in ("bench.json", "provenance.json")
        ]
        for name in logs:
            dest = into / "gpu_sessions" / session_id / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(read(name))
    write_provenance(into / "PROVENANCE.md", session_id, prov, report)
    return report


PROV_HEADER = """# Where these results were made

One section per GPU session, written by `python -m tools.runbook unpack` from the session's
own record (`gpu_sessions/<session>/provenance.json`, its logs beside it). A run counts for the
lossless grid only if its `data` names the lossless copy; JPEG-copy runs moved aside sit in
`../full-jpeg/`.
"""


def write_provenance(path: Path, session_id: str, prov: dict, report: dict) -> None:
    """Add or replace this session's section in PROVENANCE.md (unpacking twice changes nothing)."""
    start, end = f"<!-- session {session_id} -->", f"<!-- end {session_id} -->"
    text = path.read_text() if path.exists() else PROV_HEADER
    if start in text:
        head, rest = text.split(start, 1)
        text = head.rstrip("\n") + "\n" + rest.split(end, 1)[1].lstrip("\n")
    rows = "".join(f"| `{n}` | {s} | {'' if a is None else f'{a:.4f}'} |\n"
                   for n, s, a in report["written"])  # fmt: skip
    section = (
        f"\n{start}\n## Session {session_id}\n\n"
        f"- GPU: {prov.get('gpu', 'not recorded')}; {prov.get('versions', '')}\n"
        f"- date (UTC): {prov.get('started', '?')} to {prov.get('ended', '?')}\n"
        f"- command: `{prov.get('command', 'not recorded')}`\n"
        f"- data: {prov.get('data', 'not recorded')}\n"
        f"- runs written here: {len(report['written'])}; kept (already here, lossless): "
        f"{len(report['kept'])}; refused (lossy data): {len(report['lossy'])}\n"
        f"- unpacked: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}\n"
    )
    if rows:
        section += "\n| results file | status | test acc |\n| --- | --- | --- |\n" + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n" + section + f"{end}\n")


# ---- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="split the lossless tarball into parts in .gpu/")
    p.add_argument("--src", type=Path, default=SOURCE)
    p.add_argument("--dir", type=Path, default=PARTS_DIR)
    p.add_argument("--manifest", type=Path, default=MANIFEST)
    for cmd in ("parts", "join"):
        p = sub.add_parser(cmd, help=f"{cmd} the parts in --dir")
        p.add_argument("--dir", type=Path, default=PARTS_DIR)
        p.add_argument("--manifest", type=Path, default=MANIFEST)
    p = sub.add_parser("missing", help="runs of the lossless grid not in the results folder")
    p.add_argument("names", nargs="*")
    p.add_argument("--profile", default="full")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--results", type=Path, default=Path("results"))
    p = sub.add_parser("pack", help="pack a session folder into one tarball")
    p.add_argument("session", type=Path)
    p.add_argument("tarball", type=Path)
    p = sub.add_parser("unpack", help="unpack a session's tarball into results/<profile>")
    p.add_argument("tarball", type=Path)
    p.add_argument("--into", type=Path, default=Path("results/full"))
    p.add_argument("--allow-lossy", action="store_true")
    args = ap.parse_args(argv)

    if args.cmd == "prepare":
        if not args.src.is_file():
            raise LabError(f"{args.src} not found; the lossless copy lives in ../shared/data/")
        manifest = split_file(args.src, args.dir)
        expected = read_manifest(args.manifest) if args.manifest.exists() else None
        if expected is not None and expected != manifest:
            raise LabError(f"the parts differ from {args.manifest}: is {args.src} the right file?")
        if expected is None:
            write_manifest(manifest, args.manifest)
        tree = tree_bytes()
        biggest = max((args.dir / n).stat().st_size for n in list(manifest)[1:])
        print(f"{len(manifest) - 1} parts in {args.dir}, sha256 as in {args.manifest}; working "
              f"tree {tree / 2**20:.1f} MiB + one part {biggest / 2**20:.1f} MiB = "
              f"{(tree + biggest) / 2**20:.1f} MiB per call (limit 64)")  # fmt: skip
        if tree + biggest > CARRY_LIMIT:
            raise LabError("a call would carry more than 64 MiB: shrink the working tree")
    elif args.cmd == "parts":
        status = check_parts(args.dir, read_manifest(args.manifest))
        for name, s in status.items():
            print(f"{name}: {s}")
        return 0 if all(s == "ok" for s in status.values()) else 3
    elif args.cmd == "join":
        out = join_parts(args.dir, read_manifest(args.manifest))
        print(f"joined {out}, sha256 checked")
    elif args.cmd == "missing":
        jobs = plan(args.names, args.profile, args.seeds, done_runs(args.results / args.profile))
        for j in jobs:
            print(f"tier {j['tier']}  {j['name']:<16} seed {j['seed']}  {j['images'] / 1e6:5.2f}M "
                  f"images, {j['steps']:>6,} steps")  # fmt: skip
        print(f"{len(jobs)} runs missing on lossless data in {args.results / args.profile}")
    elif args.cmd == "pack":
        r = pack(args.session, args.tarball)
        print(f"packed {r['files']} files, {r['bytes'] / 2**20:.2f} MiB, into {args.tarball}"
              + ("" if r["logs"] else " (logs dropped to fit)"))  # fmt: skip
    elif args.cmd == "unpack":
        r = unpack(args.tarball, args.into, args.allow_lossy)
        print(f"{len(r['written'])} runs written to {args.into}, {len(r['kept'])} kept, "
              f"{len(r['lossy'])} refused (lossy), {len(r['moved_jpeg'])} JPEG runs moved aside; "
              f"{args.into / 'PROVENANCE.md'} updated")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, errors=(LabError, OSError)))
