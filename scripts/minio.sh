#!/usr/bin/env bash
# Test harness for the S3 store: a throw-away MinIO server on loopback.
#
#   scripts/minio.sh install        build the pinned MinIO into $TOOLS (once)
#   scripts/minio.sh run -- CMD...  start MinIO on a free 127.0.0.1 port with an
#                                   empty data dir, run CMD with
#                                   LIFEBOAT_TEST_S3_* and LIFEBOAT_TEST_REQUIRE_S3=1
#                                   set, stop MinIO, remove the data, exit with
#                                   CMD's status.
#
# TOOLS is $LIFEBOAT_TOOLS, or .tools/ at the repository root.
set -euo pipefail

MINIO_MODULE=github.com/minio/minio
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${LIFEBOAT_TOOLS:-$ROOT/.tools}
BIN=$TOOLS/minio
STAMP=$TOOLS/minio.version

ACCESS_KEY=lifeboat-test
SECRET_KEY=lifeboat-test-secret-7f3a9c

die() { echo "minio.sh: $*" >&2; exit 2; }

# installed succeeds when $BIN is the pinned version: the stamp file says so,
# or the binary's own build info does (then the stamp is written).
installed() {
	[[ -x $BIN ]] || return 1
	if [[ -f $STAMP && $(<"$STAMP") == "$MINIO_VERSION" ]]; then
		return 0
	fi
	if go version -m "$BIN" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$MINIO_MODULE[[:space:]]+$MINIO_VERSION([[:space:]]|$)"; then
		echo "$MINIO_VERSION" >"$STAMP"
		return 0
	fi
	return 1
}

cmd_install() {
	if installed; then
		echo "minio.sh: MinIO $MINIO_VERSION already installed in $TOOLS" >&2
		return 0
	fi
	command -v go >/dev/null || die "go is not on PATH"
	mkdir -p "$TOOLS"
	rm -f "$STAMP"
	echo "minio.sh: installing MinIO $MINIO_VERSION into $TOOLS (takes minutes on a cold build cache)" >&2
	(cd "$TOOLS" && GOBIN="$TOOLS" GOFLAGS= go install "$MINIO_MODULE@$MINIO_VERSION")
	echo "$MINIO_VERSION" >"$STAMP"
}

free_port() {
	if command -v python3 >/dev/null; then
		python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
		return
	fi
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 40000))
		# Connection refused means nobody listens there.
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

cmd_run() {
	[[ ${1:-} == -- ]] && shift
	(($# > 0)) || die "usage: minio.sh run -- CMD [ARGS...]"
	installed || die "MinIO is not installed in $TOOLS: run scripts/minio.sh install first"

	local work port pid="" status
	work=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-minio.XXXXXX")
	cleanup() {
		if [[ -n $pid ]]; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
		rm -rf "$work"
	}
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	mkdir "$work/data"
	port=$(free_port)
	MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY \
		MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CALLHOME_ENABLE=off \
		"$BIN" server --quiet --address "127.0.0.1:$port" "$work/data" >"$work/minio.log" 2>&1 &
	pid=$!

	local deadline=$((SECONDS + 60))
	until curl -fsS -o /dev/null "http://127.0.0.1:$port/minio/health/live" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$work/minio.log" >&2
			die "MinIO exited during startup"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 50 "$work/minio.log" >&2
			die "MinIO not live on 127.0.0.1:$port after 60 s"
		fi
		sleep 0.2
	done
	echo "minio.sh: MinIO $MINIO_VERSION listening on 127.0.0.1:$port" >&2

	export LIFEBOAT_TEST_S3_ENDPOINT=127.0.0.1:$port
	export LIFEBOAT_TEST_S3_ACCESS_KEY=$ACCESS_KEY
	export LIFEBOAT_TEST_S3_SECRET_KEY=$SECRET_KEY
	export LIFEBOAT_TEST_REQUIRE_S3=1
	set +e
	"$@"
	status=$?
	set -e
	exit "$status"
}

case ${1:-} in
install) shift; cmd_install "$@" ;;
run) shift; cmd_run "$@" ;;
*) die "usage: scripts/minio.sh install | run -- CMD [ARGS...]" ;;
esac
