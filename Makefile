# Two commands on a fresh machine: `make run` (the demo line) and `make test` (the whole test suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN_PACKAGES := sip-tester baresip kamailio espeak-ng sox tcpdump iproute2 util-linux chromium prometheus prometheus-alertmanager
STAMP := $(VENV)/.installed

.PHONY: install run test lint check-debian clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory check-debian
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Installs the Debian packages when run as root; otherwise says exactly what to install.
check-debian:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else \
	    echo "missing Debian packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# The demo line answers as if it were a Monday at 10:00 (Paris), so that the menu can be reached
# at any hour; `make run DEMO_CLOCK=` uses the real clock (closed-hours and holiday messages).
DEMO_CLOCK ?= 2026-12-07T10:00:00+01:00
# The demo dossiers (500 synthetic usagers, seed 1) are dated as of this day; loading is idempotent.
DEMO_DATE ?= 2026-12-07
# The agent panel (http://127.0.0.1:8080/panel/): demo.agent and demo.chef (supervisor), with this
# password; cookies without Secure because the demo panel is served over http on this machine.
DEMO_PANEL_PASSWORD ?= solidarites-demo
run: install
	$(PY) -m callcenter dossiers demo --count 500 --seed 1 --today $(DEMO_DATE)
	printf '%s\n' '$(DEMO_PANEL_PASSWORD)' | $(PY) -m callcenter agents demo
	CALLCENTER_FLOWS_NOW_OVERRIDE=$(DEMO_CLOCK) CALLCENTER_PANEL_SECURE_COOKIES=false \
	  $(PY) -m callcenter serve $(ARGS)

test: install
	$(PY) -m pytest tests -q
	@# RFC 4475 messages name foreign hosts: they are only ever sent inside a loopback-only
	@# network namespace (see ../shared/TESTING.md).
	unshare -n -- sh -c 'ip link set lo up && exec $(PY) -m pytest tests/netns -q -p no:cacheprovider'

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m dashboards.generate --check

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
