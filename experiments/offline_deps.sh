#!/usr/bin/env bash
# experiments/offline_deps.sh pack|build: simba on a machine with no Debian packages and no
# network (the GPU machine of the experiments), from the build's packages carried as one file.
#
#   bash experiments/offline_deps.sh pack    # on a Debian bookworm machine with apt access
#   bash experiments/offline_deps.sh build   # on the bare machine, in the repository root
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
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root
ARCHIVE=data/deps/deps.tar.xz
PACKAGES=(libopenblas-openmp-dev libopenblas0-openmp libgfortran5 doctest-dev nlohmann-json3-dev
          libcli11-dev libbenchmark-dev libbenchmark1debian libutf8proc-dev libutf8proc2 libpcre2-dev
          libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3)
fail() { echo "offline_deps: $*" >&2; exit 1; }

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
    DEPS_ROOT=${DEPS_ROOT:-/tmp/simba-deps}
    BUILD=${BUILD:-/tmp/simba-build}
    if [ ! -f "$DEPS_ROOT/.unpacked" ]; then
      [ -f "$ARCHIVE" ] || fail "$ARCHIVE is missing: make it with 'bash experiments/offline_deps.sh pack' and carry it"
      rm -rf "$DEPS_ROOT" && mkdir -p "$DEPS_ROOT"
      tar -C "$DEPS_ROOT" -xJf "$ARCHIVE" || fail "unpacking $ARCHIVE into $DEPS_ROOT failed"
      touch "$DEPS_ROOT/.unpacked"
    fi
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSIMBA_DEPS_ROOT="$DEPS_ROOT" > /dev/null ||
      fail "configuring $BUILD failed (cmake's messages are above)"
    lib=$DEPS_ROOT/usr/lib/x86_64-linux-gnu
    echo "export LD_LIBRARY_PATH=$lib:$lib/openblas-openmp\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" > "$BUILD/deps.env.tmp"
    mv "$BUILD/deps.env.tmp" "$BUILD/deps.env"
    read -r -a targets <<< "${TARGETS:-simba all_tests}"
    cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}" > "$BUILD/build.log" 2>&1 ||
      { tail -40 "$BUILD/build.log" >&2; fail "building ${targets[*]} in $BUILD failed (log: $BUILD/build.log)"; }
    echo "offline_deps: built ${targets[*]} in $BUILD; run its programs after 'source $BUILD/deps.env'"
    ;;
  *) fail "usage: bash experiments/offline_deps.sh pack|build" ;;
esac
