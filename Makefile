# repro: the two set-up commands of the README are `make run` and `make test`;
# both install what they need first.
VENV ?= .venv
PY := $(VENV)/bin/python
REPRO := $(VENV)/bin/repro
PYTEST := $(VENV)/bin/pytest
export WANDB_SILENT := true

.PHONY: install run test test-all reproduce-cpu smoke index readmes clean

$(VENV)/.installed: pyproject.toml constraints/ci.txt .ci/install.sh
	bash .ci/install.sh $(VENV)
	touch $@

install: $(VENV)/.installed

## The main job: a cpu-profile pilot that needs no download (verdict table + ledger).
run: install
	$(REPRO) run memory_efficient_attention --profile cpu

## The test suite CI runs: everything except tests marked `slow`.
test: install
	$(PYTEST) -m "not slow" -q

## Everything, slow cpu-claim runs included.
test-all: install
	$(PYTEST) -q

## Every implemented paper's cpu profile (real verdicts into the ledger).
reproduce-cpu: install
	@for slug in $$($(PY) -c "from repro import registry; print(' '.join(r.slug for r in registry.all_recipes() if 'cpu' in r.profiles))"); do \
	  echo "== $$slug"; $(REPRO) run $$slug --profile cpu --no-progress || true; \
	done
	$(REPRO) report

## Every implemented paper's smoke profile.
smoke: install
	@for slug in $$($(PY) -c "from repro import registry; print(' '.join(r.slug for r in registry.all_recipes()))"); do \
	  $(REPRO) run $$slug --profile smoke --no-progress --wandb disabled || exit 1; \
	done

## Developers: regenerate papers/index.json; bless the latest cpu/full runs into results/ and README tables.
index: install
	$(REPRO) index
readmes: install
	$(REPRO) report --update-readmes

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
