#!/usr/bin/env bash
# The GPU checks of the CUDA backend, for a machine with an NVIDIA GPU and
# no Go toolchain (the device tool's machines). Build the binaries here
# first:
#
#   bash testdata/gpu/check.sh build      # writes .gpu/lens and .gpu/cuda.test (-tags lenscuda)
#
# then run this script there from the repository root, carrying .gpu:
#
#   bash testdata/gpu/check.sh run [SIZES]
#
# It runs the cuda test suite (every kernel and the whole training step
# against the host reference, loss and gradients within 1e-3), one short
# training script on device="cuda", and `lens bench --device cuda` next to
# PyTorch on the same GPU. LENS_PYTHON picks the Python with CUDA PyTorch
# (default: the first python3 on PATH that has it).
set -euo pipefail
cd "$(dirname "$0")/../.."
case "${1:-run}" in
build)
  mkdir -p .gpu
  inc=/usr/include
  [ -f "$inc/cuda.h" ] || { echo "need cuda.h (Debian non-free nvidia-cuda-dev)"; exit 1; }
  CGO_CFLAGS="-I$inc" go build -tags lenscuda -ldflags="-s -w" -o .gpu/lens ./cmd/lens
  CGO_CFLAGS="-I$inc" go test -c -tags lenscuda -ldflags="-s -w" -o .gpu/cuda.test ./engine/cuda
  ls -la .gpu
  ;;
run)
  # Everything is also written to $OUT/check.log (the device tool brings
  # $OUT back), and each part has its own time limit so that one hang
  # still leaves the others' results.
  sizes=${2:-tiny,small,medium}
  log=${OUT:-/tmp}/check.log
  exec > >(tee "$log") 2>&1
  set +e
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  if [ -z "${LENS_PYTHON:-}" ]; then
    for p in python3 /usr/bin/python3 /usr/local/bin/python3; do
      if "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        export LENS_PYTHON=$(command -v "$p"); break
      fi
    done
  fi
  echo "PyTorch: ${LENS_PYTHON:-none found} $(${LENS_PYTHON:-false} -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  echo "== cuda tests"
  # The emulator and the PTX regeneration are for machines without a GPU
  # (and this one's nvcc is newer than the checked-in PTX's).
  (cd engine/cuda && timeout 150 ../../.gpu/cuda.test -test.v -test.count=1 -test.skip 'Emulated|PTXUpToDate') |
    grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\w+_test.go|\s+Error)' | head -150
  echo "== per-kernel profile (a synchronize after every launch)"
  for s in tiny medium; do
    LENS_CUDA_PROFILE=1 timeout 60 .gpu/lens bench --one $s --device cuda --steps 20
  done
  echo "== collectors by cost (fractions of step time, medium)"
  timeout 90 .gpu/lens bench --one medium --device cuda --steps 40 --collectors
  echo "== the same training script on cpu and cuda"
  work=$(mktemp -d)
  printf 'the quick brown fox jumps over the lazy dog. %.0s' $(seq 2000) > "$work/corpus.txt"
  cat > "$work/t.star" <<'STAR'
base = model.tiny(seed = 1)
for dev in ["cpu", "cuda"]:
    r = lens.train(model = base, data = data.text("corpus.txt"), lora = lora.config(r = 8, alpha = 16),
                   steps = 20, batch_size = 8, seq_len = 128, lr = 1e-3, eval_every = 10, device = dev, name = "gpu-" + dev)
    print(dev, r.final_loss)
STAR
  (cd "$work" && timeout 120 "$OLDPWD/.gpu/lens" run t.star --store "$work/st") 2>&1 | grep -v ' tok/s ETA' | tail -20
  echo "== lens bench --device cuda"
  timeout ${BENCH_TIMEOUT:-300} .gpu/lens bench --device cuda --sizes "$sizes" --steps 30 --rounds ${ROUNDS:-3}
  echo "== done"
  ;;
*)
  echo "usage: check.sh build | run [SIZES]"; exit 2
  ;;
esac
