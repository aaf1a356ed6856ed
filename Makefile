# Switchboard — see README.md. `make run` starts the whole local cluster,
# `make test` starts what the tests need and runs them all. REDIS_CLUSTER=1
# puts both on a local 3-master Redis Cluster (127.0.0.1:7000-7002) instead
# of the single Redis.

GO            ?= go
STATICCHECK   ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
KAFKA_PORT    ?= 9092
KAFKA_NODES   ?= 1
REDIS_PORT    ?= 6379
REDIS_CLUSTER ?=
REDIS_CLUSTER_PORT ?= 7000
TEST_TIMEOUT  ?= 30m
export KAFKA_PORT KAFKA_NODES REDIS_PORT REDIS_CLUSTER_PORT
# The services read a REDIS_CLUSTER of their own: each command below gets
# the one it needs, never this variable as given.
unexport REDIS_CLUSTER

# REDIS_CLUSTER empty or 0: the single Redis on REDIS_PORT; otherwise the
# cluster of deploy/redis/cluster.sh on REDIS_CLUSTER_PORT, +1, +2. The
# single Redis is started either way (make infra).
ifneq ($(filter-out 0 false no,$(strip $(REDIS_CLUSTER))),)
REDIS_NODES   := $(shell REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_PORT) deploy/redis/cluster.sh nodes)
$(if $(REDIS_NODES),,$(error REDIS_CLUSTER_PORT=$(REDIS_CLUSTER_PORT): deploy/redis/cluster.sh nodes failed))
RUN_REDIS     := REDIS_CLUSTER=true REDIS_ADDR=$(REDIS_NODES)
TEST_REDIS    := SWITCHBOARD_REDIS=$(REDIS_NODES) SWITCHBOARD_REDIS_CLUSTER=1
else
RUN_REDIS     := REDIS_CLUSTER=false
TEST_REDIS    := SWITCHBOARD_REDIS=127.0.0.1:$(REDIS_PORT) SWITCHBOARD_REDIS_CLUSTER=0
endif

.PHONY: all build run stop infra validators test test-go test-browser test-client test-unit check fuzz bench bench-micro bench-restore clean

all: build

## build: compile the gateway, router and load tester into bin/
build:
	$(GO) build -o bin/ ./cmd/...

## infra: start (or reuse) Kafka (KAFKA_NODES=3: a 3-broker cluster) and Redis on loopback
## (REDIS_CLUSTER=1: the Redis Cluster on :7000-:7002 as well)
infra:
	deploy/redis/redis.sh start
ifneq ($(REDIS_NODES),)
	deploy/redis/cluster.sh start
endif
	deploy/kafka/kafka.sh start

## run: the whole local cluster — Kafka, Redis (persisted), router, gateways gw-1 (:8080), gw-2 (:8081), …
## (GATEWAYS=3 for three; KAFKA_NODES=3 for 3 brokers on :9092, :9094, :9096; REDIS_CLUSTER=1 for a
## 3-master Redis Cluster on :7000, :7001, :7002); members that exit are restarted with backoff; Ctrl-C or `make stop` stops it all
run: build
	$(RUN_REDIS) deploy/local/run.sh

## stop: stop everything `make run` or `make test` started (the supervisor and the Redis Cluster too; from any terminal)
stop:
	-deploy/local/run.sh stop
	-deploy/kafka/kafka.sh stop
	-deploy/redis/redis.sh stop
	-deploy/redis/cluster.sh stop

## validators: install what checks the container deployment (nginx -t, promtool, docker-compose config)
validators:
	deploy/validators.sh

## test: start Kafka and Redis, run every Go test with -race, then the browser tests.
## Packages run one at a time (-p 1): the failure and latency tests need the two cores.
## REDIS_CLUSTER=1: every test that uses the shared Redis uses the Redis Cluster instead
## (the outage tests start single Redis servers of their own either way)
test: test-go test-client test-browser

test-go: infra validators
	SWITCHBOARD_KAFKA=127.0.0.1:$(KAFKA_PORT) $(TEST_REDIS) \
		$(GO) test -race -tags integration -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...

## test-browser: the web client in headless Chromium against a cluster on ports 18080/18081
test-browser: build infra
	GW1_PORT=18080 GW2_PORT=18081 ROUTER_PORT=19090 $(RUN_REDIS) deploy/local/run.sh start
	GW1_URL=http://127.0.0.1:18080 GW2_URL=http://127.0.0.1:18081 test/browser/run.sh; \
		status=$$?; deploy/local/run.sh stop; exit $$status

## test-client: the web client's protocol and state modules (static/core) under node --test
test-client:
	node --test test/browser/unit/*.test.mjs

## test-unit: only the tests that need no Kafka or Redis
test-unit:
	$(GO) test -race -count=1 ./...

## check: formatting, vet and staticcheck
check:
	@out=$$(gofmt -l cmd internal static deploy); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) run $(STATICCHECK) -tags integration ./...

## fuzz: fuzz the frame decoder, then each REST JSON body, for a while (FUZZTIME each)
FUZZTIME ?= 45s
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=60s ./internal/protocol/
	for f in FuzzCredentialsBody FuzzCreateConversationBody FuzzPatchConversationBody FuzzMarkReadBody FuzzPostMessageBody; do \
		$(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) ./internal/gateway/ || exit 1; done

## bench: the standard chatload scenarios (private at 2,000 and 5,000 msg/s against Switchboard and
## Centrifugo, public fan-out, sync, reconnect storm, connect: idle memory) against a running `make run`
## cluster (or one started for it), each run BENCH_REPEAT times (3); rewrites the generated section
## of BENCHMARKS.md (the medians of each scenario's runs) and docs/bench/
## (BENCH_CENTRIFUGO=0 skips Centrifugo; BENCH_DURATION, BENCH_RATES: see deploy/bench/bench.sh)
bench: build
	deploy/bench/bench.sh

## bench-micro: the Go micro-benchmarks
bench-micro:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/...

## bench-restore: a Redis loss with 100k and 1M records in chat-log, without -race: time until
## sends are accepted and rebuild rate (asserted >= 100,000 records/s); about 4 min per size
bench-restore: infra
	SWITCHBOARD_KAFKA=127.0.0.1:$(KAFKA_PORT) $(TEST_REDIS) \
	SWITCHBOARD_RESTORE_RECORDS=100000,1000000 SWITCHBOARD_RESTORE_MIN_RATE=100000 \
		$(GO) test -tags integration -count=1 -timeout 60m -run TestARedisLoss -v ./internal/router/

clean:
	rm -rf bin
