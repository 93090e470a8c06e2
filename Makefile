# ccworker: a fast, wire-compatible Celery worker.
#   make demo   start RabbitMQ + a MongoDB-wire server, build, run a demo load through them
#   make test   start the services, then every test (unit, integration, interop with Python Celery)

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/ccworker/ccworker/cli.version=$(VERSION)
PKGS    := ./...

# Integration tests read these; scripts/services.sh starts what answers on them.
export CCWORKER_TEST_AMQP_URL  ?= amqp://guest:guest@127.0.0.1:5672//
export CCWORKER_TEST_MONGO_URL ?= mongodb://127.0.0.1:27017/

.PHONY: all build test test-unit services services-stop bench bench-compare lint fuzz demo clean

all: build

## build: the static ccworker binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ccworker ./cmd/ccworker

## test: start the services and the test Slurm cluster, then run every test with the race detector
##   (the cluster is left running, like the services: `make slurm-stop` stops it)
test: services slurm build promtool
	CCWORKER_REQUIRE_TOOLS=1 SLURM_CONF=$(SLURM_CONF_FILE) $(GO) test -race -timeout 12m -count=1 $(PKGS)

## test-slurm: only the Slurm tests (slurmtest/: deploy/slurm/*.sbatch on a private 4-node cluster), verbose
.PHONY: slurm slurm-stop test-slurm
SLURM_CONF_FILE = $(shell bash -c '. scripts/slurm/env.sh && echo "$$SLURM_CONF"')
test-slurm: services slurm
	SLURM_CONF=$(SLURM_CONF_FILE) $(GO) test -race -v -count=1 ./slurmtest/

## slurm: start (or keep) the private test Slurm cluster (scripts/slurm/start-slurm.sh; root, apt-get)
slurm:
	bash scripts/slurm/start-slurm.sh

slurm-stop:
	bash scripts/slurm/stop-slurm.sh

## test-unit: the tests that need no service (integration tests skip themselves)
test-unit:
	env -u CCWORKER_TEST_AMQP_URL -u CCWORKER_TEST_MONGO_URL $(GO) test -race -count=1 $(PKGS)

## promtool: fetch promtool (Debian's prometheus package, unpacked, not installed) for the
##   metrics test's `promtool check metrics`; a no-op when present, never fails
.PHONY: promtool
promtool:
	bash scripts/promtool.sh

services:
	bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

## bench: micro-benchmarks, then the end-to-end loads and their ceilings against the real
## services (one fixed load per run: -benchtime 1x); benchstat-friendly output in bench/out/
bench: services
	mkdir -p bench/out
	$(GO) test -run '^$$' -bench '^Benchmark(Decode|Result|Pool|AppendJSON|Ack)' -benchmem -count 5 ./bench/ ./protocol/ ./prefetch/ | tee bench/out/micro.txt
	$(GO) test -run '^$$' -bench '^Benchmark(E2E|Ceiling)' -benchtime 1x -count 3 -timeout 30m ./bench/ | tee bench/out/e2e.txt

## bench-compare: Debian's Celery worker (prefork -c 2, gevent -c 512) and ccworker over the same
## pre-published loads, medians of 3, each figure from >= 15 s of work, CPU per task of worker, broker and
## store; writes the table and chart into bench/README.md. Smoke run (< 1 min): BENCH_COMPARE_FLAGS=--quick
bench-compare: services build
	/usr/bin/python3 scripts/bench_compare.py $(BENCH_COMPARE_FLAGS)

## bench-flow: remote control and worker heartbeats while the task connection is held in RabbitMQ's
## flow control (a private node with tight credit; bench/README.md, "Connections per worker")
.PHONY: bench-flow
bench-flow: services
	bash scripts/bench_flow.sh

## lint: gofmt, go vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## fuzz: fuzz the message decoder, the path from any decodable message to a stored result
## document, the config reader and the remote-control handler, each for FUZZTIME (CI runs
## it with 10s)
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./protocol/
	$(GO) test -run '^$$' -fuzz FuzzDocument -fuzztime $(FUZZTIME) ./results/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./config/pyliteral/
	$(GO) test -run '^$$' -fuzz FuzzHandleMessage -fuzztime $(FUZZTIME) ./control/
	$(GO) test -run '^$$' -fuzz FuzzHeaderTable -fuzztime $(FUZZTIME) ./prefetch/

## chaos: fault and TLS tests (issue #7) on a PRIVATE RabbitMQ node (chaos@localhost, 5680/5681)
##   and private FerretDB processes (27030 PostgreSQL backend, 27031 TLS), started and stopped by
##   the test through scripts/chaos/*.sh; the shared services on 5672/27017 are never touched.
##   About 6-8 minutes on a quiet machine; waits are progress-based and the timeout is sized
##   for a machine several times slower. Whatever a run leaves (killed, timed out) is stopped:
##   on exit here, by the test's watchdog when the test binary dies, and at the next start
##   (scripts/chaos/cleanup.sh, from pid files). CCWORKER_CHAOS_KEEP=1 keeps the logs and certificates.
.PHONY: chaos
chaos: services
	trap 'bash scripts/chaos/cleanup.sh' EXIT; \
	CCWORKER_CHAOS=1 $(GO) test -v -count=1 -parallel 8 -timeout 45m ./chaos/

## cluster: failover tests (issue #13) on a PRIVATE 3-node RabbitMQ cluster (cc1..cc3@localhost,
##   AMQP 5691-5693, state in ~/.cache/ccworker/cluster) started once and stopped at the end by
##   scripts/cluster/run.sh, even when the test binary times out or is killed; results in fresh
##   databases on the shared FerretDB (27017). About 5-6 minutes. CCWORKER_CLUSTER_KEEP=1 keeps
##   the nodes and the logs.
.PHONY: cluster cluster-stop
cluster: services
	bash scripts/cluster/run.sh

cluster-stop:
	bash scripts/cluster/rmq.sh stop

## demo: a demo load through a real broker and result store
demo:
	bash scripts/demo.sh

clean:
	rm -rf bin
