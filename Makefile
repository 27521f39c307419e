# biometric-bridge — developer entry points.
#
#   make stack-up | stack-down | stack-status | stack-reset   local services (scripts/stack, no Docker)
#   make build        debug build of the workspace
#   make lint         rustfmt check + clippy with warnings as errors
#   make test         lint, stack-up, then the whole test suite against the stack
#   make run          stack-up, release build, run edge + processor in the foreground (Ctrl-C stops both)
#   make observe      Jaeger (:16686) and Prometheus (:9090) beside the stack; `make run OBSERVE=1`
#                     starts them too and points both services' traces at Jaeger
#   make faults       fault-injection drills on a stack of their own (other ports; stopped after)
#   make coverage     which numeric fixture fields become readings, per vendor (target/coverage.md)
#   make catalog      regenerate the README's metric catalog section from bridge-core/src/catalog.rs
#
# Every variable below can be overridden from the environment or the command line,
# e.g. `TEST_THREADS=1 make test` or `make test CARGO_TEST_ARGS=plumbing`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
STACK ?= scripts/stack
# Integration tests share one Kafka/Postgres/Redis on a 2-core machine: more
# threads mostly add timeouts, not speed.
TEST_THREADS ?= 2
# Extra arguments for `cargo test` before `--` (e.g. a test-name filter or `-p edge`).
CARGO_TEST_ARGS ?=

# Connection settings of the local stack (same defaults as bridge-core/src/defaults.rs).
KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
SCHEMA_REGISTRY_URL ?= http://127.0.0.1:8081/apis/ccompat/v7
DATABASE_URL ?= postgres://bridge:bridge@127.0.0.1:5432/bridge
REDIS_URL ?= redis://127.0.0.1:6379
export KAFKA_BOOTSTRAP_SERVERS SCHEMA_REGISTRY_URL DATABASE_URL REDIS_URL

.PHONY: help stack-up stack-down stack-status stack-reset build lint fmt-check clippy test run \
        bench bench-edge bench-processor demo observe observe-down faults coverage catalog

help:
	@echo "targets: stack-up stack-down stack-status stack-reset build lint test run"
	@echo "         demo bench bench-edge bench-processor observe observe-down coverage catalog"

# ---------------------------------------------------------------- local stack

stack-up:
	@$(STACK) up

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status

stack-reset:
	@$(STACK) reset

# ---------------------------------------------------------------- observability

# Jaeger and Prometheus (scripts/stack observe-up; ops/ holds their configuration).
observe:
	@$(STACK) observe-up

observe-down:
	@$(STACK) observe-down

# ---------------------------------------------------------------- build, lint, test

build:
	$(CARGO) build --workspace

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

lint: fmt-check clippy

# Prerequisites run in order (lint first: it fails fast, before any service starts).
# The binaries are built first: integration tests run edge and processor as real processes.
# Jaeger and Prometheus too: tests/observability.rs checks traces, scrapes and ops/ with them.
test: lint stack-up observe
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --all-targets $(CARGO_TEST_ARGS) -- --test-threads=$(TEST_THREADS)

# The fixture coverage report (vendors/src/normalize/coverage.rs): it also runs in `test`,
# where it fails when a vendor's ratio falls below vendors/tests/coverage_floors.txt.
coverage:
	$(CARGO) test -p vendors --features edge,processor --lib normalize::coverage::fixture_coverage -- --nocapture

# Rewrites the README section between the catalog markers (vendors/tests/catalog_doc.rs,
# which `test` runs to fail on a stale section).
catalog:
	UPDATE_CATALOG=1 $(CARGO) test -p vendors --features edge,processor --test catalog_doc

# ---------------------------------------------------------------- run

# OBSERVE=1: Jaeger and Prometheus beside the stack, and both services export traces.
OBSERVE ?=
run: stack-up $(if $(OBSERVE),observe)
	$(CARGO) build --release -p edge -p processor
	$(if $(OBSERVE),OTEL_EXPORTER_OTLP_ENDPOINT=$${OTEL_EXPORTER_OTLP_ENDPOINT:-http://127.0.0.1:4318}) scripts/run

# ---------------------------------------------------------------- demo and benchmarks

# The whole path in a minute: signed webhooks in, rows out (scripts/demo).
demo: stack-up
	scripts/demo

# Benchmarks, each with its baseline measured in the same run (BENCHMARKS.md).
bench-edge: stack-up
	scripts/bench-edge

bench-processor: stack-up
	scripts/bench-processor

bench: bench-edge bench-processor

# ---------------------------------------------------------------- fault drills

# The drills stop and kill Kafka, the registry, PostgreSQL and Redis, so they get a
# stack of their own on other ports and state dir: never the shared one. Figures are
# printed as `DRILL <name>: …` lines (RELIABILITY.md) and kept in $(FAULTS_LOG).
FAULTS_STATE_DIR ?= $(CURDIR)/.state-faults
FAULTS_LOG ?= $(FAULTS_STATE_DIR)/drills.log
FAULTS_ENV = BRIDGE_STATE_DIR=$(FAULTS_STATE_DIR) KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093 \
	REGISTRY_PORT=18081 REGISTRY_MGMT_PORT=19000 PG_PORT=15432 REDIS_PORT=16379 \
	KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 SCHEMA_REGISTRY_URL=http://127.0.0.1:18081/apis/ccompat/v7 \
	DATABASE_URL=postgres://bridge:bridge@127.0.0.1:15432/bridge REDIS_URL=redis://127.0.0.1:16379

faults:
	$(CARGO) build --workspace --bins
	$(FAULTS_ENV) $(STACK) up
	mkdir -p $(FAULTS_STATE_DIR)
	set -o pipefail; rc=0; \
	$(FAULTS_ENV) $(CARGO) test -p bridge-tests --test faults -- --include-ignored --test-threads=1 --nocapture \
		$(FAULTS_ARGS) 2>&1 | tee $(FAULTS_LOG) || rc=$$?; \
	$(FAULTS_ENV) $(STACK) down; \
	grep '^DRILL' $(FAULTS_LOG) || true; exit $$rc
