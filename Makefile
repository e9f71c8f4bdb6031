# make demo   create .venv if needed, install, run the pipeline on the embedded data
# make test   create .venv if needed, install, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SHARED ?= ../shared
CACHE := .cache/shared
# TensorFlow start-up chatter (CUDA probes, oneDNN notices) hidden; override to see it.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: venv test demo shared-data clean-demo

$(STAMP): setup.py requirements.txt requirements-test.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements-test.txt -e .
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder tests

demo: $(STAMP)
	$(BIN)/sjft-run --flagfile=flags/run/demo.flags

# Unpacks the real datasets of ../shared into .cache/shared (ignored by git).
shared-data:
	mkdir -p $(CACHE)
	tar -xzf $(SHARED)/data/flowers102/flowers102_96px.tar.gz -C $(CACHE)
	for part in train_part1 val; do \
	  tar -xzf $(SHARED)/data/tiny-imagenet-200/tinyimagenet200_$$part.tar.gz -C $(CACHE); done

clean-demo:
	rm -rf runs/demo
