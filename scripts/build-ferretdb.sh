#!/usr/bin/env bash
# Build FerretDB v1.24.2, the MongoDB-wire server the tests and demo use, into the cache
# ($CCWORKER_CACHE, default ~/.cache/ccworker) so that every clone on this machine shares it.
#
# `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds a binary that panics at
# start: the generated build/version/version.txt is not in the module zip. So we copy the module
# source, write that file and build from the copy. About 2 minutes on 2 cores; a no-op afterwards.
set -euo pipefail
V=v1.24.2
CACHE=${CCWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ccworker}
BIN=$CACHE/bin/ferretdb
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "version: $V"; then
  echo "$BIN"; exit 0
fi
mkdir -p "$CACHE/bin" "$CACHE/src"
dir=$(cd / && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$V" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "build-ferretdb: go mod download gave no source directory" >&2; exit 1; }
src=$CACHE/src/ferretdb-$V
rm -rf "$src"; cp -r "$dir" "$src"; chmod -R u+w "$src"
echo "$V" > "$src/build/version/version.txt"
echo ccworker-source-build > "$src/build/version/package.txt"
(cd "$src" && GOTOOLCHAIN=local go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb) >&2
mv "$BIN.tmp" "$BIN"
rm -rf "$src"
echo "$BIN"
