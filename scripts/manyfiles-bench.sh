#!/usr/bin/env bash
# Backs up and restores a tree of many small files with restic and
# lifeboat against the MinIO that scripts/minio.sh starts, and prints wall
# time, CPU and peak RSS per step ("Many small files" in docs/benchmarks.md):
#   scripts/minio.sh run -- scripts/manyfiles-bench.sh
# FILES (default 1000000) files of 0 to MAX_SIZE (2048) bytes, generated
# by internal/bench/manyfiles into $BENCH_DIR/manyfiles-$FILES (kept for
# the next run). ORDER ("restic lifeboat") is the order of the tools in
# each step. Each restore is compared with the generated tree. Needs
# restic on PATH or in $LIFEBOAT_TOOLS, and root to drop the page cache
# before each full backup and restore (skipped otherwise).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${LIFEBOAT_TEST_S3_ENDPOINT:?run under scripts/minio.sh run --}"
: "${BENCH_DIR:?set BENCH_DIR to a directory with room for three copies of the tree}"
FILES=${FILES:-1000000}
MAX_SIZE=${MAX_SIZE:-2048}
ORDER=${ORDER:-restic lifeboat}
LB=${LB:-bin/lifeboat}
RESTIC=${RESTIC:-$(command -v restic || echo "${LIFEBOAT_TOOLS:-.tools}/restic")}
export AWS_ACCESS_KEY_ID=$LIFEBOAT_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$LIFEBOAT_TEST_S3_SECRET_KEY AWS_REGION=us-east-1
export RESTIC_PASSWORD=manyfiles

GEN=(-files "$FILES" -max-size "$MAX_SIZE")
DATA=$BENCH_DIR/manyfiles-$FILES-$MAX_SIZE
CGO_ENABLED=0 go build -o bin/manyfiles ./internal/bench/manyfiles
if [[ ! -d $DATA ]]; then
	mkdir -p "$BENCH_DIR"
	rm -rf "$DATA.tmp" # an interrupted generation's
	bin/manyfiles -dir "$DATA.tmp" "${GEN[@]}" >/dev/null
	mv "$DATA.tmp" "$DATA"
fi
W=$BENCH_DIR/manyfiles-work
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
stamp=$(date -u +%Y%m%d-%H%M%S)

drop() { if [[ -w /proc/sys/vm/drop_caches ]]; then sync; echo 3 >/proc/sys/vm/drop_caches; fi; }

# command_for TOOL WHAT: sets cmd to the command line of one step.
command_for() {
	local tool=$1 what=$2
	local repo="s3:http://$LIFEBOAT_TEST_S3_ENDPOINT/manyfiles-$tool-$stamp"
	case $tool/$what in
	restic/init) cmd=("$RESTIC" -q -r "$repo" init) ;;
	restic/backup) cmd=("$RESTIC" -q -r "$repo" backup --no-scan "$DATA") ;;
	restic/restore) cmd=("$RESTIC" -q -r "$repo" restore latest --target "$W/restic-target") ;;
	lifeboat/init) cmd=("$LB" init -q --repo "$repo" --identity-out "$W/id" --key-out "$W/key" --cache-dir "$W/lb-cache") ;;
	lifeboat/backup) cmd=("$LB" backup -q --repo "$repo" --key "$W/key" --cache-dir "$W/lb-cache" "$DATA") ;;
	lifeboat/restore) cmd=("$LB" restore -q latest --repo "$repo" --identity "$W/id" --cache-dir "$W/lb-cache" --target "$W/lifeboat-target") ;;
	*) echo "no command for $tool $what" >&2; exit 2 ;;
	esac
}

# step TOOL NAME WHAT: runs the step and prints one table row.
step() {
	local tool=$1 name=$2
	command_for "$tool" "$3"
	/usr/bin/time -o "$W/time" -f "%e %U %S %M" "${cmd[@]}" >"$W/$tool-$3.log" 2>&1 || {
		echo "$tool $name failed:" >&2
		tail -20 "$W/$tool-$3.log" >&2
		exit 1
	}
	awk -v name="$name" -v tool="$tool" '{ printf "| %s | %s | %.2f s | %.1f s | %.0f MiB |\n", name, tool, $1, $2 + $3, $4 / 1024 }' "$W/time"
}

echo "$FILES files of 0 to $MAX_SIZE bytes ($(du -s --apparent-size -m "$DATA" | cut -f1) MiB), order: $ORDER, $(date -u +'%Y-%m-%d %H:%M UTC')"
echo
echo "| step | tool | wall | CPU user+sys | peak RSS |"
echo "| --- | --- | --- | --- | --- |"
for tool in $ORDER; do
	command_for "$tool" init
	"${cmd[@]}" >/dev/null
done
for tool in $ORDER; do drop; step "$tool" "full backup" backup; done
for tool in $ORDER; do step "$tool" "no-change backup" backup; done
for tool in $ORDER; do drop; step "$tool" restore restore; done
for tool in $ORDER; do
	bin/manyfiles -verify -dir "$W/$tool-target$DATA" "${GEN[@]}" >/dev/null || { echo "$tool restored the tree wrongly" >&2; exit 1; }
done
echo
echo "Both restores match the generated tree."
