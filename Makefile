# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
CONFIG ?=
BENCH_ARGS ?=

.PHONY: run test check tools install install-dev install-bench bench bench-micro docs screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -e '.[onnx,bedrock]'

install-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'

run: install
	$(BIN)/interlock serve --host $(HOST) --port $(PORT) $(if $(CONFIG),--config $(CONFIG),)

check: install-dev
	$(BIN)/ruff format --check src tests bench docs/hooks
	$(BIN)/ruff check src tests bench docs/hooks
	$(BIN)/mypy

# The suite on every core, at most four: most of its time is gateways and
# workers starting and stopping, which overlaps. One file stays on one worker
# (--dist loadfile), so a module's gateway fixture starts once, and tests that
# share a file's state keep their order. Plain `.venv/bin/pytest` runs serially.
test: check tools
	$(BIN)/pytest -n auto --maxprocesses 4 --dist loadfile

# promtool checks and unit-tests deploy/prometheus/ (tests/telemetry/test_deploy_assets.py).
# As root it comes from Debian's prometheus package, without its recommends (node
# exporter, smartmontools, ...). Without systemd running, the package's service is
# not started; on a systemd host it is (stop and disable prometheus.service if unwanted).
# Chromium and chromedriver run the search page's browser tests
# (tests/search/test_page_browser.py), from Debian's chromium and chromium-driver;
# of the recommends only fonts-liberation, so the page has a font to render in.
# wrk loads the served gateway in bench/dialects_cost.py (tests/bench/test_dialects_cost.py).
# nginx balances two gateways in the multi-instance tests (tests/scale/), started by the
# tests on loopback with their own config; the package's own site on port 80 is not used
# (without systemd it is not started; on a systemd host stop and disable nginx.service).
# Not root: a hint, and those tests skip (on CI, CI=true, they fail instead).
# $(call apt_tool,CHECK,PACKAGES,HINT): when CHECK fails, install PACKAGES
# from Debian's archive as root (updating the index once if needed), else
# print HINT.
define apt_tool
@$(1) || { \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get install -y -q --no-install-recommends $(2) \
      || { apt-get update -q && apt-get install -y -q --no-install-recommends $(2); }; \
  else \
    echo "$(3)"; \
  fi; }
endef

tools:
	$(call apt_tool,command -v promtool >/dev/null,prometheus,promtool not found; install it (Debian/Ubuntu: sudo apt-get install --no-install-recommends prometheus).)
	$(call apt_tool,{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; },chromium chromium-driver fonts-liberation,chromium/chromedriver not found; install them (Debian: sudo apt-get install --no-install-recommends chromium chromium-driver fonts-liberation).)
	$(call apt_tool,command -v wrk >/dev/null,wrk,wrk not found; install it (Debian/Ubuntu: sudo apt-get install wrk).)
	$(call apt_tool,test -x /usr/sbin/nginx,nginx,nginx not found; install it (Debian/Ubuntu: sudo apt-get install --no-install-recommends nginx).)

install-bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,bench]'

# Benchmark suite (~10 min; the first run also installs LiteLLM into bench/.work/):
# Interlock vs LiteLLM vs direct, written to bench/results/latest.md; see bench/README.md.
bench: install-bench
	$(BIN)/python bench/suite.py $(BENCH_ARGS)

# Micro-benchmark (~2.5 min): Interlock's overhead over the mock upstream only.
bench-micro: install-dev
	$(BIN)/python bench/micro.py $(BENCH_ARGS)

# The documentation site (mkdocs.yml), built offline into site/: open
# site/index.html. --strict: a broken link or anchor fails the build, as in
# the tests (tests/docs/test_site.py).
docs: install-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The console's pages (from its browser test) and the CLI's help, as the docs show them.
screenshots: install-dev tools
	INTERLOCK_SCREENSHOTS=docs/images/console $(BIN)/pytest -q -p no:cacheprovider tests/console/test_console_browser.py
	$(BIN)/python docs/cli_help_image.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
