# cellgate — build, test and demo entry points. Every target works from a
# fresh clone on Debian with Go installed; `deps` installs what is missing.

SHELL    := /bin/bash
GO       ?= go
BIN      := bin
PKGS     := ./...
GOFLAGS  ?=
export GOFLAGS

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
TOOLS := $(CURDIR)/.tools

.PHONY: all build test deps demo proto bench vet fmt-check clean package package-test man

all: build

build:
	$(GO) build -o $(BIN)/cellgate ./cmd/cellgate
	$(GO) build -o $(BIN)/modemsim ./cmd/modemsim
	$(GO) build -o $(BIN)/cellgate-demo ./cmd/cellgate-demo
	$(GO) build -o $(BIN)/cellgate-plugin-sim7600 ./plugins/sim7600
	$(GO) build -o $(BIN)/cellgate-plugin-sim7800 ./plugins/sim7800
	$(GO) build -o $(BIN)/cellgate-plugin-netstack ./plugins/netstack
	@$(MAKE) --no-print-directory example-bg96

# man writes cellgate's man pages (bin/doc/man/man1/*.1.gz) and its bash,
# zsh and fish completion (bin/doc/completion/) from the command tree, as
# the packages ship them: man -l bin/doc/man/man1/cellgate.1.gz
man:
	$(GO) run ./cmd/cellgate/gendoc -out $(BIN)/doc

deps:
	@scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# test runs the whole suite: formatting, vet, the packages (package-test),
# unit, golden, fuzz seed corpora and the integration tests against real
# openssl and mosquitto peers, then the 2-minute chaos soak (make soak) and
# every fuzz target for 100 inputs (make fuzz; a count, not a duration: a
# duration can cut a slow input short and report the deadline as a failure).
# certify runs first: a plugin that breaks the contract stops the suite.
test: deps fmt-check vet build certify example-bg96-test package-test
	$(GO) test -race -count=1 -timeout 25m $(PKGS)
	$(call soak_run,2m)
	@$(MAKE) --no-print-directory fuzz FUZZTIME=100x

# certify runs `cellgate plugin verify` (the conformance suite,
# sdk/conformance) against every plugin: sim7600, sim7800 and the
# out-of-tree bg96 example in front of their emulated modems, netstack over
# this host's own IP stack. It fails on the first plugin that fails a check.
.PHONY: certify
certify: build
	@set -e; for m in sim7600 sim7800 bg96; do \
		$(BIN)/cellgate plugin verify --plugin $(BIN)/cellgate-plugin-$$m --model $$m --emulator $$m; \
	done
	$(BIN)/cellgate plugin verify --plugin $(BIN)/cellgate-plugin-netstack --model netstack

# example-bg96 builds the out-of-tree Quectel BG96 plugin (its own Go
# module in examples/quectel-bg96, on the public sdk only) into bin/;
# example-bg96-test runs that module's own tests (transcripts, the
# conformance suite against modemsim --model bg96, the import rule), which
# the main module's go test ./... does not descend into.
.PHONY: example-bg96 example-bg96-test
example-bg96:
	cd examples/quectel-bg96 && $(GO) build -o $(CURDIR)/$(BIN)/cellgate-plugin-bg96 .

example-bg96-test:
	cd examples/quectel-bg96 && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 10m ./...

# bench runs every benchmark once and prints each figure as a ratio to the
# baseline measured in the same run (scripts/bench-ratios.awk), then writes
# bench/results.json and the README's performance table from bin/bench.txt
# (cmd/benchreport). The air-bytes benchmark runs the real mosquitto_pub,
# which deps installs.
bench: deps
	@mkdir -p $(BIN); set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m $(PKGS) | tee $(BIN)/bench.txt
	@awk -f scripts/bench-ratios.awk $(BIN)/bench.txt
	$(GO) run ./cmd/benchreport -in $(BIN)/bench.txt -out bench/results.json -readme README.md

# fleet runs FLEET agents (default 10; FLEET_STEPS=10,25,50 runs each size
# in turn), each with its own modemsim and plugin, at 1 reading/s against
# one mosquitto for FLEET_DURATION, and prints per-agent CPU% and RSS and
# the broker's messages/s (cmd/cellgate-fleet); figures in bench/fleet.json.
FLEET          ?= 10
FLEET_STEPS    ?=
FLEET_DURATION ?= 60s
.PHONY: fleet
fleet: deps build
	$(GO) build -o $(BIN)/cellgate-fleet ./cmd/cellgate-fleet
	$(BIN)/cellgate-fleet -bin $(BIN) -n $(FLEET) -steps "$(FLEET_STEPS)" -duration $(FLEET_DURATION) -out bench/fleet.json

# soak runs the chaos soak (agent/soak_test.go) for SOAK (default 2m):
# readings through HTTP and UDP while faults hit the modem, the plugin, the
# agent, the broker, the spool and its disk at random (the seed is printed;
# SOAK_SEED replays it), then reconciles by id, prints a table and writes
# soak-report.json. It fails if one accepted reading is lost. `make test`
# runs the 2-minute soak; `SOAK=10m make soak` the long one. Without SOAK,
# go test skips TestSoak and says so.
SOAK ?= 2m
soak_run = SOAK=$(1) SOAK_REPORT=$(CURDIR)/soak-report.json $(GO) test -count=1 -v -run '^TestSoak$$' -timeout 60m ./agent/
.PHONY: soak
soak: deps
	$(call soak_run,$(SOAK))

# fuzz runs every fuzz target of the module's packages for FUZZTIME each
# (default 10s), one after another: go test fuzzes one target per run. New
# failing inputs land in the package's testdata/fuzz, which `make test`
# (plain go test) then runs with the seed corpora.
FUZZTIME ?= 10s
.PHONY: fuzz
fuzz:
	@set -e; for dir in $$($(GO) list -f '{{.Dir}}' $(PKGS)); do \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$dir/*_test.go 2>/dev/null); do \
			echo "fuzz $${dir#$(CURDIR)/} $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

# demo runs until Ctrl-C; DEMO_FLAGS passes options (e.g. -rate 20 -v).
demo: deps build
	@$(BIN)/cellgate-demo -bin $(BIN) $(DEMO_FLAGS)

proto:
	@scripts/proto.sh

# package builds the release packages into dist/: a .deb and an .rpm for
# linux amd64, arm64 and armhf, with static, stripped, reproducible binaries
# stamped with the version (the VERSION file, or VERSION=x.y.z make
# package), and prints their sizes (scripts/package.sh; nfpm pinned, built
# for the host into .tools/).
package:
	@scripts/package.sh

# package-test builds the packages and proves them: inspected, run under
# qemu-user, installed on this machine as root, upgraded, removed and
# purged (scripts/package-test.sh).
package-test: deps
	@scripts/package-test.sh

clean:
	rm -rf $(BIN) $(TOOLS) dist
