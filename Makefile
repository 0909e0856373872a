# Quickstart targets. `make demo` and `make test` each create .venv and install the pinned
# versions (requirements.lock) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := data/demo

.PHONY: install demo test lock clean

install: $(VENV)/.installed
	@# Headless Chromium (and a CJK font) for the report rendering tests; needs root.
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei) \
	  || echo "warning: could not install chromium; the browser rendering tests will be skipped"

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

demo: install
	$(BIN)/lgml simulate --firms 20000 --seed 0 --out $(DEMO) --overwrite --report
	$(BIN)/lgml validate $(DEMO)/panel.parquet --events $(DEMO)/events.parquet
	$(BIN)/lgml check $(DEMO)/panel.parquet --year 2027 --out $(DEMO)/check_2027.csv --overwrite
	$(BIN)/lgml train --config configs/designation.yaml --overwrite
	$(BIN)/lgml train --config configs/growth.yaml --overwrite
	$(BIN)/lgml score --model models/lgml-designation --growth-model models/lgml-growth \
	  --input $(DEMO)/panel.parquet --events $(DEMO)/events.parquet --output $(DEMO)/scores.parquet --overwrite
	$(BIN)/lgml report --model models/lgml-designation --data $(DEMO)/panel.parquet --events $(DEMO)/events.parquet \
	  --out $(DEMO)/model_report.html --overwrite
	$(BIN)/lgml explain --model models/lgml-designation --growth-model models/lgml-growth --top 1 \
	  --input $(DEMO)/panel.parquet --events $(DEMO)/events.parquet --out $(DEMO)/top_firm.html --overwrite

test: install
	$(BIN)/python -m pytest -q tests --nbmake notebooks

# Re-pin every dependency after changing pyproject.toml.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
