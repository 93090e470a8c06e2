#!/bin/sh
# json.sh STEPS NAME: prints a JSON object (the worker stores it parsed).
printf '{"steps": %s, "name": "%s"}\n' "$1" "$2"
