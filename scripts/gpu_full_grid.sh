#!/usr/bin/env bash
# The GPU session's job, in stages, one device call each (README, "GPU runbook", has the exact
# calls). Every stage checks which data parts are on the machine, does its work, and packs the
# whole session so far (results, logs, bench, provenance) into OUT/gpu_results.tar.gz, so each
# call brings back everything finished up to then.
#
#   bash scripts/gpu_full_grid.sh OUT bench   # call 1 (carries part aa): bench.py, batch 512
#   bash scripts/gpu_full_grid.sh OUT warm    # call 2 (carries part ab): mode chosen, compiled
#   bash scripts/gpu_full_grid.sh OUT grid    # call 3 (carries part ac): join, grid to DEADLINE_S
#   bash scripts/gpu_full_grid.sh OUT grid    # call 4, if device time is left: what is missing
#   bash scripts/gpu_full_grid.sh OUT parts   # only report the parts (after the machine went cold)
#
# The data is ../shared/data/cifar10-png.tar.gz (lossless), split here by
# `python -m tools.runbook prepare` into .gpu/ (ignored by git), checked by sha256 on arrival
# and joined in the grid stage. Runs already committed under results/<profile>/ on lossless
# data are not run again; JPEG-copy results do not count. The session lives in .gpu/session/
# (kept on the machine between calls while it stays warm).
# Env: PROFILE (full), SEEDS (3), LANES (8), DEADLINE_S (420: seconds the grid may train),
# COMPILE (eager, the default: no compile cost; auto: the faster of eager and reduce-overhead
# in the bench, then the warm stage compiles; or one torch.compile mode), COMPILE_MIN_STEPS (2000: torch.compile only for runs that long), PY (python3),
# BENCH_ARGS (extra bench.py flags).
set -u
OUT=${1:?usage: gpu_full_grid.sh OUT bench|warm|grid|parts}
STAGE=${2:?usage: gpu_full_grid.sh OUT bench|warm|grid|parts}
PROFILE=${PROFILE:-full}
SEEDS=${SEEDS:-3}
LANES=${LANES:-8}
DEADLINE_S=${DEADLINE_S:-420}
COMPILE=${COMPILE:-eager}  # auto costs a cold inductor compile: only with device time to spare
COMPILE_MIN_STEPS=${COMPILE_MIN_STEPS:-2000}
PY=${PY:-python3}
GPU=.gpu
S=$GPU/session
DATA=$GPU/cifar10-png.tar.gz
T0=$(date +%s)
mkdir -p "$S/logs" "$S/results" "$GPU/cache" "$GPU/inductor" "$OUT"
# Caches inside the checkout's ignored .gpu/: the device keeps them between calls while warm.
export LAB3_CACHE_DIR=$GPU/cache TORCHINDUCTOR_CACHE_DIR=$GPU/inductor PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # lanes' CPU side is light: the data is on the GPU
[ -f "$S/id" ] || date -u +%Y%m%dT%H%M%SZ > "$S/id"
CMD="PROFILE=$PROFILE SEEDS=$SEEDS LANES=$LANES DEADLINE_S=$DEADLINE_S COMPILE=$COMPILE bash scripts/gpu_full_grid.sh \"\$OUT\" $STAGE"
log() { echo "[$(date -u +%T) +$(($(date +%s) - T0))s $STAGE] $*" | tee -a "$S/logs/session.log"; }

