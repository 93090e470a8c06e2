#!/usr/bin/env bash
# Build FerretDB v1.24.2, the MongoDB-wire server the tests and demo use, into the cache
# ($CCWORKER_CACHE, default ~/.cache/ccworker) so that every clone on this machine shares it.
# Prints the binary's path on stdout (build output goes to stderr). --force rebuilds.
#
# `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds a binary that panics at
# start: the generated build/version/version.txt is not in the module zip. So we copy the module
# source, write that file and build from the copy. About 2 minutes on 2 cores; a no-op afterwards.
# Concurrent runs are serialized with flock on $CACHE/ferretdb-build.lock: the second one waits and
# then finds the binary built.
set -euo pipefail
V=v1.24.2
CACHE=${CCWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker}
BIN=$CACHE/bin/ferretdb
built() { [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "version: $V"; }
if [ "${1:-}" != --force ] && built; then
  echo "$BIN"; exit 0
fi
mkdir -p "$CACHE/bin" "$CACHE/src"
if command -v flock >/dev/null; then
  exec 9>"$CACHE/ferretdb-build.lock"
  if ! flock -n 9; then
    echo "build-ferretdb: another build is running, waiting for it (up to 10 min)" >&2
    flock -w 600 9 || { echo "build-ferretdb: gave up waiting for the other build" >&2; exit 1; }
  fi
  if [ "${1:-}" != --force ] && built; then echo "$BIN"; exit 0; fi
fi
command -v go >/dev/null || { echo "build-ferretdb: 'go' not found on PATH (Go >= 1.24 needed)" >&2; exit 1; }
echo "build-ferretdb: building FerretDB $V into $BIN (about 2 minutes on 2 cores)" >&2
t0=$(date +%s)
dir=$(cd / && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$V" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "build-ferretdb: go mod download gave no source directory" >&2; exit 1; }
src=$CACHE/src/ferretdb-$V
rm -rf "$src"; cp -r "$dir" "$src"; chmod -R u+w "$src"
echo "$V" > "$src/build/version/version.txt"
echo ccworker-source-build > "$src/build/version/package.txt"
(cd "$src" && GOTOOLCHAIN=local go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb) >&2
mv "$BIN.tmp" "$BIN"
rm -rf "$src"
echo "build-ferretdb: built in $(( $(date +%s) - t0 )) s" >&2
echo "$BIN"
