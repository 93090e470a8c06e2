#!/bin/sh
# soft.sh DIR: runs until SIGTERM, which it traps: writes DIR/marker and exits 143.
trap 'echo terminated > "$1/marker"; exit 143' TERM
echo $$ > "$1/pid"
while :; do sleep 0.1; done
