# The two entry points of the README: `make demo` (the main job: an image of this machine's Debian
# packages pushed and run lazily from the store) and `make test`.
.PHONY: setup build demo test bench clean

setup:
	bash scripts/setup.sh

build: setup

demo: setup
	bash scripts/demo.sh

test: setup
	bash scripts/test.sh

bench: setup
	bash bench/setup.sh && node bench/push-throughput.mjs

clean:
	rm -rf dist build node_modules
