#!/usr/bin/env bash
# The whole GPU job in one call: benchmark, LR range test, then the full experiment grid in
# parallel lanes on one GPU, under a deadline, with results and logs packed into OUT.
#
#   bash scripts/gpu_full_grid.sh OUT [DATA]        # DATA: cifar10-jpeg.tar.gz or a folder
#
# With the device tool: copy ../shared/data/cifar10-jpeg.tar.gz into .gpu/ (ignored by git),
# carry ".gpu", and run `DEADLINE_S=470 bash scripts/gpu_full_grid.sh "$OUT"`.
# Runs already committed under results/<profile>/ are copied in first and replayed, not
# retrained (RERUN=1 retrains them), so a later session spends its minutes on what is missing
# (the lr and batch groups, further seeds); BENCH=0 skips the benchmark.
#
# The final recipe and the baseline (the two runs that matter most) each get a lane of their
# own; lanes 1..4 share the norm/aug/lr/batch groups. Each lane then adds
# seeds 1, 2 of its runs while time is left. Runs share the GPU, so seconds per epoch are
# measured under that contention: LAB3_RUN_NOTE records it in every result file.
# COMPILE=MODE (e.g. reduce-overhead: torch.compile with CUDA graphs) checks that compiling
# works here, then times the compiled step in the benchmark too and trains every run through it.
# Env: PROFILE (full), DEADLINE_S (seconds for the grid, default 420), PY (python3), COMPILE.
set -u
OUT=${1:?usage: gpu_full_grid.sh OUT [DATA]}
DATA=${2:-.gpu/cifar10-jpeg.tar.gz}
PROFILE=${PROFILE:-full}
DEADLINE_S=${DEADLINE_S:-420}
PY=${PY:-python3}
LANES=4
COMPILE_ARGS=()
[ -n "${COMPILE:-}" ] && COMPILE_ARGS=(--compile "$COMPILE")
export LAB3_DATA_DIR=$DATA LAB3_CACHE_DIR=${LAB3_CACHE_DIR:-/tmp/lab3-cache} PYTHONUNBUFFERED=1
# Each lane's CPU side is light (the data is on the GPU); keep lanes from oversubscribing cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export LAB3_RUN_NOTE="$((LANES + 2)) runs in parallel on one device (scripts/gpu_full_grid.sh)"
mkdir -p "$OUT/logs" "$OUT/results"
if [ "${RERUN:-0}" != 1 ] && [ -d "results/$PROFILE" ]; then
  mkdir -p "$OUT/results/$PROFILE" && cp results/"$PROFILE"/*__seed*.json "$OUT/results/$PROFILE/" 2>/dev/null
fi
T0=$(date +%s)
{ date -u +%FT%TZ; uname -a; nvidia-smi 2>&1 || true; $PY -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())"; } > "$OUT/logs/machine.txt" 2>&1

# Decode the JPEGs once, so the lanes start from the cache.
$PY -c "from engine.data import load_cifar10; d = load_cifar10(); print(d.source, tuple(d.train_images.shape))" > "$OUT/logs/data.log" 2>&1 || { cat "$OUT/logs/data.log"; exit 1; }

# A torch.compile that fails on this machine must not cost the session: try it first on one
# short epoch of the full-profile baseline (200 images: a batch of 128 and one of 72, the shapes
# every batch-128 run meets), and train eager if it fails. The compiled graphs land in
# inductor's cache, so the batch-128 lanes load them instead of compiling again (the bench
# bypasses that cache on purpose: it times a cold compile).
if [ ${#COMPILE_ARGS[@]} -gt 0 ]; then
  CHECK=/tmp/lab3-compile-check
  if ! timeout 200 $PY experiments.py run baseline --profile full --seeds 1 --set train_subset=200 \
      --set epochs=1 --set test_subset=500 --force --no-progress --out "$CHECK" --checkpoints "$CHECK/ck" \
      "${COMPILE_ARGS[@]}" > "$OUT/logs/compile_check.log" 2>&1; then
    echo "torch.compile $COMPILE failed its check: every run trains eager" | tee -a "$OUT/logs/compile_check.log"
    COMPILE_ARGS=()
  fi
  echo "compile check done after $(($(date +%s) - T0))s" >> "$OUT/logs/compile_check.log"
fi

# Benchmark (alone on the device, so its figures are clean), then the LR range test unless its
# result is committed already.
[ -f tools/bench.py ] && [ "${BENCH:-1}" = 1 ] && timeout $((${#COMPILE_ARGS[@]} ? 150 : 75)) \
  $PY -m tools.bench --repeats 5 "${COMPILE_ARGS[@]}" --out "$OUT/results/bench.json" > "$OUT/logs/bench.log" 2>&1
if [ -f lr_finder.py ] && { [ "${RERUN:-0}" = 1 ] || [ ! -f "results/$PROFILE/lr_range.json" ]; }; then
  timeout 60 $PY -m engine.lr_finder --profile "$PROFILE" --out "$OUT/results" --plots "$OUT/plots" \
    --no-progress > "$OUT/logs/lr_finder.log" 2>&1
fi

LEFT=$((DEADLINE_S - ($(date +%s) - T0)))
run_lane() {  # lane-name, then experiments.py arguments; seeds 1..3 while time is left
  local lane=$1; shift
  for seeds in 1 2 3; do
    local left=$((T0 + DEADLINE_S - $(date +%s)))
    [ "$left" -gt 20 ] || break
    timeout -s INT "$left" $PY experiments.py run "$@" --profile "$PROFILE" --seeds "$seeds" \
      --out "$OUT/results" --no-progress --ckpt-every 0 "${COMPILE_ARGS[@]}" >> "$OUT/logs/$lane.log" 2>&1
  done
}
echo "grid starts with ${LEFT}s left of ${DEADLINE_S}s" > "$OUT/logs/grid.log"
run_lane lane_final final &
run_lane lane_base baseline &
for i in $(seq 0 $((LANES - 1))); do
  run_lane "lane$((i + 1))" norm aug lr batch --shard "$i/$LANES" &
done
wait
echo "grid ended after $(($(date +%s) - T0))s" >> "$OUT/logs/grid.log"
ls "$OUT/results/$PROFILE" >> "$OUT/logs/grid.log" 2>&1
grep -h "Test acc" "$OUT"/logs/lane*.log 2>/dev/null | sort | uniq -c | head -100 >> "$OUT/logs/grid.log"

# At most 8 files come back from the device: pack everything into one archive.
mkdir -p "$OUT/plots"
tar -czf "$OUT/gpu_results.tar.gz" -C "$OUT" results logs plots && rm -rf "$OUT/results" "$OUT/logs" "$OUT/plots"
echo "packed $(du -h "$OUT/gpu_results.tar.gz" | cut -f1) after $(($(date +%s) - T0))s"
