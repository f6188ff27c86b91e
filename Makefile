# simba: the two commands a newcomer needs are `make demo` and `make test`.
# Everything is built by CMake in build/; this Makefile installs missing
# Debian packages (as root, or through sudo), configures, builds and runs.
#
#   make deps    install missing Debian packages (apt-get)
#   make         build the library, the `simba` CLI, tests and benchmarks
#   make test    build and run every test through ctest
#   make demo    train a small Mamba on the King James Bible for a few minutes
#   make bench   build the benchmark programs (run them from build/)
#   make clean   remove build/

BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PACKAGES = cmake g++ make libopenblas-openmp-dev doctest-dev nlohmann-json3-dev libcli11-dev \
           libbenchmark-dev bible-kjv libutf8proc-dev libpcre2-dev
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps configure test demo bench clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "deps: all Debian packages present"; fi

configure: deps
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest -V --timeout 1800

demo: configure
	cmake --build $(BUILD) -j $(JOBS) --target simba
	bash train/demo.sh $(BUILD)/simba

bench: all

clean:
	rm -rf $(BUILD)
