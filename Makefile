# One task vocabulary for people, hooks and CI. `make help` lists the targets.
# uv is brought in with pip on a machine that lacks it; `python3 -m uv` works either way.
PYTHON ?= python3
UV := $(PYTHON) -m uv
export UV_LINK_MODE ?= copy

HOST ?= 127.0.0.1
PORT ?= 5000
# pytest-xdist workers for `make test`: most tests wait on servers and I/O, so more workers than cores pay off.
TEST_WORKERS ?= 3

.PHONY: help install serve demo test test-quick check format maintain bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: ## install uv (if missing), the locked environment into .venv and the portal's npm packages
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || { echo "make install: installing uv with pip (a few seconds)"; \
		$(PYTHON) -m pip install --quiet uv; }
	@# Bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set, every process would otherwise
	@# compile pyiceberg, pandas & co. again (~3 CPU-s per `lakeops` command or test server).
	@# Progress on the first install (a minute or two: ~1 GB of wheels, then bytecode); one quiet line when nothing changed.
	@if [ -x .venv/bin/python ] && $(UV) sync --frozen --check --quiet >/dev/null 2>&1; then :; else \
		echo "make install: installing the locked environment into .venv (first time: a minute or two)"; \
		$(UV) sync --frozen --compile-bytecode; fi
	@# The web portal's front-end packages (uPlot), from api/portal/package-lock.json; reinstalled when the lock changes.
	@[ api/portal/node_modules/.package-lock.json -nt api/portal/package-lock.json ] || \
		npm ci --prefix api/portal --no-audit --no-fund --loglevel=error
	@# lakeops' own modules too (only what changed since): with PYTHONDONTWRITEBYTECODE set, every process
	@# would compile its ~80 modules again, ~0.3-0.45 CPU-s of each `lakeops` command or server start.
	@$(UV) run --frozen python -m compileall -q lakeops api catalog >/dev/null

serve: install ## serve lakeops on http://$(HOST):$(PORT) with the embedded lake in ./.lakeops
	@$(UV) run --frozen lakeops serve --host $(HOST) --port $(PORT)

demo: install ## log a small sweep to the embedded lake (./.lakeops) and print the best runs
	@$(UV) run --frozen lakeops demo

test: install ## run every test (real S3 server, lakeops serve, psql, Chromium; see README "Tests")
	@echo "make test: $(TEST_WORKERS) workers each collect the tests (about 20 s), then a dot per test; make test-quick for a fast subset"
	@$(UV) run --frozen pytest -n $(TEST_WORKERS)

test-quick: install ## the fast subset: file:// lakes in-process; no S3 server, HTTP server or browser
	@$(UV) run --frozen pytest -n $(TEST_WORKERS) -m "not s3 and not api and not browser and not slow"

check: install ## lint, type-check and check the layers (api -> lakeops -> catalog)
	@$(UV) run --frozen ruff check .
	@$(UV) run --frozen ruff format --check lakeops catalog api
	@$(UV) run --frozen mypy
	@$(UV) run --frozen lint-imports

format: install ## format the code
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

maintain: install ## compact small files and expire old snapshots of the embedded lake
	@$(UV) run --frozen lakeops maintain

bench: install ## run the benchmarks (not part of CI): tracking core, REST service, registry, lineage, SQL, client, portal, scale, ops
	@$(UV) run --frozen python benchmarks/bench_tracking.py --backend both
	@$(UV) run --frozen python benchmarks/bench_mlflow_api.py
	@$(UV) run --frozen python benchmarks/bench_registry.py
	@$(UV) run --frozen python benchmarks/bench_lineage.py
	@$(UV) run --frozen python benchmarks/bench_sql.py
	@$(UV) run --frozen python benchmarks/bench_client.py
	@$(UV) run --frozen python benchmarks/bench_portal.py
	@$(UV) run --frozen python benchmarks/bench_scale.py --scale small
	@$(UV) run --frozen python benchmarks/bench_ops.py

clean: ## remove the embedded lake and caches of this checkout
	rm -rf .lakeops .pytest_cache .ruff_cache .mypy_cache
