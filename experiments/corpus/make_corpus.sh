#!/usr/bin/env bash
# experiments/corpus/make_corpus.sh: the byte-level Linux kernel corpus of the
# GPU experiments (docs/experiments.md, "Corpus"), made on a Debian machine
# with network access:
#
#   sudo bash experiments/corpus/make_corpus.sh
#
# 1. apt-get download linux-source-6.1 (version $LINUX_SOURCE_VERSION) into
#    data/linux-corpus/download/ and extract the kernel tree (reused if there).
# 2. split_corpus.py selects the documents and splits them by a hash of their
#    path into train / validation / test (the rules are in its header).
# 3. A probe at KEEP_PERCENT=5 measures xz's ratio on this text; the largest
#    KEEP_PERCENT whose three .xz files fit $CORPUS_BUDGET_MIB follows from it
#    (a larger sample usually compresses better, so the estimate errs on the
#    small side); if the result is still over, one percent less is tried.
# 4. data/linux-corpus/bin/{train,validation,test}.bin and their .xz in
#    data/linux-corpus/xz/ (the folder that travels to the GPU machine), and
#    experiments/corpus/manifest.json with the sizes, rules and SHA-256s.
# Every output is a function of the package version and the xz version, so a
# second run rewrites the same bytes.
set -euo pipefail

VERSION=${LINUX_SOURCE_VERSION:-6.1.192-3}
BUDGET_MIB=${CORPUS_BUDGET_MIB:-48}
PROBE_PERCENT=5

HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/../.."  # the repository root: data/ is git-ignored there
DATA=data/linux-corpus
DOWNLOAD=$DATA/download
SRC=$DOWNLOAD/linux-source-6.1
MANIFEST=experiments/corpus/manifest.json
SPLITS=(train validation test)

fail() { echo "make_corpus: $*" >&2; exit 1; }
for tool in apt-get dpkg-deb tar xz sha256sum python3 jq; do
  command -v "$tool" >/dev/null || fail "'$tool' is not installed; it is needed to make the corpus"
done
[[ $BUDGET_MIB =~ ^[1-9][0-9]*$ ]] || fail "CORPUS_BUDGET_MIB must be a positive integer, got '$BUDGET_MIB'"
BUDGET=$((BUDGET_MIB * 1024 * 1024))

# 1. The package and the kernel tree.
DEB=$DOWNLOAD/linux-source-6.1_${VERSION}_all.deb
mkdir -p "$DOWNLOAD"
if [ ! -f "$DEB" ]; then
  echo "make_corpus: downloading linux-source-6.1=$VERSION"
  (cd "$DOWNLOAD" && apt-get download "linux-source-6.1=$VERSION") ||
    fail "apt-get download linux-source-6.1=$VERSION failed; run apt-get update, or set LINUX_SOURCE_VERSION to a version 'apt-cache policy linux-source-6.1' lists (the numbers in the manifest change with it)"
fi
[ "$(dpkg-deb -f "$DEB" Version)" = "$VERSION" ] || fail "$DEB is not version $VERSION; delete it and re-run"
if [ ! -f "$SRC/.extracted" ]; then
  echo "make_corpus: extracting the kernel tree into $SRC"
  rm -rf "$SRC"
  dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/src/linux-source-6.1.tar.xz | tar -xJ -C "$DOWNLOAD" ||
    fail "extracting usr/src/linux-source-6.1.tar.xz from $DEB failed"
  [ -d "$SRC/Documentation" ] || fail "the tarball did not unpack into $SRC"
  touch "$SRC/.extracted"
fi

# Writes $1/*.bin at KEEP_PERCENT $2 and $1/*.bin.xz; the split summary goes to $1/split.json.
make_splits() {
  local dir=$1 keep=$2 s
  rm -rf "$dir" && mkdir -p "$dir"
  echo "make_corpus: splitting at KEEP_PERCENT=$keep into $dir"
  python3 "$HERE/split_corpus.py" "$SRC" "$dir" "$keep" >"$dir/split.json"
  for s in "${SPLITS[@]}"; do
    echo "make_corpus:   xz -9 $dir/$s.bin ($(stat -c %s "$dir/$s.bin") bytes)"
    xz -9 -T1 -k -f "$dir/$s.bin"
  done
}
sizes() {  # total bytes of the files named by the pattern $1
  local total=0 f
  for f in $1; do total=$((total + $(stat -c %s "$f"))); done
  echo "$total"
}

