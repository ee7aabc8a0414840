#!/usr/bin/env bash
# `make bench`: lifeboat against restic 0.18.1, same dataset, same MinIO,
# one run. See docs/benchmarks.md.
#
#   scripts/bench.sh [lbbench flags...]
#
# Environment:
#   LIFEBOAT_TOOLS  where restic and MinIO live / get installed (default .tools/)
#   BENCH_DIR       dataset + scratch base (default $TMPDIR/lifeboat-bench);
#                   the dataset is reused when its stamp matches
#   BENCH_SIZE_MB   dataset size in MiB (default 1300)
#   BENCH_SEED      dataset PRNG seed (default 1)
#   BENCH_ORDER     alternating (default) | interleaved | sequential
#   BENCH_TOOLS     restic,lifeboat (default) | restic (baseline only)
#   BENCH_OUT       results file (default bin/bench-results.md)
#   BENCH_PRETOUCH_MIB  memory touched and freed before each step (default
#                   3072; 0 = off); see docs/benchmarks.md
set -euo pipefail

RESTIC_VERSION=0.18.1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${LIFEBOAT_TOOLS:-$ROOT/.tools}
RESTIC=$TOOLS/restic
OUT=${BENCH_OUT:-$ROOT/bin/bench-results.md}
export LIFEBOAT_TOOLS=$TOOLS

die() { echo "bench.sh: $*" >&2; exit 2; }
command -v go >/dev/null || die "go is not on PATH"

# restic, pinned.
if ! { [[ -x $RESTIC ]] && "$RESTIC" version 2>/dev/null | grep -q "^restic $RESTIC_VERSION "; }; then
	echo "bench.sh: installing restic $RESTIC_VERSION into $TOOLS" >&2
	mkdir -p "$TOOLS"
	(cd "$TOOLS" && GOBIN="$TOOLS" GOFLAGS= go install "github.com/restic/restic/cmd/restic@v$RESTIC_VERSION")
fi

# MinIO (scripts/minio.sh pins and installs it).
"$ROOT/scripts/minio.sh" install

# lifeboat and the driver.
mkdir -p "$ROOT/bin"
if [[ ${BENCH_TOOLS:-restic,lifeboat} == *lifeboat* ]]; then
	"${MAKE:-make}" -C "$ROOT" --no-print-directory build
fi
(cd "$ROOT" && CGO_ENABLED=0 go build -o bin/lbbench ./internal/bench/lbbench)

cd "$ROOT"
exec "$ROOT/scripts/minio.sh" run -- "$ROOT/bin/lbbench" \
	-restic "$RESTIC" -lifeboat "$ROOT/bin/lifeboat" -out "$OUT" "$@"
