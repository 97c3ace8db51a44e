# govx — build, lint and test. `make test` is what CI runs (.ci/run): it lints (`make
# lint`), starts the real services (deploy/local/up.sh), runs every test against them,
# and stops what it started, keeping the test run's exit status.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
export GOFLAGS := -count=1

GO ?= go
PKGS ?= ./...
TEST_TIMEOUT ?= 20m
# Packages are tested one at a time: some tests stop and restart the shared Kafka broker or
# ClickHouse (outage and crash tests), which would fail another package's test running at
# the same moment.
# KEEP_SERVICES=1 leaves the services running after `make test`, even those it started.
KEEP_SERVICES ?=
STARTED := .local/make-test.started
SUMMARY := .local/make-test.summary
CHAOS_VERDICT := .local/make-test.chaos
# staticcheck is pinned (release 2026.2.2 is module version v0.8.2, which reads Go 1.26)
# and installed into .local/bin by `make lint` when missing or of another version.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := .local/bin/staticcheck

.PHONY: test build lint bench services-up services-down chaos

# The fault-injection proof (bench/chaos on deploy/local/cluster.sh): `make test` runs it
# for CHAOS_TEST_DURATION after the tests, and fails if it does; `make chaos` runs it for
# DURATION and writes docs/CHAOS.md.
DURATION ?= 5m
CHAOS_TEST_DURATION ?= 5m

# The closing "N passed, N failed, N skipped" line is printed again after the services
# stop, so that it stays the last line of the run.
test: lint
	@mkdir -p .local; rm -f $(SUMMARY) $(CHAOS_VERDICT); status=0; \
	deploy/local/up.sh --record $(STARTED) || status=$$?; \
	if [ $$status -eq 0 ]; then \
		( . .local/env.sh && \
		  $(GO) build -o .local/testcheck ./deploy/local/testcheck && \
		  echo "go test $(PKGS)" && \
		  $(GO) test -json -p 1 -timeout $(TEST_TIMEOUT) $(PKGS) | .local/testcheck -summary $(SUMMARY) \
		) || status=$$?; \
		echo "chaos: bench/chaos for $(CHAOS_TEST_DURATION) on the loopback cluster (deploy/local/cluster.sh)"; \
		if $(GO) run ./bench/chaos -duration $(CHAOS_TEST_DURATION) -out .local/CHAOS.md; then \
			echo "chaos: every check passed (.local/CHAOS.md)" >$(CHAOS_VERDICT); \
		else \
			echo "chaos: FAILED (the checks above; .local/CHAOS.md)" >$(CHAOS_VERDICT); status=1; \
		fi; \
	else \
		echo "make test: the services did not start (see the FAILED line above); no test was run"; \
	fi; \
	if [ -z "$(KEEP_SERVICES)" ]; then deploy/local/down.sh --from $(STARTED) || true; fi; \
	if [ -f $(CHAOS_VERDICT) ]; then cat $(CHAOS_VERDICT); fi; \
	if [ -f $(SUMMARY) ]; then cat $(SUMMARY); fi; \
	exit $$status

build:
	$(GO) build -o bin/govx ./cmd/govx

# gofmt, go vet, staticcheck, and go.mod/go.sum exactly as `go mod tidy` leaves them.
lint:
	@out="$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go') </dev/null)"; \
	if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@if ! $(STATICCHECK) -version 2>/dev/null | grep -qF "($(STATICCHECK_VERSION:v%=%))"; then \
		echo "installing staticcheck $(STATICCHECK_VERSION) into .local/bin"; \
		GOBIN="$(CURDIR)/.local/bin" $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	fi
	$(STATICCHECK) $(PKGS)
	@echo "go mod tidy -diff"; $(GO) mod tidy -diff || \
		{ echo "go.mod/go.sum are not tidy: run go mod tidy (the diff above is what it changes)"; exit 1; }

# make bench CURVE=10m: also the cost curve at 3M and 10M persons (bench/README.md lists the knobs).
bench:
	@if [ -x bench/run.sh ]; then bench/run.sh; \
	elif [ -f bench/run.sh ]; then bash bench/run.sh; \
	else echo "bench/run.sh does not exist yet: nothing to run"; fi

services-up:
	deploy/local/up.sh

services-down:
	deploy/local/down.sh

chaos:
	$(GO) run ./bench/chaos -duration $(DURATION) -out docs/CHAOS.md
