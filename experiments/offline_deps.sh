#!/usr/bin/env bash
# experiments/offline_deps.sh pack|build|programs|unpack: simba on a machine with no Debian
# packages and no network (the GPU machine of the experiments), from the build's packages
# carried as one file.
#
#   bash experiments/offline_deps.sh pack       # on a Debian bookworm machine with apt access
#   bash experiments/offline_deps.sh build      # on the bare machine, in the repository root
#   bash experiments/offline_deps.sh programs   # here, after building: the programs to carry
#   bash experiments/offline_deps.sh unpack     # on the bare machine: run the carried programs
#
# pack: apt-get download the packages the build needs (the Makefile's PACKAGES without the
#   compiler, CMake and the demo's corpus, which the GPU machine has or does not need, plus their
#   runtime libraries that a non-Debian image may lack), unpack each with dpkg -x into one tree
#   and write it as data/deps/deps.tar.xz (git-ignored; carry it with the working tree).
# build: unpack data/deps/deps.tar.xz into $DEPS_ROOT (default /tmp/simba-deps; kept when it is
#   there already), configure $BUILD (default /tmp/simba-build; outside the working tree, so that a
#   machine that keeps /tmp between calls keeps the build) with -DSIMBA_DEPS_ROOT and build the
#   targets $TARGETS (default: simba and every test) with all cores. The libraries are found at
#   run time through LD_LIBRARY_PATH: `source $BUILD/deps.env` sets it for the programs.
# programs: pack simba, bench_gpu and the test_cuda_* programs of the build folder $BUILD
#   (default build) into data/deps/programs.tar.xz (git-ignored), to carry instead of building
#   on the GPU machine (two to three minutes of its time a call). Build them first (`make
#   configure`, then `cmake --build build --target simba bench_gpu <test_cuda_...>`); the
#   programs it finds are packed, and it fails when simba or bench_gpu is missing.
# unpack: unpack data/deps/deps.tar.xz as build does and data/deps/programs.tar.xz into
#   $PROGRAMS (default /tmp/simba-programs), and write $PROGRAMS/deps.env. The programs link the
#   CUDA libraries of the machine's own toolkit; when they do not start there (other system
#   libraries than this machine's), build instead.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root
ARCHIVE=data/deps/deps.tar.xz
PACKAGES=(libopenblas-openmp-dev libopenblas0-openmp libgfortran5 doctest-dev nlohmann-json3-dev
          libcli11-dev libbenchmark-dev libbenchmark1debian libutf8proc-dev libutf8proc2 libpcre2-dev
          libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3)
fail() { echo "offline_deps: $*" >&2; exit 1; }

# Unpacks the Debian packages into $DEPS_ROOT once and prints the library folders for
# LD_LIBRARY_PATH.
unpack_deps() {
  if [ ! -f "$DEPS_ROOT/.unpacked" ]; then
    [ -f "$ARCHIVE" ] || fail "$ARCHIVE is missing: make it with 'bash experiments/offline_deps.sh pack' and carry it"
    rm -rf "$DEPS_ROOT" && mkdir -p "$DEPS_ROOT"
    tar -C "$DEPS_ROOT" -xJf "$ARCHIVE" || fail "unpacking $ARCHIVE into $DEPS_ROOT failed"
    touch "$DEPS_ROOT/.unpacked"
  fi
  local lib=$DEPS_ROOT/usr/lib/x86_64-linux-gnu
  echo "$lib:$lib/openblas-openmp"
}

# Writes the file that puts the unpacked libraries on LD_LIBRARY_PATH.
write_env() {
  echo "export LD_LIBRARY_PATH=$2\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" > "$1.tmp"
  mv "$1.tmp" "$1"
}

DEPS_ROOT=${DEPS_ROOT:-/tmp/simba-deps}
PROGRAM_ARCHIVE=data/deps/programs.tar.xz

