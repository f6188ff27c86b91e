"""Encoding throughput of Hugging Face tokenizers, with the protocol of bench/bench_tokenizer.cpp.

  whole    Tokenizer.encode(text) of the file as one string (one thread by construction)
  batch    Tokenizer.encode_batch(lines), each line (with its newline) one document; its threads
           are Rayon's: run with RAYON_NUM_THREADS=1 for the one-thread figure
Each runs `reps` times; printed: the best rep's MB/s (MB of UTF-8 text), the median, the token
count (it must equal simba's). The BPE cache of `tokenizers` lives in the tokenizer object, so its
reps after the first run warm; simba's encode() starts each call with an empty cache.

Usage: python3 bench/bench_tokenizer_hf.py TEXT_FILE [TOKENIZER_JSON] [reps]
"""
import statistics
import sys
import time

from tokenizers import Tokenizer


def report(label, nbytes, reps, f):
    times, tokens = [], 0
    for _ in range(reps):
        start = time.perf_counter()
        tokens = f()
        times.append(time.perf_counter() - start)
    times.sort()
    print(f"{label:<10} {nbytes / times[0] / 1e6:9.2f} MB/s best  {nbytes / statistics.median(times) / 1e6:9.2f} "
          f"MB/s median  ({tokens} tokens, {times[0]:.3f} s best)")


def main():
    path = sys.argv[1]
    tokenizer_path = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/gpt-neox-tokenizer/tokenizer.json"
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    with open(path, encoding="utf-8", newline="") as f:  # newline="": keep the bytes as they are
        text = f.read()
    nbytes = len(text.encode("utf-8"))
    tok = Tokenizer.from_file(tokenizer_path)
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    print(f"tokenizers: {tokenizer_path}\ntext: {path}, {nbytes} bytes\ndocuments: {len(lines)} lines")
    report("whole", nbytes, reps, lambda: len(tok.encode(text).ids))
    report("batch", nbytes, reps, lambda: sum(len(e.ids) for e in tok.encode_batch(lines)))


if __name__ == "__main__":
    main()
