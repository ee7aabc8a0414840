#!/bin/bash
# ab-backup.sh OLD NEW [ROUNDS] [DATA]: alternate full backups of DATA
# (default /work/bench/data, see make bench) by two lifeboat binaries, each
# into a new bucket of the MinIO that scripts/minio.sh started, with the
# page cache dropped and DATA read again before each, and print wall and
# CPU time per backup. Run it as
#   LIFEBOAT_TOOLS=... scripts/minio.sh run -- scripts/ab-backup.sh /tmp/lb-old bin/lifeboat
# to tell a change of the code from a change of the machine: on a noisy VM
# only the same binaries in the same minutes can be compared.
set -euo pipefail
old=${1:?usage: ab-backup.sh OLD NEW [ROUNDS] [DATA]}
new=${2:?usage: ab-backup.sh OLD NEW [ROUNDS] [DATA]}
rounds=${3:-4}
data=${4:-/work/bench/data}
: "${LIFEBOAT_TEST_S3_ENDPOINT:?run it under scripts/minio.sh run --}"
export AWS_ACCESS_KEY_ID=$LIFEBOAT_TEST_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$LIFEBOAT_TEST_S3_SECRET_KEY
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME=$work/cache
for i in $(seq "$rounds"); do
	order="old new"
	[ $((i % 2)) = 0 ] && order="new old"
	for v in $order; do
		bin=$old
		[ "$v" = new ] && bin=$new
		repo=s3:http://$LIFEBOAT_TEST_S3_ENDPOINT/ab-$v-$i-$$/repo
		"$bin" init --repo "$repo" --identity-out "$work/id-$v-$i" --key-out "$work/key-$v-$i" -q > /dev/null
		sync
		echo 3 > /proc/sys/vm/drop_caches 2> /dev/null || true
		find "$data" -type f -exec cat {} + > /dev/null
		/usr/bin/time -f "backup $v round $i: %e s wall, %U s user, %S s sys, %M KB peak" \
			"$bin" backup --repo "$repo" --key "$work/key-$v-$i" --no-cache -q "$data" > /dev/null
	done
done
