#!/usr/bin/env bash
# The CUDA engine's typed device state (genlab/engines/cuda/records.py) on one GPU, in two device
# calls of 10 minutes:
#   PART=checks  the GPU suite, the kernel harnesses (benchmarks/kernels/all.py), profile_step.py,
#                then compute-sanitizer memcheck and racecheck over the engine's representative
#                tests (release_checks.sh's "checks")
#   PART=bench   `genlab bench` of W1, W3 and W5 (growth) with level, dataflow_rows and PyTorch's
#                level graph, the trees alternated: base, head, base, head (the first process of a
#                machine runs a few percent slower); base: .device/base (`git archive <base> | tar
#                -x -C .device/base`); SUITE=1 runs the GPU suite first; WORKLOADS (default
#                "W1 W3 W5") and ROUNDS (default 2) narrow or widen it; IMPLEMENTATIONS (default
#                "genlab_level genlab_dataflow_rows torch_level_graph") names what W1-W4 run;
#                KINDS=1 times the conv and attention workloads too (genlab.bench.kinds, no
#                torch.compile), alternated the same way; AFTER=1 runs the kernel harnesses,
#                profile_step.py and memcheck after it (one call for all but racecheck); one
#                process of the base runs first and is not counted (WARM=0: none)
#   PART=events  benchmarks/growth_events.py (W5's growth events one by one, their parts and the
#                host's profile), the trees alternated as in bench, ROUNDS times; SUITE=1 and
#                AFTER=1 as in bench
# Logs and JSON to $OUT, packed into $OUT/state_checks.tgz beside summary.txt (checks_run.sh's pack;
# KEEP=1 keeps the loose files). On the GPU machine:
#   source .device/setup.sh && GENLAB_COMMIT=<hash> BASE_COMMIT=<hash> PART=checks bash benchmarks/state_checks.sh
set -u
OUT=${OUT:-/tmp/state_out}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
source "$HERE/checks_run.sh"  # run NAME SECONDS COMMAND...
run_base() {  # run NAME SECONDS COMMAND... in the base tree (.device/base), as `run` does in this one
    local name=$1 limit=$2; shift 2
    (cd "$ROOT/.device/base" && GENLAB_COMMIT=${BASE_COMMIT:-base} PYTHONPATH=/tmp/site:$PWD \
      timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1; \
      echo "$name rc $? $(tail -1 "$OUT/$name.txt")" | tee -a "$OUT/summary.txt")
}
echo "${GENLAB_COMMIT:-unknown} base ${BASE_COMMIT:-unknown}" > "$OUT/commit.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$OUT/commit.txt" 2>/dev/null || true
if [[ "${PART:-checks}" == checks ]]; then
    run gpu_suite 300 python -m pytest -m gpu -q -p no:cacheprovider tests
    run kernel_harnesses 150 python "$HERE/kernels/all.py"
    run profile_step 60 python "$HERE/profile_step.py" W1
    release_parts sanitizers checks
elif [[ "$PART" == events ]]; then
    [[ -n "${SUITE:-}" ]] && run gpu_suite 200 python -m pytest -m gpu -q -p no:cacheprovider tests
    for i in $(seq "${ROUNDS:-3}"); do
        run_base "events_base$i" 80 python "$HERE/growth_events.py" --json "$OUT/events_base$i.json"
        run "events_head$i" 80 python "$HERE/growth_events.py" --json "$OUT/events_head$i.json"
    done
    [[ -n "${AFTER:-}" ]] && release_parts sanitizers memcheck
else
    [[ -n "${SUITE:-}" ]] && run gpu_suite 200 python -m pytest -m gpu -q -p no:cacheprovider tests
    BENCH=()
    for w in ${WORKLOADS:-W1 W3 W5}; do BENCH+=(--workload "$w"); done
    for impl in ${IMPLEMENTATIONS:-genlab_level genlab_dataflow_rows torch_level_graph}; do
        BENCH+=(--implementation "$impl")
    done
    BENCH+=(--growth-implementation genlab_level --growth-implementation genlab_dataflow_rows)
    # the second process on a fresh machine ran 3-9% slow in every executor (round9, round10): one
    # process of the base first, thrown away (WARM=0: none)
    [[ "${WARM:-1}" != 0 ]] && run_base bench_warm 140 python -m genlab bench "${BENCH[@]}" --out "$OUT/warm"
    for i in $(seq "${ROUNDS:-2}"); do
        run_base "bench_base$i" 140 python -m genlab bench "${BENCH[@]}" --out "$OUT/base$i"
        run "bench_head$i" 140 python -m genlab bench "${BENCH[@]}" --out "$OUT/head$i"
        if [[ -n "${KINDS:-}" ]]; then
            run_base "kinds_base$i" 120 python -m genlab.bench.kinds --no-compile --repeats 20 \
                --out "$OUT/kinds_base$i.json"
            run "kinds_head$i" 120 python -m genlab.bench.kinds --no-compile --repeats 20 --out "$OUT/kinds_head$i.json"
        fi
    done
    if [[ -n "${AFTER:-}" ]]; then  # the harnesses and memcheck after the bench, in the same call
        run kernel_harnesses 120 python "$HERE/kernels/all.py"
        run profile_step 45 python "$HERE/profile_step.py" W1
        release_parts sanitizers memcheck
    fi
fi
pack state_checks
