# Flywheel: `make demo` runs the whole loop offline; `make test` runs the tests; `make dev` opens the UI.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DATABASE ?= data/flywheel.duckdb

export DAGSTER_HOME := $(CURDIR)/.dagster_home
export FLYWHEEL_DUCKDB := $(DATABASE)
# Nothing is downloaded at run time: models and tokenizers are built here.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install system-packages demo demo-incumbent test dev annotate demo-data clean FORCE

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build, so nothing later pulls a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

FORCE:

# A DuckDB file has one writer: runs launched from the UI, sensors and schedules go one at a time.
# A DuckLake (DATABASE=ducklake:...) takes several writers at once (docs/ducklake.md).
MAX_CONCURRENT_RUNS ?= $(if $(filter ducklake:%,$(DATABASE)),4,1)

# Run history for `make demo` and `make dev` (the UI shows the demo's runs); nothing phones home.
# Written again on every make, so the run queue follows DATABASE.
$(DAGSTER_HOME)/dagster.yaml: Makefile FORCE
	mkdir -p $(DAGSTER_HOME)
	printf '%s\n' \
	  'telemetry:' \
	  '  enabled: false' \
	  'run_queue:' \
	  '  max_concurrent_runs: $(MAX_CONCURRENT_RUNS)' \
	  '# A run whose process died (kill -9, out of memory) is marked failed by the daemon within about' \
	  '# poll_interval_seconds (pipeline/run_launcher.py checks the process), so the queue and automation' \
	  '# go on; it is not resumed in place: automation, a schedule or a person runs its assets again.' \
	  'run_launcher:' \
	  '  module: pipeline.run_launcher' \
	  '  class: LocalRunLauncher' \
	  'run_monitoring:' \
	  '  enabled: true' \
	  '  start_timeout_seconds: 180' \
	  '  max_resume_run_attempts: 0' \
	  '  poll_interval_seconds: 30' \
	  > $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster job execute -m pipeline.definitions -j flywheel
	$(BIN)/python -m pipeline.summary $(DATABASE)

# After make demo: the model in use served on 127.0.0.1 as a stand-in hosted incumbent, captured,
# and evaluated against base, few-shot and fine-tuned (README, "Leaving hosted fine-tuning").
demo-incumbent: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python scripts/demo_incumbent.py --database $(DATABASE)

# Browser tests drive Debian's chromium; the deployment test starts a PostgreSQL server.
system-packages:
	bash scripts/install_system_packages.sh

test: install system-packages
	$(BIN)/python -m pytest

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The annotation app on http://127.0.0.1:8765 (ANNOTATE_ARGS="--port 9000 --annotator maya" to change).
annotate: install
	$(BIN)/flywheel-annotate --database $(DATABASE) $(ANNOTATE_ARGS)

demo-data: install
	$(BIN)/python scripts/make_demo_data.py --out data/demo

clean:
	rm -rf $(VENV) .dagster_home data/flywheel.duckdb data/flywheel.duckdb.wal data/flywheel.snapshot.duckdb data/models data/exports data/reports
