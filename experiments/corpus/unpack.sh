#!/usr/bin/env bash
# experiments/corpus/unpack.sh: turns the carried data/linux-corpus/xz/*.bin.xz
# back into data/linux-corpus/bin/*.bin on the GPU machine, which has no
# network and no Debian packages (the .xz files travel with the working tree;
# experiments/corpus/make_corpus.sh made them). Every file is checked against
# the SHA-256 in experiments/corpus/manifest.json, compressed and unpacked, so
# an experiment never runs on a stale or truncated corpus. Needs bash,
# coreutils, sed and xz. A .bin that already matches is kept.
#
#   bash experiments/corpus/unpack.sh
set -euo pipefail

cd "$(dirname "$0")/../.."  # the repository root
MANIFEST=experiments/corpus/manifest.json
XZ_DIR=data/linux-corpus/xz
BIN_DIR=data/linux-corpus/bin

fail() { echo "unpack: $*" >&2; exit 1; }
command -v xz >/dev/null || fail "'xz' is not installed; it is needed to decompress $XZ_DIR"
[ -f "$MANIFEST" ] || fail "$MANIFEST is missing"

# The manifest's "sha256" object has one '"NAME": "<64 hex digits>"' line per file.
expected_sha() {
  local sha
  sha=$(sed -n "s/^ *\"${1//./\\.}\": \"\([0-9a-f]\{64\}\)\",\{0,1\}$/\1/p" "$MANIFEST")
  [[ $sha =~ ^[0-9a-f]{64}$ ]] || fail "$MANIFEST has no SHA-256 for $1"
  echo "$sha"
}

mkdir -p "$BIN_DIR"
for s in train validation test; do
  bin=$BIN_DIR/$s.bin
  want=$(expected_sha "$s.bin")
  if [ -f "$bin" ] && [ "$(sha256sum <"$bin" | cut -d' ' -f1)" = "$want" ]; then
    echo "unpack: $bin is up to date"
    continue
  fi
  [ -f "$XZ_DIR/$s.bin.xz" ] ||
    fail "$XZ_DIR/$s.bin.xz is missing; carry data/linux-corpus/xz with the working tree (make it with experiments/corpus/make_corpus.sh)"
  [ "$(sha256sum <"$XZ_DIR/$s.bin.xz" | cut -d' ' -f1)" = "$(expected_sha "$s.bin.xz")" ] ||
    fail "$XZ_DIR/$s.bin.xz does not match $MANIFEST; re-make the corpus or check out the manifest that goes with it"
  xz -dc "$XZ_DIR/$s.bin.xz" >"$bin.tmp"
  got=$(sha256sum <"$bin.tmp" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { rm -f "$bin.tmp"; fail "$s.bin unpacked to SHA-256 $got, the manifest says $want"; }
  mv "$bin.tmp" "$bin"
  echo "unpack: $bin ($(stat -c %s "$bin") bytes)"
done
