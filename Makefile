# artifactstore: the two commands are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

BIN      := bin/artifactstore
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X artifactstore/app.Version=$(VERSION) -X artifactstore/app.Commit=$(COMMIT)
S3_STATE ?= $(or $(ARTIFACTSTORE_S3_STATE),/tmp/artifactstore-s3)
S3_SERVERS ?= versitygw minio ceph
GOTEST_TIMEOUT ?= 25m

.PHONY: all build check-static run test test-unit s3-up s3-down browser-up screenshots bench fuzz lint clean

all: build

## build: the statically linked binary in bin/ (CGO_ENABLED=0)
build:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

## check-static: prove bin/artifactstore has no dynamic loader or libraries
check-static: build
	@if readelf -l $(BIN) | grep -q 'INTERP'; then echo "$(BIN) is dynamically linked"; exit 1; fi
	@if readelf -d $(BIN) 2>/dev/null | grep -q 'NEEDED'; then echo "$(BIN) needs shared libraries"; exit 1; fi
	@echo "$(BIN) is statically linked: $$($(BIN) version)"

## run: build and serve config.example.yaml (local backend under ./data)
run: build
	$(BIN) serve --config config.example.yaml

## test: start the real S3 servers, run the whole suite with -race, then each fuzz target for its smoke count (scripts/fuzz.sh)
test: check-static s3-up browser-up
	. $(S3_STATE)/env.sh && go test -race -count=1 -timeout $(GOTEST_TIMEOUT) ./...
	scripts/fuzz.sh $(FUZZ_SMOKE)

FUZZ_SMOKE ?=
FUZZ_SCALE ?= 24
FUZZTIME ?=

## fuzz: every fuzz target for FUZZ_SCALE times its smoke count (about 2 minutes each), or for FUZZTIME (a duration or a count such as 1000000x) if set
fuzz:
	FUZZ_SCALE=$(FUZZ_SCALE) scripts/fuzz.sh $(FUZZTIME)

## test-unit: the suite without S3 servers (S3 tests skip unless CI is set)
test-unit:
	go test -race -count=1 ./...

## browser-up: install Debian's Chromium for the web interface's browser tests
browser-up:
	scripts/browser-up.sh

## screenshots: regenerate docs/ui/*.png, a picture of each page of the web interface
screenshots: browser-up
	mkdir -p docs/ui
	ARTIFACTSTORE_UI_SCREENSHOTS=$(CURDIR)/docs/ui go test -count=1 -run '^TestUIBrowser$$' ./app

## s3-up / s3-down: install and start (or stop) versitygw, MinIO and Ceph RGW on 127.0.0.1
s3-up:
	scripts/s3-up.sh $(S3_SERVERS)

s3-down:
	scripts/s3-down.sh

## bench: every performance figure against its same-run baseline; writes docs/PERFORMANCE.md
bench: build s3-up
	. $(S3_STATE)/env.sh && ARTIFACTSTORE_BENCH_REPORT=$(CURDIR)/docs/PERFORMANCE.md \
		go test -run '^$$' -bench '^BenchmarkReport$$' -benchtime 1x -timeout 40m ./app

lint:
	gofmt -l . | (! grep .)
	go vet ./...

clean:
	rm -rf bin
