#!/usr/bin/env bash
# Fetches promtool (Debian's prometheus package) into ~/.cache/ccworker/promtool for the
# metrics test, without installing the package (whose service would start): apt-get
# download, then only usr/bin/promtool is kept. No-op when promtool is on PATH or cached.
# Never fails the build: without apt the metrics test skips its promtool check.
set -u
dest="${XDG_CACHE_HOME:-$HOME/.cache}/ccworker/promtool"
if command -v promtool >/dev/null 2>&1 || [ -x "$dest/promtool" ]; then
	exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A fresh machine may have no package lists yet: update them once and try again.
fetch() { (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); }
if { fetch || { apt-get update -qq >/dev/null 2>&1 && fetch; }; } && dpkg -x "$tmp"/prometheus_*.deb "$tmp/x"; then
	mkdir -p "$dest" && cp "$tmp/x/usr/bin/promtool" "$dest/promtool" && echo "promtool: $dest/promtool"
else
	echo "promtool: could not fetch Debian's prometheus package; the metrics test skips its promtool check" >&2
fi
exit 0
