# The two commands of the README (make run, make test) do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q
DATA   ?= var
# core/_vif_table.h is generated from core/vif_table.csv and committed; the build (setup.py)
# rewrites it only when the table gives another one, so the table and its generator are sources.
CORE_SOURCES = $(wildcard core/*.pyx core/*.pxd core/*.h gateway/*.pyx) core/vif_table.csv core/units.py \
	tools/gen_vif_table.py
PY_SOURCES   = $(shell find core gateway web -name '*.py')

.PHONY: install compile debug test test-debug lint bench run clean dist

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip "setuptools>=69" wheel "Cython>=3.0.10" "numpy>=1.26"

# The stamp is renewed whenever the package metadata or a compiled source changes.
$(VENV)/.installed: $(PY) pyproject.toml setup.py $(CORE_SOURCES)
	$(PIP) install --no-build-isolation -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

compile: install

# A second environment with the bounds-checked build, for the property tests.
# (not editable: the Python sources are copied, so they are prerequisites too)
$(VENV)-debug/.installed: pyproject.toml setup.py $(CORE_SOURCES) $(PY_SOURCES)
	$(PYTHON) -m venv $(VENV)-debug
	$(VENV)-debug/bin/python -m pip --disable-pip-version-check -q install "setuptools>=69" wheel \
		"Cython>=3.0.10" "numpy>=1.26"
	rm -rf build/debug
	MBUSGW_DEBUG=1 $(VENV)-debug/bin/python -m pip --disable-pip-version-check -q install \
		--no-build-isolation '.[test]'
	touch $@

debug: $(VENV)-debug/.installed

system-deps:
	@bash tools/system-deps.sh
	@bash tools/snmp-base-mibs.sh $(VENV)/share/snmp-mibs

test: install system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest -q
	$(MAKE) test-debug

# Property tests (hypothesis) against the bounds-checked build; run from tests/ so that the
# installed package, not the checkout, is what gets imported.
test-debug: debug
	cd tests && ../$(VENV)-debug/bin/python -m pytest -q -p no:cacheprovider -m property \
		--rootdir=. -c ../pyproject.toml .

lint: install
	$(PY) -m ruff check .

bench: install
	$(PY) -m bench.run $(BENCH)

# The wheel (compiled core) and the source distribution (compiles it on install) in dist/.
dist: install
	rm -rf dist
	$(PY) -m pip --disable-pip-version-check -q wheel --no-build-isolation --no-deps -w dist .
	$(PY) setup.py -q sdist -d dist

run: install
	$(VENV)/bin/mbusgw run --data-dir $(DATA)

clean:
	rm -rf build dist $(VENV) $(VENV)-debug core/*.c core/*.so *.egg-info
