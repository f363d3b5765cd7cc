#!/usr/bin/env bash
# hotpatch demo 2: a real library, a real CVE. Builds zlib 1.2.12 from
# ../shared/realworld/zlib (see its README), starts a few processes that use
# libz.so.1 and hit CVE-2022-37434 (inflate() writing past the caller's
# extra-field buffer), builds the patch with one `hotpatch build --src` from
# the two upstream commits, applies it to every process that maps the
# library, and shows the canary intact. Needs Go, gcc, make and patch; run as
# root (ptrace). Run from anywhere: bash examples/zlib-cve.sh
# With link-time optimisation (the patch then comes from the linked
# libraries): ZLIB_CFLAGS="-O2 -flto" bash examples/zlib-cve.sh
set -euo pipefail
cflags=${ZLIB_CFLAGS:-}
configure="./configure"
[ -z "$cflags" ] || configure="CFLAGS='$cflags' ./configure"
cd "$(dirname "$0")/.."
zlib=../shared/realworld/zlib
[ -f "$zlib/zlib-1.2.12.tar.gz" ] || { echo "zlib 1.2.12 not found in $zlib" >&2; exit 1; }
out=$(mktemp -d /tmp/hotpatch-zlib-demo.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build hotpatch; unpack zlib 1.2.12 (pristine) and build it as installed: $configure && make"
go build -o "$out/hotpatch" ./cmd/hotpatch
tar xzf "$zlib/zlib-1.2.12.tar.gz" -C "$out"
cp -a "$out/zlib-1.2.12" "$out/installed"
(cd "$out/installed" && sh -c "$configure" >/dev/null && make -j2 libz.so.1.2.12 >/dev/null)
lib="$out/installed/libz.so.1.2.12"
gcc -O2 -I "$out/installed" cmd/hotpatch/testdata/zlib_extra.c "$lib" -o "$out/zlib_extra"
echo "ok: $lib"

step "start 3 processes that inflate a gzip header with a 64-byte extra field into a 16-byte buffer, 4 bytes at a time"
for i in 1 2 3; do
	LD_LIBRARY_PATH="$out/installed" "$out/zlib_extra" > "$out/p$i.log" &
	pids+=($!)
done
sleep 1
for i in 1 2 3; do echo "process ${pids[$((i-1))]}: $(tail -n 1 "$out/p$i.log")  (canary after the buffer overwritten)"; done

step "build the patch from the source tree and the two upstream commits, with zlib's own build command"
"$out/hotpatch" build --src "$out/zlib-1.2.12" --fix "$zlib/CVE-2022-37434-1.patch" --fix "$zlib/CVE-2022-37434-2.patch" \
	--target "$lib" -o "$out/zlib-cve.hp" --id zlib-cve-2022-37434 -- sh -c "$configure && make -j2 libz.so.1.2.12"

step "apply it to every process that maps the library (the demo's patch is unsigned)"
"$out/hotpatch" apply "$out/zlib-cve.hp" --allow-unsigned
sleep 1
for i in 1 2 3; do echo "process ${pids[$((i-1))]}: $(tail -n 1 "$out/p$i.log")  (canary intact)"; done

step "revert"
"$out/hotpatch" revert zlib-cve-2022-37434
sleep 1
for i in 1 2 3; do echo "process ${pids[$((i-1))]}: $(tail -n 1 "$out/p$i.log")"; done
rm -rf "$out"
