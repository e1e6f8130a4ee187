# Sourced by the GPU checks scripts (dni_checks.sh, precision_checks.sh, wavefront_checks.sh, ...):
# run NAME SECONDS COMMAND... writes the command's output to $OUT/NAME.txt and its exit status
# and last line to $OUT/summary.txt (and the terminal). The script sets OUT first.
# pack NAME puts everything under $OUT into $OUT/NAME.tgz and then removes the loose files but
# summary.txt (KEEP=1 keeps them): a device call hands back at most 8 files, and with more than
# that under $OUT the archive itself may be the one left behind.
# release_parts DIR PARTS runs release_checks.sh's PARTS into $OUT/DIR (packed there by its own
# pack) and copies its summary lines into this summary.txt, each marked "DIR: ".
mkdir -p "$OUT"
CHECKS_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
run() {
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  echo "$name rc $? $(tail -1 "$OUT/$name.txt")" | tee -a "$OUT/summary.txt"
}
pack() {
  local name=$1 tmp
  tmp=$(mktemp "${TMPDIR:-/tmp}/pack.XXXXXX") || return 1
  (cd "$OUT" && tar czf "$tmp" --exclude "./$name.tgz" ./*) && mv "$tmp" "$OUT/$name.tgz" || { rm -f "$tmp"; return 1; }
  [[ -n "${KEEP:-}" ]] && return 0
  find "$OUT" -mindepth 1 -maxdepth 1 ! -name "$name.tgz" ! -name summary.txt -exec rm -rf {} +
}
release_parts() {
  local dir=$1 parts=$2
  OUT="$OUT/$dir" PARTS=$parts bash "$CHECKS_HERE/release_checks.sh" > /dev/null
  sed "s/^/$dir: /" "$OUT/$dir/summary.txt" | tee -a "$OUT/summary.txt"
}
