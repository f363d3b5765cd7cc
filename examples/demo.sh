#!/usr/bin/env bash
# hotpatch demo: build a small C service, start it, patch it live, revert.
# Needs only Go and gcc. Run from anywhere: bash examples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=examples/build
mkdir -p "$out"

# The flags a patchable build should use (see README.md): optimised as usual,
# with -flive-patching=inline-clone so GCC makes no cross-function
# assumptions a patch could break, and -g so hotpatch can check that.
CFLAGS="-O2 -g -flive-patching=inline-clone"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "build hotpatch and the sample service"
go build -o "$out/hotpatch" ./cmd/hotpatch
gcc $CFLAGS -o "$out/service" examples/service/service.c
gcc $CFLAGS -ffunction-sections -fdata-sections -c -o "$out/fix.o" examples/service/fix.c
echo "ok"

step "start the service (version 1.0: accepts a 16-character name into a 16-byte buffer)"
"$out/service" > "$out/service.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 1.3
tail -n 4 "$out/service.log"

step "generate a signing key (the vendor's), build and sign the patch from fix.o"
rm -f "$out/demo.key" "$out/demo.key.pub"
"$out/hotpatch" keygen -o "$out/demo.key"
"$out/hotpatch" build --target "$out/service" --new "$out/fix.o" -o "$out/fix.hp" --id demo-fix-1 --key "$out/demo.key"

step "verify the patch with the vendor's public key (what an operator does before applying)"
"$out/hotpatch" verify "$out/fix.hp" --trust "$out/demo.key.pub"

step "apply it to the running process $pid, trusting that key"
"$out/hotpatch" apply "$out/fix.hp" --pid "$pid" --trust "$out/demo.key.pub"
sleep 1.3
tail -n 4 "$out/service.log"

step "status"
"$out/hotpatch" status --pid "$pid"

step "revert"
"$out/hotpatch" revert demo-fix-1 --pid "$pid"
sleep 1.3
tail -n 4 "$out/service.log"

step "the same process ran throughout: pid $pid, request counter never reset"
