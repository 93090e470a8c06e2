#!/bin/sh
# fail.sh: fails with exit status 3 after a line on stderr.
echo "something broke" >&2
exit 3
