#!/bin/sh
# plain.sh: output that is not JSON.
echo hello
echo warn >&2
