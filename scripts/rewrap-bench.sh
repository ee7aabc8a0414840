#!/usr/bin/env bash
# Times 'lifeboat prune --rewrap' on a dataset, against the MinIO that
# scripts/minio.sh starts:
#   scripts/minio.sh run -- scripts/rewrap-bench.sh [DATA_DIR]
# DATA_DIR defaults to $BENCH_DIR/data (what 'make bench' generates).
# It backs DATA_DIR up into a new bucket, adds a recipient with
# 'lifeboat key add', times the rewrap, and checks every pack with the
# added identity. LB names the binary (default bin/lifeboat).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LB=${LB:-bin/lifeboat}
DATA=${1:-${BENCH_DIR:?set BENCH_DIR or pass the data directory}/data}
: "${LIFEBOAT_TEST_S3_ENDPOINT:?run under scripts/minio.sh run --}"
export AWS_ACCESS_KEY_ID=$LIFEBOAT_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$LIFEBOAT_TEST_S3_SECRET_KEY AWS_REGION=us-east-1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
R="s3:http://$LIFEBOAT_TEST_S3_ENDPOINT/rewrap-$$"
export XDG_CACHE_HOME=$W/cache
"$LB" init --repo "$R" --identity-out "$W/a.txt" --key-out "$W/w0.key" >/dev/null
"$LB" backup --repo "$R" --key "$W/w0.key" --no-cache "$DATA" >/dev/null
b=$("$LB" init --repo "$W/scratch" --identity-out "$W/b.txt" --key-out "$W/scratch.key" --json |
	sed -n 's/.*"recipients": *\["\([^"]*\)".*/\1/p')
"$LB" key add --repo "$R" --identity "$W/a.txt" --recipient "$b" --key-out "$W/w1.key" >/dev/null
/usr/bin/time -f "rewrap: %e s wall, %U s user, %S s sys, %M KiB peak RSS" \
	"$LB" prune --rewrap --repo "$R" --identity "$W/a.txt"
"$LB" key list --repo "$R" --identity "$W/b.txt" | tail -1
/usr/bin/time -f "check --read-data with the added identity: %e s" \
	"$LB" check --read-data --repo "$R" --identity "$W/b.txt" | tail -1
