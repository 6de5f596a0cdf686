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

.PHONY: all build test deps demo proto bench vet fmt-check clean package

all: build

build:
	$(GO) build -o $(BIN)/cellgate ./cmd/cellgate
	$(GO) build -o $(BIN)/modemsim ./cmd/modemsim
	$(GO) build -o $(BIN)/cellgate-demo ./cmd/cellgate-demo
	$(GO) build -o $(BIN)/cellgate-plugin-sim7600 ./plugins/sim7600
	$(GO) build -o $(BIN)/cellgate-plugin-sim7800 ./plugins/sim7800

deps:
	@scripts/deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# test runs the whole suite: formatting, vet, unit, golden, fuzz seed corpora
# and the integration tests against real openssl and mosquitto peers.
test: deps fmt-check vet build
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

# bench runs every benchmark once and prints each figure as a ratio to the
# baseline measured in the same run (scripts/bench-ratios.awk).
bench:
	@mkdir -p $(BIN); set -o pipefail; $(GO) test -run '^$$' -bench . -benchmem -count 1 $(PKGS) | tee $(BIN)/bench.txt
	@awk -f scripts/bench-ratios.awk $(BIN)/bench.txt

# demo runs until Ctrl-C; DEMO_FLAGS passes options (e.g. -rate 20 -v).
demo: deps build
	@$(BIN)/cellgate-demo -bin $(BIN) $(DEMO_FLAGS)

proto:
	@scripts/proto.sh

# package builds dist/cellgate_<VERSION>_<arch>.deb with nfpm (pinned).
VERSION ?= 0.0.0-dev
package: build
	@mkdir -p dist
	GOARCH=$$($(GO) env GOARCH) VERSION=$(VERSION) $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2 package -f packaging/nfpm.yaml -p deb -t dist/

clean:
	rm -rf $(BIN) $(TOOLS)