case "${1:-}" in
  pack)
    for tool in apt-get dpkg-deb tar xz; do
      command -v "$tool" >/dev/null || fail "'$tool' is not installed; pack needs a Debian machine"
    done
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download "${PACKAGES[@]}") ||
      fail "apt-get download failed (run apt-get update; the packages: ${PACKAGES[*]})"
    mkdir -p "$work/root" data/deps
    for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
    # Only what simba's build links, so that the archive and the corpus fit one call's 64 MiB:
    # no documentation, no static libraries (except libbenchmark_main.a, whose presence Google
    # Benchmark's CMake files check), not OpenBLAS's separate BLAS/LAPACK compatibility
    # libraries, not PCRE2's 16- and 32-bit code-unit variants.
    lib=$work/root/usr/lib/x86_64-linux-gnu
    rm -rf "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work/root/usr/share/lintian"
    find "$work/root" -name '*.a' ! -name libbenchmark_main.a -delete
    rm -f "$lib"/openblas-openmp/lib{blas,lapack}.so* "$lib"/libpcre2-{16,32}.so*
    XZ_OPT=-9e tar -C "$work/root" -cJf "$ARCHIVE.tmp" . && mv "$ARCHIVE.tmp" "$ARCHIVE"
    echo "offline_deps: $ARCHIVE ($(stat -c %s "$ARCHIVE") bytes) from ${#PACKAGES[@]} packages"
    ;;
  build)
    BUILD=${BUILD:-/tmp/simba-build}
    libs=$(unpack_deps)
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSIMBA_DEPS_ROOT="$DEPS_ROOT" > /dev/null ||
      fail "configuring $BUILD failed (cmake's messages are above)"
    write_env "$BUILD/deps.env" "$libs"
    read -r -a targets <<< "${TARGETS:-simba all_tests}"
    cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" > "$BUILD/build.log" 2>&1 ||
      { tail -40 "$BUILD/build.log" >&2; fail "building ${targets[*]} in $BUILD failed (log: $BUILD/build.log)"; }
    echo "offline_deps: built ${targets[*]} in $BUILD; run its programs after 'source $BUILD/deps.env'"
    ;;
  programs)
    BUILD=${BUILD:-build}
    for p in simba bench_gpu; do
      [ -x "$BUILD/$p" ] || fail "$BUILD/$p is missing: build it first (cmake --build $BUILD --target simba bench_gpu ...)"
    done
    names=(simba bench_gpu)
    for p in "$BUILD"/test_cuda_*; do [ -x "$p" ] && names+=("$(basename "$p")"); done
    mkdir -p data/deps
    XZ_OPT=-6 tar -C "$BUILD" -cJf "$PROGRAM_ARCHIVE.tmp" "${names[@]}" && mv "$PROGRAM_ARCHIVE.tmp" "$PROGRAM_ARCHIVE"
    echo "offline_deps: $PROGRAM_ARCHIVE ($(stat -c %s "$PROGRAM_ARCHIVE") bytes): ${names[*]}"
    ;;
  unpack)
    PROGRAMS=${PROGRAMS:-/tmp/simba-programs}
    [ -f "$PROGRAM_ARCHIVE" ] ||
      fail "$PROGRAM_ARCHIVE is missing: make it here with 'bash experiments/offline_deps.sh programs' and carry it"
    libs=$(unpack_deps)
    rm -rf "$PROGRAMS" && mkdir -p "$PROGRAMS"
    tar -C "$PROGRAMS" -xJf "$PROGRAM_ARCHIVE" || fail "unpacking $PROGRAM_ARCHIVE into $PROGRAMS failed"
    write_env "$PROGRAMS/deps.env" "$libs"
    # shellcheck disable=SC1091
    (source "$PROGRAMS/deps.env" && "$PROGRAMS/simba" --help > /dev/null 2>&1) ||
      fail "the carried programs do not start here (other system libraries?): build instead ('build')"
    echo "offline_deps: programs in $PROGRAMS; run them after 'source $PROGRAMS/deps.env'"
    ;;
  *) fail "usage: bash experiments/offline_deps.sh pack|build|programs|unpack" ;;
esac
