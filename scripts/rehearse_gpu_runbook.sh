#!/usr/bin/env bash
# The GPU runbook rehearsed on the CPU with the smoke profile, as the device tool would run it:
# a fresh copy of the checkout (what a call sends), one data part copied in before each call
# (what `carry` brings), every call's tarball kept; then unpacking, and a later session on a
# fresh machine that continues from the unpacked results with a second seed.
#
#   python -m tools.runbook prepare && bash scripts/rehearse_gpu_runbook.sh [LOG]
#
# LOG (default results/rehearsal/runbook_cpu_smoke.log) gets the whole output, with the
# scratch folder written as $WORK. Takes about 3 minutes on two cores.
set -u
REPO=$(pwd)
LOG=${1:-results/rehearsal/runbook_cpu_smoke.log}
WORK=$(mktemp -d)
export PY=${PY:-$REPO/.venv/bin/python} PROFILE=smoke LANES=2 COMPILE=eager OMP_NUM_THREADS=1
export BENCH_ARGS="--width 8 --batch-size 64 --steps 1 --repeats 2 --warmup 1 --device cpu"
mkdir -p "$(dirname "$LOG")"
(
  mkdir -p "$WORK/repo" && cd "$WORK" && git -C "$REPO" ls-files -co --exclude-standard -z \
    | (cd "$REPO" && xargs -0 cp --parents -t "$WORK/repo")
  cd "$WORK/repo" && mkdir -p .gpu results
  call() {  # PART STAGE: what one device call does
    local part=$1 t
    shift
    [ -n "$part" ] && cp "$REPO/.gpu/$part" .gpu/
    rm -rf "$WORK/out" && mkdir -p "$WORK/out"
    t=$(date +%s)
    bash scripts/gpu_full_grid.sh "$WORK/out" "$@"
    echo "== call $* (carry ${part:-nothing}): exit $? in $(($(date +%s) - t))s"
    cp "$WORK/out/gpu_results.tar.gz" "$WORK/last.tar.gz"
  }
  echo "== session 1: seed 0, the grid stage twice (a short deadline, then the rest)"
  export SEEDS=1
  call cifar10-png.part-aa bench
  call cifar10-png.part-ab warm
  DEADLINE_S=15 call cifar10-png.part-ac grid
  DEADLINE_S=120 call "" grid
  $PY -m tools.runbook unpack "$WORK/last.tar.gz" --into results/smoke
  $PY -m tools.runbook missing --profile smoke --seeds 2 --results results | tail -1
  echo "== session 2: a fresh machine, session 1's results as committed, seeds 0 and 1"
  rm -rf .gpu/session .gpu/cache .gpu/cifar10-png.*
  export SEEDS=2
  call cifar10-png.part-aa bench
  call cifar10-png.part-ab warm
  DEADLINE_S=120 call cifar10-png.part-ac grid
  $PY -m tools.runbook unpack "$WORK/last.tar.gz" --into results/smoke
  $PY -m tools.runbook missing --profile smoke --seeds 2 --results results | tail -1
) 2>&1 | sed "s|$WORK|\$WORK|g" | tee "$LOG"
rm -rf "$WORK"
