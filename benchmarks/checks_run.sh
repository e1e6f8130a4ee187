# Sourced by the GPU checks scripts (dni_checks.sh, precision_checks.sh, wavefront_checks.sh):
# run NAME SECONDS COMMAND... writes the command's output to $OUT/NAME.txt and its exit status
# and last line to $OUT/summary.txt (and the terminal). The script sets OUT first.
mkdir -p "$OUT"
run() {
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "$name rc $? $(tail -1 "$OUT/$name.txt")" | tee -a "$OUT/summary.txt"
}