pack() {  # everything so far, one file back (the device returns at most 8 of 16 MiB)
  $PY - "$S" "$STAGE" "$*" <<'EOF'
import json, sys, datetime as dt, subprocess, torch
s, stage, cmd = sys.argv[1:]
p = f"{s}/provenance.json"
try:
    prov = json.load(open(p))
except OSError:
    prov = {"session": open(f"{s}/id").read().strip(), "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
smi = subprocess.run("nvidia-smi --query-gpu=name,driver_version --format=csv,noheader", shell=True, capture_output=True, text=True).stdout.strip()
import torchvision
prov.update(gpu=smi or (torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (CPU rehearsal)"),
            versions=f"torch {torch.__version__}, torchvision {torchvision.__version__}",
            ended=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
prov.setdefault("commands", []).append(cmd)
prov["command"] = "; ".join(dict.fromkeys(prov["commands"]))
json.dump(prov, open(p, "w"), indent=1)
EOF
  $PY -m tools.runbook pack "$S" "$OUT/gpu_results.tar.gz" | tee -a "$S/logs/session.log"
}

log "parts on this machine:"
$PY -m tools.runbook parts 2>&1 | tee -a "$S/logs/session.log"
{ date -u +%FT%TZ; uname -a; nvidia-smi 2>&1 || true
  $PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"; } > "$S/logs/machine.txt" 2>&1

case $STAGE in
parts) ;;
bench)
  # Alone on the GPU so its figures are clean: the whole loop at batch 512, eager against
  # torch.compile reduce-overhead (cold: its payback point) unless COMPILE=eager, without the slow per-image references (measured at batch 128 before). No data has arrived
  # yet: the loop runs on random uint8 images of CIFAR's shape (the same speed).
  SKIP=loop_pil,aug_pil,model_torchvision
  M=$([ "$COMPILE" = auto ] && echo reduce-overhead || { [ "$COMPILE" != eager ] && echo "$COMPILE"; })
  log "bench, batch 512: eager${M:+ and $M}"
  timeout 200 $PY -m tools.bench --batch-size 512 --skip $SKIP ${M:+--compile "$M"} \
    ${BENCH_ARGS:-} --out "$S/bench.json" > "$S/logs/bench.log" 2>&1
  log "bench ${M:-eager} exit $?"
  grep -h "whole loop at batch\|paid back\|images/s\|training loop" "$S"/logs/bench*.log | tee -a "$S/logs/session.log"
  ;;
warm)
  # The grid's execution mode: COMPILE, or with COMPILE=auto the fastest loop the bench timed.
  # A torch.compile mode is checked here and inductor's cache filled with every shape the
  # compiled runs meet (a full batch and the epoch's last, smaller one, per batch size), in
  # parallel processes, so that the lanes load compiled code instead of compiling it; if that
  # fails, the grid trains eager.
  MODE=$COMPILE
  [ "$MODE" = auto ] && MODE=$($PY -m tools.lanes --choose "$S/bench.json")
  log "mode chosen: $MODE"
  if [ "$MODE" != eager ]; then
    timeout 240 $PY -m tools.lanes --warm --profile "$PROFILE" --compile "$MODE" \
      --compile-min-steps "$COMPILE_MIN_STEPS" --session "$S" > "$S/logs/warm.log" 2>&1
    rc=$?
    log "compile warm-up exit $rc: $(tail -1 "$S/logs/warm.log")"
    [ $rc = 0 ] || MODE=eager
  fi
  echo "$MODE" > "$S/mode"
  ;;
grid)
  if ! $PY -m tools.runbook join 2>&1 | tee -a "$S/logs/session.log"; then
    log "data incomplete: carry the missing parts again with the 'parts' stage, then 'grid'"
    pack "$CMD"; exit 3
  fi
  export LAB3_DATA_DIR=$DATA LAB3_RUN_NOTE="up to $LANES runs in parallel on one device (scripts/gpu_full_grid.sh)"
  $PY - "$S" <<'EOF' 2>&1 | tee -a "$S/logs/session.log"
import json, sys
from engine.data import load_cifar10
from tools.runbook import read_manifest
d = load_cifar10()
p = f"{sys.argv[1]}/provenance.json"
try:
    prov = json.load(open(p))
except OSError:
    prov = {"session": open(f"{sys.argv[1]}/id").read().strip()}
whole, digest = next(iter(read_manifest().items()))
prov["data"] = f"{d.source}; {whole} joined from parts, sha256 {digest} checked"
json.dump(prov, open(p, "w"), indent=1)
print("data:", prov["data"], tuple(d.train_images.shape), tuple(d.test_images.shape))
EOF
  [ "${PIPESTATUS[0]}" = 0 ] || { log "data did not load"; pack "$CMD"; exit 1; }
  # The warm stage's choice; without one (it did not run), COMPILE, or for auto eager.
  MODE=$(cat "$S/mode" 2>/dev/null || echo "$COMPILE")
  [ "$MODE" = auto ] && MODE=eager
  [ "$MODE" = eager ] && MODE=""
  log "grid: profile $PROFILE, $SEEDS seeds, $LANES lanes, deadline ${DEADLINE_S}s, mode ${MODE:-eager}"
  $PY -m tools.lanes --profile "$PROFILE" --seeds "$SEEDS" --lanes "$LANES" \
    --deadline-s "$DEADLINE_S" --session "$S" ${MODE:+--compile "$MODE"} \
    --compile-min-steps "$COMPILE_MIN_STEPS" 2>&1 | tee -a "$S/logs/session.log"
  ;;
*) echo "unknown stage $STAGE: bench, warm, grid or parts" >&2; exit 2 ;;
esac
log "stage done"
pack "$CMD"