# 2-3. Probe, choose KEEP_PERCENT, write the final split.
make_splits "$DATA/probe" "$PROBE_PERCENT"
probe_bin=$(sizes "$DATA/probe/*.bin")
probe_xz=$(sizes "$DATA/probe/*.bin.xz")
all_bytes=$(jq '[.splits[].all.bytes] | add' "$DATA/probe/split.json")
keep=$((100 * BUDGET * probe_bin / (probe_xz * all_bytes)))
((keep > 100)) && keep=100
((keep >= 1)) || fail "even 1% of the corpus is over $BUDGET_MIB MiB compressed"
echo "make_corpus: probe ratio $probe_bin / $probe_xz bytes; $all_bytes bytes in all; trying KEEP_PERCENT=$keep"
rm -rf "$DATA/probe"
while :; do
  make_splits "$DATA/build" "$keep"
  total_xz=$(sizes "$DATA/build/*.bin.xz")
  ((total_xz <= BUDGET)) && break
  ((keep > 1)) || fail "even 1% of the corpus is over $BUDGET_MIB MiB compressed"
  echo "make_corpus: $total_xz bytes compressed is over $BUDGET bytes; one percent less"
  keep=$((keep - 1))
done

# Checks that do not trust split_corpus.py: 0x00 appears exactly between
# documents (files - 1 times), and each .xz decompresses to its .bin.
for s in "${SPLITS[@]}"; do
  files=$(jq ".splits.$s.kept.files" "$DATA/build/split.json")
  eods=$(tr -cd '\000' <"$DATA/build/$s.bin" | wc -c)
  ((eods == files - 1)) || fail "$s.bin holds $eods 0x00 bytes for $files documents (expected $((files - 1)))"
  [ "$(xz -dc "$DATA/build/$s.bin.xz" | sha256sum)" = "$(sha256sum <"$DATA/build/$s.bin")" ] ||
    fail "$s.bin.xz does not decompress to $s.bin"
done

# 4. Outputs and the manifest.
rm -rf "${DATA:?}/bin" "${DATA:?}/xz"
mkdir -p "$DATA/bin" "$DATA/xz"
mv "$DATA"/build/*.bin.xz "$DATA/xz/"
mv "$DATA"/build/*.bin "$DATA/bin/"
for s in "${SPLITS[@]}"; do
  for f in "$DATA/bin/$s.bin" "$DATA/xz/$s.bin.xz"; do
    jq -n --arg name "$(basename "$f")" --argjson bytes "$(stat -c %s "$f")" \
      --arg sha256 "$(sha256sum <"$f" | cut -d' ' -f1)" '{name: $name, bytes: $bytes, sha256: $sha256}'
  done
done | jq -s 'map({key: .name, value: .}) | from_entries' >"$DATA/build/files.json"
jq -n --arg version "$VERSION" --arg deb_sha "$(sha256sum <"$DEB" | cut -d' ' -f1)" \
  --arg xz_version "$(xz --version | head -1)" --argjson keep "$keep" --argjson budget "$BUDGET" \
  --slurpfile split "$DATA/build/split.json" --slurpfile files "$DATA/build/files.json" '
  $files[0] as $f |
  {
    package: {name: "linux-source-6.1", version: $version, deb_sha256: $deb_sha,
              tarball: "usr/src/linux-source-6.1.tar.xz"},
    selection: "*.c and *.h anywhere in the tree; *.rst and *.txt under Documentation/; not inside a directory named asic_reg; at most 1 MiB; not empty; valid UTF-8; no 0x00 byte",
    order: "byte order of the path relative to the source root",
    eod_byte: 0,
    eod_rule: "one 0x00 byte between consecutive documents of a split (none before the first or after the last)",
    hash_rule: "h = first 8 bytes (big-endian) of SHA-256 of the path relative to the source root, UTF-8, no leading ./",
    split_rule: "h mod 100: 0-89 train, 90-94 validation, 95-99 test",
    subsample_rule: "keep a document iff (h div 100) mod 100 < keep_percent",
    keep_percent: $keep,
    compressed_budget_bytes: $budget,
    compressor: ("xz -9 -T1 (" + $xz_version + ")"),
    candidates: $split[0].candidates,
    skipped: $split[0].skipped,
    splits: ($split[0].splits | with_entries(.key as $s | .value += {
      bin_bytes: $f[$s + ".bin"].bytes,
      xz_bytes: $f[$s + ".bin.xz"].bytes,
      xz_ratio: (($f[$s + ".bin"].bytes / $f[$s + ".bin.xz"].bytes) * 100 | round / 100)})),
    sha256: ($f | map_values(.sha256))
  }' >"$MANIFEST.tmp"
mv "$MANIFEST.tmp" "$MANIFEST"
rm -rf "$DATA/build"
echo "make_corpus: KEEP_PERCENT=$keep, $(sizes "$DATA/xz/*.bin.xz") bytes in $DATA/xz (budget $BUDGET); wrote $MANIFEST"
