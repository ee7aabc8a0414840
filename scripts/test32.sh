#!/usr/bin/env bash
# test32.sh PKG... — the whole suites of PKG built for 386 (32-bit int,
# time_t and unaligned 64-bit atomics break code anywhere), run natively
# where the kernel runs 32-bit x86 programs. A kernel without IA32
# emulation (CONFIG_IA32_EMULATION off, or ia32_emulation=0, as on some
# VMs) cannot: there every test binary is still built for 386, which
# catches what the compiler catches (constants that overflow int, 64-bit
# atomics' alignment checked by vet in 'make lint'), and the run is
# skipped, saying so.
set -euo pipefail
GO=${GO:-go}

probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
cat > "$probe_dir/main.go" <<'GO'
package main

func main() {}
GO
(cd "$probe_dir" && GOARCH=386 CGO_ENABLED=0 GOFLAGS= "$GO" build -o probe main.go) >/dev/null 2>&1 ||
	{ echo "test32: cannot build a 386 program" >&2; exit 1; }

if "$probe_dir/probe" 2>/dev/null; then
	exec env GOARCH=386 "$GO" test -count=1 -timeout 30m "$@"
fi

echo "test32: this kernel cannot run 32-bit x86 programs (IA32 emulation is off):"
echo "test32: building every test binary for 386 instead of running it"
mkdir -p "$probe_dir/bin"
GOARCH=386 "$GO" test -count=1 -c -o "$probe_dir/bin/" "$@"
echo "test32: built $(ls "$probe_dir/bin" | wc -l) test binaries for 386; not run on this kernel"
