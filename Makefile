# backup-guard: `make run` and `make test` work on a fresh machine (they install what they need).
SHELL := /bin/bash
BUILD_DIR ?= build
CACHE ?= $(HOME)/.cache/backup-guard
JOBS ?= 2
SOURCES := $(shell git ls-files --cached --others --exclude-standard '*.cc' '*.h' 2>/dev/null)

.PHONY: all deps venv configure build test unit e2e e2e-chart-rbac engine-versions chart ops lint format run clean fuzz fuzz-smoke test-sanitize faults bench image image-smoke

all: build

deps:
	@./tools/ensure-deps.sh

venv: deps
	@./tools/ensure-venv.sh >/dev/null

$(BUILD_DIR)/build.ninja: CMakeLists.txt
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DBG_VENV=$(CACHE)/venv >/dev/null

configure: deps venv $(BUILD_DIR)/build.ninja

build: configure
	@ninja -C $(BUILD_DIR) -j $(JOBS)

lint: build
	@echo "lint: clang-format"
	@clang-format --dry-run --Werror $(SOURCES)
	@echo "lint: clang-tidy"
	@./tools/run-clang-tidy.sh $(BUILD_DIR)

format:
	@clang-format -i $(SOURCES)

unit: build
	@cd $(BUILD_DIR) && ctest -j $(JOBS) --output-on-failure

e2e: build
	@./tests/e2e/run-e2e.sh

# The finalizer processor suite with every server under the chart's own ServiceAccount token and
# RBAC: the chart grants what serve uses (tests/e2e/README.md, "Least privilege").
e2e-chart-rbac: build
	@BG_E2E_SERVER_IDENTITY=chart BG_PYTEST_MARK=processor ./tests/e2e/run-e2e.sh

# SPEC's acceptance scenarios on the engine's older pinned CRDs (e2e covers v1.10.0), and the
# upgrade v1.7.2 -> v1.10.0 with backup-guard running: tests/e2e/run-engine-versions.sh.
engine-versions: build
	@./tests/e2e/run-engine-versions.sh

chart: build
	@./tests/chart/run-chart-tests.sh

ops: build
	@./tests/ops/run-ops-tests.sh

test: lint unit fuzz-smoke image-smoke e2e e2e-chart-rbac engine-versions chart ops faults

# `make image`, no Docker daemon needed: the binary built without the tests (BG_BUILD_TESTS=OFF) in
# build-image/, packed by tools/image/build_image.py into an OCI layout and a `docker load` tarball
# under build-image/image/, then checked by tests/image. Prints the digest. The build type is the
# one every test suite runs (RelWithDebInfo, -O2; stripped in the image).
image: venv
	@cmake -S . -B build-image -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBG_BUILD_TESTS=OFF >/dev/null
	@ninja -C build-image -j $(JOBS) backup-guard
	@./tests/image/run-image-tests.sh --binary build-image/backup-guard --out build-image

# The same image tests in `make test`, on the binary `make build` made (RelWithDebInfo, stripped).
image-smoke: build
	@./tests/image/run-image-tests.sh --binary $(BUILD_DIR)/backup-guard --out $(BUILD_DIR)/image-smoke

# `make fuzz` (60 s a target), the sanitizer runs and the benchmarks are not part of `make test`.
fuzz: deps
	@./fuzz/run-fuzz.sh --seconds 60

fuzz-smoke: deps
	@./fuzz/run-fuzz.sh --smoke

test-sanitize: deps venv
	@./tools/sanitize.sh all

faults: build
	@./tests/faults/run-fault-tests.sh

bench: build
	@./bench/run-bench.sh

run: build
	@./tests/e2e/run-local.sh

clean:
	rm -rf $(BUILD_DIR) build-image
