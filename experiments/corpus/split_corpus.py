#!/usr/bin/env python3
"""Select the kernel documents, split them by a hash of their path, and write
train.bin / validation.bin / test.bin with one end-of-document byte between files.

Usage: split_corpus.py SOURCE_ROOT OUT_DIR KEEP_PERCENT

The rules (docs/experiments.md, "Corpus", states them for readers):
  selection  every regular file named *.c or *.h anywhere in the tree, and every
             *.rst or *.txt under Documentation/; except files inside a directory
             named asic_reg (machine-generated register maps: 400 MB, a third of
             all C bytes) and files over 1 MiB (the rest of the generated tables).
  skipped    empty files, files that are not valid UTF-8, files holding the
             end-of-document byte 0x00 (so 0x00 in a .bin always marks a boundary).
  hash       h = first 8 bytes, big-endian, of SHA-256 of the path relative to the
             source root (UTF-8, no leading "./").
  split      h mod 100: 0-89 train, 90-94 validation, 95-99 test.
  subsample  keep a file iff (h div 100) mod 100 < KEEP_PERCENT; independent of
             the split digit, so every split keeps about the same fraction.
Files are written in byte order of their paths. Prints a JSON summary on stdout.
"""
import hashlib
import json
import os
import sys

EOD = b"\x00"
MAX_FILE_BYTES = 1 << 20
SPLITS = ("train", "validation", "test")


def split_of(h):
    d = h % 100
    return "train" if d < 90 else "validation" if d < 95 else "test"


def selected(rel):
    parts = rel.split("/")
    if "asic_reg" in parts[:-1]:
        return False
    if rel.endswith((".c", ".h")):
        return True
    return parts[0] == "Documentation" and rel.endswith((".rst", ".txt"))


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: split_corpus.py SOURCE_ROOT OUT_DIR KEEP_PERCENT")
    root, out_dir, keep = sys.argv[1], sys.argv[2], sys.argv[3]
    if not keep.isdigit() or not 1 <= int(keep) <= 100:
        sys.exit(f"split_corpus.py: KEEP_PERCENT must be an integer in [1, 100], got '{keep}'")
    keep = int(keep)
    if not os.path.isdir(root):
        sys.exit(f"split_corpus.py: source root '{root}' is not a directory")

    candidates = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if selected(rel) and os.path.isfile(full) and not os.path.islink(full):
                candidates.append(rel)
    candidates.sort(key=lambda p: p.encode("utf-8"))

    skipped = {"over_1_MiB": 0, "empty": 0, "not_utf8": 0, "contains_eod": 0}
    stats = {s: {"all": {"files": 0, "bytes": 0}, "kept": {"files": 0, "bytes": 0}} for s in SPLITS}
    outs = {s: open(os.path.join(out_dir, f"{s}.bin.tmp"), "wb") for s in SPLITS}
    for rel in candidates:
        full = os.path.join(root, rel)
        if os.path.getsize(full) > MAX_FILE_BYTES:
            skipped["over_1_MiB"] += 1
            continue
        with open(full, "rb") as f:
            data = f.read()
        if not data:
            skipped["empty"] += 1
            continue
        if EOD in data:
            skipped["contains_eod"] += 1
            continue
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            skipped["not_utf8"] += 1
            continue
        h = int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:8], "big")
        split = split_of(h)
        stats[split]["all"]["files"] += 1
        stats[split]["all"]["bytes"] += len(data)
        if (h // 100) % 100 >= keep:
            continue
        kept = stats[split]["kept"]
        if kept["files"] > 0:
            outs[split].write(EOD)
        outs[split].write(data)
        kept["files"] += 1
        kept["bytes"] += len(data)
    for s in SPLITS:
        outs[s].close()
        if stats[s]["kept"]["files"] == 0:
            sys.exit(f"split_corpus.py: the {s} split is empty at KEEP_PERCENT={keep}")
        os.replace(os.path.join(out_dir, f"{s}.bin.tmp"), os.path.join(out_dir, f"{s}.bin"))
    json.dump({"candidates": len(candidates), "skipped": skipped, "splits": stats}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
