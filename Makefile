# Two entry points: `make demo` and `make test`. Both create .venv and install everything first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,local]'
	touch $(STAMP)

# The Spark engine's extra (PySpark) for its tests; the demo and a plain install stay without it.
SPARK_STAMP := $(VENV)/.spark-installed
$(SPARK_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,local,spark]'
	touch $(SPARK_STAMP)

install: $(STAMP)

demo: install
	$(BIN)/recsys demo

# The dashboard's browser test drives Debian's Chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	-apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null)

# promtool (Debian's prometheus package) checks the /metrics pages and the alert rules.
PROMTOOL := /usr/bin/promtool
$(PROMTOOL):
	-apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends prometheus >/dev/null)

# The Spark engine's tests need Java 17 (Debian's package).
JAVA := /usr/bin/java
$(JAVA):
	-apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >/dev/null)

test: install $(SPARK_STAMP) $(CHROMIUM) $(PROMTOOL) $(JAVA)
	$(BIN)/pytest

# The benchmarks (bench/): each prints a table and writes bench/results/*.json. About 90 minutes.
bench: install
	$(BIN)/python bench/stream_throughput.py
	$(BIN)/python bench/freshness.py
	$(BIN)/python bench/api_latency.py
	$(BIN)/python bench/events_route.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/offline_cost.py
	$(BIN)/python bench/quality_suite.py

clean:
	rm -rf $(VENV) .pytest_cache
