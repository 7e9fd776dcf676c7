# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install bench load memory race clean

$(STAMP): pyproject.toml proxy_addons/_tnetc.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "hoptrace needs Python >= 3.12 (mitmproxy 12); found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/hoptrace up

test: $(STAMP)
	$(BIN)/pytest

# 10,000 runs at concurrency 50 through the real stack; counts served == flows.jsonl == flows.mitm
load: $(STAMP)
	$(BIN)/python -m proxy_addons.load -n 10000 -c 50 --time-limit 900

# gateway RSS over 100,000 flows: mitmdump (+50 MB budget), mitmweb with retention (+100 MB);
# the keep-alive race with services that close idle connections after 1 s (docs/reliability.md)
memory: $(STAMP)
	$(BIN)/python -m proxy_addons.memory --tool mitmdump --flows 100000
	$(BIN)/python -m proxy_addons.memory --tool mitmweb --flows 100000 --view-max 5000

race: $(STAMP)
	$(BIN)/python -m proxy_addons.race --idle-ms 3600000 --runs 600
	$(BIN)/python -m proxy_addons.race --idle-ms 500 --runs 600

# direct vs bare mitmproxy vs hoptrace (interleaved rounds), then the report over 1,000,000 hops;
# prints tables, writes bench/results/*.json (see docs/performance.md). Not part of `make test`.
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache build proxy_addons/_tnetc*.so
