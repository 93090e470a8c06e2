#!/bin/sh
# tree.sh DIR: starts a grandchild that ignores SIGTERM, writes both pids to DIR and
# waits forever.
sh -c 'trap "" TERM; echo $$ > "$1/grandchild"; while :; do sleep 0.1; done' sh "$1" &
echo $$ > "$1/leader"
wait
