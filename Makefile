# simba: the two commands a newcomer needs are `make demo` and `make test`.
# Everything is built by CMake in build/; this Makefile installs missing
# Debian packages (as root, or through sudo), configures, builds and runs.
#
#   make deps    install missing Debian packages (apt-get)
#   make         build the library, the `simba` CLI, tests and benchmarks
#   make test    build and run every test through ctest
#   make test-sanitize  the tests again, built with ASan + UBSan (build-sanitize/)
#   make fuzz    build the libFuzzer targets with clang (build-fuzz/) and run
#                each for FUZZ_SECONDS (default 600)
#   make demo    train a small Mamba on the King James Bible for a few minutes
#                (on the GPU when simba has the CUDA backend and one is usable)
#   make bench   build the benchmark programs (run them from build/)
#   make clean   remove build/, build-sanitize/ and build-fuzz/

BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
PACKAGES = cmake g++ make libopenblas-openmp-dev doctest-dev nlohmann-json3-dev libcli11-dev \
           libbenchmark-dev bible-kjv libutf8proc-dev libpcre2-dev
# Only `make fuzz` needs these: clang and its libFuzzer/sanitizer runtimes.
FUZZ_PACKAGES = clang-14 libclang-rt-14-dev
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The sanitized and fuzz builds are host-only (SIMBA_CUDA=OFF): the sanitizers
# instrument host code, and the CUDA kernels are checked by compute-sanitizer.
SANITIZE_BUILD ?= build-sanitize
# The first report fails the test: ASan and LeakSanitizer (part of ASan) by
# halt_on_error, UBSan by -fno-sanitize-recover plus halt_on_error here, with
# a stack trace. detect_stack_use_after_return also catches references to a
# returned function's locals (with GCC 14 or later: CMakeLists.txt says why older
# GCC builds leave it out). Leak checking stays on with OpenMP: libgomp's
# thread pool is still reachable at exit, so it is never reported.
SANITIZE_ENV = ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1 \
               UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 600
FUZZ_TARGETS = $(patsubst tests/fuzz/fuzz_%.cpp,%,$(wildcard tests/fuzz/fuzz_*.cpp))

.PHONY: all deps configure test test-sanitize fuzz demo bench clean

all: configure
	cmake --build $(BUILD) -j $(JOBS)

# $(call install_missing,PACKAGES): apt-get install those not installed yet.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "deps: all Debian packages present"; fi
endef

deps:
	$(call install_missing,$(PACKAGES))

configure: deps
	@[ -f $(BUILD)/CMakeCache.txt ] || cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

test: all
	cd $(BUILD) && ctest -V --timeout 1800

test-sanitize: deps
	@[ -f $(SANITIZE_BUILD)/CMakeCache.txt ] || cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=Release \
	  -DSIMBA_SANITIZE=ON -DSIMBA_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(SANITIZE_BUILD) -j $(JOBS) --target all_tests
	cd $(SANITIZE_BUILD) && $(SANITIZE_ENV) ctest --output-on-failure --timeout 1800

fuzz: deps
	$(call install_missing,$(FUZZ_PACKAGES))
	@[ -f $(FUZZ_BUILD)/CMakeCache.txt ] || CXX=clang++-14 cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release \
	  -DSIMBA_FUZZ=ON -DSIMBA_NATIVE=OFF -DSIMBA_OPENMP=OFF -DSIMBA_CUDA=OFF $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	bash tests/fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

demo: configure
	cmake --build $(BUILD) -j $(JOBS) --target simba
	bash train/demo.sh $(BUILD)/simba

bench: all

clean:
	rm -rf $(BUILD) $(SANITIZE_BUILD) $(FUZZ_BUILD)
