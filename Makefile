# netqoe: the front door. `make help` lists the targets.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.DEFAULT_GOAL := help
.PHONY: help setup build test lint bench demo demo-down clean reliability-report

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

setup: ## install nats-server, PostgreSQL, promtool, chromium, schemathesis and kubernetes-validate when missing, then build
	@bash deploy/scripts/setup.sh
	$(CARGO) build --workspace --all-targets

build: ## build every crate (debug)
	$(CARGO) build --workspace --all-targets

lint: ## rustfmt check and clippy with -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: setup lint ## setup, lint gate, then every unit and integration test (real nats-server and PostgreSQL)
	$(CARGO) test --workspace --no-fail-fast

reliability-report: ## the fault suite (kills, outages, a full stream, duplicates), then its table for docs/reliability.md
	$(CARGO) build -q --bins -p netqoe-ingest -p netqoe-aggregator && $(CARGO) test -p netqoe-e2e --test it -- faults security; $(CARGO) run -q -p netqoe-e2e --example reliability_table

bench: ## benchmarks against release builds; one JSON line per figure
	@bash deploy/scripts/setup.sh
	$(CARGO) build --release --workspace --bins
	$(CARGO) run --release -q -p netqoe-bench -- all

demo: ## install what is missing, build (debug), then run the whole product on a local stack under ./.netqoe
	@bash deploy/scripts/setup.sh && $(CARGO) build --workspace --bins && $(CARGO) run -q -p netqoe-demo -- up

demo-down: ## stop exactly the processes the demo started (by pid)
	$(CARGO) run -q -p netqoe-demo -- down

clean: ## stop the demo if it runs, then remove build output and the local demo state
	-[ -f .netqoe/state.json ] && $(CARGO) run -q -p netqoe-demo -- down
	$(CARGO) clean
	rm -rf .netqoe
