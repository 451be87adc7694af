# One entry point for people and CI. Every target installs what it needs from nothing:
# only a Python 3.11+ interpreter and access to PyPI are assumed.
PYTHON      ?= python3
TOOLS       := .tools
UV          := $(TOOLS)/bootstrap/bin/uv
VENV        := .venv
PY          := $(VENV)/bin/python
# The domain's and renderers' unit tests run a second time in a venv holding only what the
# domain needs (PyYAML) and the tests' own tools (cryptography checks signatures the way a
# verifier would): an AWS import there fails the run.
DOMAIN_VENV := .venv-domain
DOMAIN_DEPS := pytest hypothesis jsonschema PyYAML cryptography
# This checkout's packages, as pytest's `pythonpath` sees them (lint-imports needs them too).
SOURCES     := layers/gatekeeper:tools:.
SAM_VERSION := 1.170.0
SAM         := $(TOOLS)/sam/bin/sam
LAYER_BUILD := .aws-sam/build/GatekeeperLayer/python
# Security gate on the template (run by the template tests, so `make test` runs it in CI).
CHECKOV_VERSION := 3.3.30
CHECKOV     := $(TOOLS)/checkov/bin/checkov
# make demo DEMO_ARGS=--full: also each notice's e-mail text and the Slack message.
DEMO_ARGS   ?=
# make sandbox SANDBOX_PORT=5000: the moto server's port on 127.0.0.1 (0: a free one).
SANDBOX_PORT ?= 0

.PHONY: help install demo sandbox test test-nightly lint fmt validate build bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)/bootstrap
	$(TOOLS)/bootstrap/bin/pip install -q --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml layers/gatekeeper/requirements.txt | $(UV)
	$(UV) venv -q --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip install -q --python $(PY) -e '.[dev]'
	@touch $@

$(DOMAIN_VENV)/.installed: Makefile | $(UV)
	$(UV) venv -q --allow-existing --python $(PYTHON) $(DOMAIN_VENV)
	$(UV) pip install -q --python $(DOMAIN_VENV)/bin/python $(DOMAIN_DEPS)
	@touch $@

$(SAM): | $(UV)
	$(UV) venv -q --allow-existing --python $(PYTHON) $(TOOLS)/sam
	$(UV) pip install -q --python $(TOOLS)/sam/bin/python aws-sam-cli==$(SAM_VERSION)

$(CHECKOV): | $(UV)
	$(UV) venv -q --allow-existing --python $(PYTHON) $(TOOLS)/checkov
	$(UV) pip install -q --python $(TOOLS)/checkov/bin/python checkov==$(CHECKOV_VERSION)

# The fleet report's browser test renders the page in Debian's chromium, installed only where
# it is missing (as root: here and in CI).
CHROMIUM    := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -q
	apt-get install -y --no-install-recommends chromium

install: $(VENV)/.installed $(SAM) $(CHECKOV)  ## create .venv (app + dev tools), .tools/sam (SAM CLI) and .tools/checkov, each kept apart

demo: $(VENV)/.installed  ## run the whole gatekeeper loop locally on an embedded AWS (moto)
	$(PY) -m gatekeeper_tools.local.demo $(DEMO_ARGS)

sandbox: $(VENV)/.installed  ## the stack in a local moto server that stays up, for `gatekeeper status|verify|...` (Ctrl-C stops it)
	$(PY) -m gatekeeper_tools.local.sandbox --port $(SANDBOX_PORT)

bench: $(VENV)/.installed  ## benchmarks, apart from the tests (e.g. BENCH_ARGS="--only throughput --events 1000")
	$(PY) -m benchmarks $(BENCH_ARGS)

test: $(VENV)/.installed $(DOMAIN_VENV)/.installed $(SAM) $(CHECKOV) $(CHROMIUM)  ## lint (ruff, import contracts), unit tests without AWS packages, then every test
	$(PY) -m ruff check .
	PYTHONPATH=$(SOURCES) $(VENV)/bin/lint-imports --no-cache --no-logo
	PYTHONPATH=layers/gatekeeper:. $(DOMAIN_VENV)/bin/python -m pytest -q tests/unit
	PATH="$(CURDIR)/$(TOOLS)/sam/bin:$(CURDIR)/$(TOOLS)/checkov/bin:$$PATH" $(PY) -m pytest

test-nightly: $(VENV)/.installed  ## the adversarial suite at full size: 1,000 examples per property, 300 race rounds
	GATEKEEPER_PROPERTY_EXAMPLES=1000 GATEKEEPER_RACE_ROUNDS=300 $(PY) -m pytest tests/adversarial

lint: $(VENV)/.installed  ## ruff only
	$(PY) -m ruff check .

fmt: $(VENV)/.installed  ## format and fix what ruff can
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

validate: $(SAM)  ## sam validate --lint
	$(SAM) validate --lint

build: $(SAM)  ## sam build (python3.13/arm64) into .aws-sam/, the layer compiled to byte code
	@# sam build needs a python3.13 on PATH (or Docker: sam build --use-container). pyenv
	@# machines often carry one without activating it: offer every installed 3.x to sam.
	@# sam ships the layer as source only, and Lambda cannot write byte code to /opt: every
	@# cold start would compile boto3, Powertools and the gatekeeper again (about 0.4 s,
	@# make bench). Compile them once here, with 3.13 (the runtime's byte code format).
	@if python3.13 --version >/dev/null 2>&1; then $(SAM) build && \
		python3.13 -m compileall -q -j 0 --invalidation-mode unchecked-hash $(LAYER_BUILD); \
	elif command -v pyenv >/dev/null 2>&1 && pyenv versions --bare | grep -q '^3\.13'; then \
		PYENV_VERSION="$$(pyenv versions --bare | grep -E '^3\.[0-9]+' | sort -rV | paste -sd: -)" $(SAM) build && \
		"$$(pyenv prefix "$$(pyenv versions --bare | grep '^3\.13' | sort -rV | head -1)")/bin/python3.13" \
			-m compileall -q -j 0 --invalidation-mode unchecked-hash $(LAYER_BUILD); \
	else echo "sam build needs python3.13 on PATH, or Docker with: sam build --use-container" >&2; exit 1; fi

clean:  ## remove the local environments and build output
	rm -rf $(VENV) $(DOMAIN_VENV) $(TOOLS) .aws-sam .pytest_cache
