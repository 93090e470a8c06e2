#!/usr/bin/env bash
# `make bench-flow`: BenchmarkControlUnderLoad (bench/control_test.go) against the chaos tests'
# private RabbitMQ node (scripts/chaos: chaos@localhost, AMQP 5680) with RabbitMQ's credit flow
# made tight (credit_flow_default_credit {20, 10}; the default is {400, 200}), so that the
# worker's task connection spends much of the load in state "flow" on a 2-core machine where
# the default credit never throttles it. Pings and worker heartbeats show whether remote control
# and events, on the worker's other connection, keep answering. The node is stopped on exit.
# COUNT runs (default 3). Needs FerretDB (make services) for the test environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH=$PATH:/usr/local/go/bin
# scripts/chaos/env.sh moves HOME (the node's own Erlang cookie): keep Go's caches where they are.
GOCACHE=$(go env GOCACHE) GOMODCACHE=$(go env GOMODCACHE) GOPATH=$(go env GOPATH)
export GOCACHE GOMODCACHE GOPATH
tmp=$(mktemp -d)
trap 'bash scripts/chaos/rmq.sh stop || true; rm -rf "$tmp"' EXIT
go test -c -o "$tmp/bench.test" ./bench/
bash scripts/chaos/rmq.sh start
. scripts/chaos/env.sh
export PATH=/usr/lib/rabbitmq/bin:$PATH # the node's own rabbitmqctl, with the node's cookie
rabbitmqctl -q eval 'application:set_env(rabbit, credit_flow_default_credit, {20, 10}).' >/dev/null
export CCWORKER_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$RABBITMQ_NODE_PORT//"
export CCWORKER_TEST_MONGO_URL=${CCWORKER_TEST_MONGO_URL:-mongodb://127.0.0.1:27017/}
cd bench
"$tmp/bench.test" -test.run '^$' -test.bench ControlUnderLoad -test.benchtime 1x -test.count "${COUNT:-3}" -test.v
