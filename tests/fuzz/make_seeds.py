#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets, tests/fuzz/corpus/<name>/.

Run from the repository root: python3 tests/fuzz/make_seeds.py
  safetensors/  the transformers-written tests/fixtures/hf_tiny/model.safetensors, and small
                files in the reference writer's layout (8-byte length, JSON header padded with
                spaces to a multiple of 8, packed little-endian data) covering every dtype simba
                reads (F32 F64 I64 F16 BF16), a 0-d and an empty tensor, and __metadata__
  ids_file/     input_ids (B, L) int64 files as safetensors.torch.save_file writes them
  config/       both fixtures' config.json (transformers) and a mamba_ssm-style config
  cli/          typical command lines, one per file (paths exist relative to the repo root)
  tokenizer/    texts of tests/fixtures/gpt-neox-tokenizer/cases.jsonl (every script, emoji,
                combining marks, special tokens) and one ill-formed UTF-8 input
  tokenizer_json/  small byte-level BPE tokenizer.json files in the GPT-NeoX shape (merges as
                strings and as pairs) and one with a model type simba rejects
  eval_json/    simba eval --context --json files as simba frontier, compare and contexts read them:
                two contexts with dense and pruned rows, and one written before the window
                placement was recorded
Crash inputs found by `make fuzz` are added to these folders by hand, next to the seeds.
"""
import json
import os
import shutil
import struct

CORPUS = "tests/fuzz/corpus"


def safetensors(tensors, metadata=None):
    """tensors: name -> (dtype, shape, raw little-endian bytes), in file order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write(folder, name, content):
    os.makedirs(os.path.join(CORPUS, folder), exist_ok=True)
    binary = isinstance(content, bytes)
    with open(os.path.join(CORPUS, folder, name), "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
        f.write(content)


def ids(rows):
    flat = [v for row in rows for v in row]
    return safetensors({"input_ids": ("I64", [len(rows), len(rows[0])], struct.pack(f"<{len(flat)}q", *flat))})


shutil.copy("tests/fixtures/hf_tiny/model.safetensors", os.path.join(CORPUS, "safetensors", "hf_tiny_model.safetensors"))
write("safetensors", "dtypes.safetensors", safetensors({
    "f64": ("F64", [2, 2], struct.pack("<4d", 1.0, -2.5, 0.0, 1e300)),
    "f32": ("F32", [3], struct.pack("<3f", 0.5, -0.0, float("inf"))),
    "i64": ("I64", [2], struct.pack("<2q", -1, 2**62)),
    "f16": ("F16", [2], struct.pack("<2H", 0x3C00, 0x7E00)),   # 1.0, NaN
    "bf16": ("BF16", [2], struct.pack("<2H", 0x3F80, 0x0001)),  # 1.0, a subnormal
}, {"format": "pt"}))
write("safetensors", "scalar_and_empty.safetensors", safetensors({
    "loss": ("F32", [], struct.pack("<f", 3.25)),
    "empty": ("F32", [0, 4], b""),
}))
write("safetensors", "no_tensors.safetensors", safetensors({}, {"note": "only metadata"}))

write("ids_file", "ids_2x13.safetensors", ids([[i * 7 % 48 for i in range(13)], [i * 5 % 48 for i in range(13)]]))
write("ids_file", "ids_1x2_bytes.safetensors", ids([[0, 255]]))
write("ids_file", "ids_with_logits.safetensors", safetensors({
    "input_ids": ("I64", [1, 3], struct.pack("<3q", 104, 105, 33)),
    "logits": ("F32", [1, 3, 1], struct.pack("<3f", 0.1, 0.2, 0.3)),
}))

shutil.copy("tests/fixtures/hf_tiny/config.json", os.path.join(CORPUS, "config", "hf_tiny.json"))
shutil.copy("tests/fixtures/hf_tiny_untied_bias/config.json", os.path.join(CORPUS, "config", "hf_tiny_untied_bias.json"))
write("config", "mamba_ssm.json", json.dumps({
    "d_model": 64, "n_layer": 2, "vocab_size": 250, "pad_vocab_size_multiple": 8,
    "ssm_cfg": {"d_state": 8, "d_conv": 4, "expand": 2, "dt_rank": "auto"},
    "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "tie_embeddings": True}, indent=2))
write("config", "auto_rank_null_tokens.json", json.dumps({
    "model_type": "mamba", "vocab_size": 256, "hidden_size": 32, "state_size": 4, "num_hidden_layers": 1,
    "expand": 2, "conv_kernel": 3, "time_step_rank": "auto", "bos_token_id": None, "eos_token_id": None,
    "pad_token_id": None, "use_bias": True, "hidden_act": "silu"}))

model, data = "tests/fixtures/hf_tiny", "README.md"
ids_path = "tests/fixtures/hf_tiny/reference.safetensors"
for name, line in {
    "train_tiny": f"train --data {data} --out runs/fuzz --steps 10 --hidden-size 16 --layers 2 --state-size 4 "
                  "--batch-size 2 --seq-len 16 --grad-accum 2 --lr 0.01 --grad-clip 0.5 --eval-batches 1 "
                  "--log-every 2 --seed 7 --warmup 0 --weight-decay 0.1 --beta1 0.9 --beta2 0.95",
    "train_resume": f"train --data {data} --out runs/fuzz --resume --steps 20",
    "train_simba": f"train --data {data} --out runs/fuzz --init {model} --simba keep=0.1 --simba-min-context 8",
    "train_config": f"train --data {data} --out runs/fuzz --config {model}/config.json --val-fraction 0.2",
    "eval": f"eval --model {model} --data {data} --max-batches 1 --len 16 --batch 2 --json out.json",
    "eval_simba": f"eval --model {model} --data {data} --context 8,16 --continuation 4 --max-windows 2 "
                  "--simba keep=0.5 --criteria simba,random --csv out.csv",
    "train_bpe": f"train --data {data} --out runs/fuzz --tokenizer tests/fixtures/gpt-neox-tokenizer/tokenizer.json "
                 "--steps 2 --hidden-size 16 --layers 1 --batch-size 2 --seq-len 16",
    "init": f"init --config {model}/config.json --out runs/fuzz_init --seed 3 --dtype bfloat16 --shard-size 16MiB",
    "generate": f"generate --model {model} --prompt ab --tokens 5 --temperature 0 --top-k 3 --seed 1",
    "info": f"info --model {model}",
    "forward": f"forward --model {model} --ids {ids_path} --out out.safetensors --dtype float64",
    "inspect": f"inspect --model {model} --ids {ids_path} --context 8 --out out.safetensors --simba keep=0.5",
    "highway": f"highway --model {model} --data {data} --windows 2 --batch 1",
    "recall": f"recall --model {model} --data {data} --context 32 --distances 8,32 --continuation 4 "
              "--max-windows 2 --criteria random --out out_recall",
    "curves": "curves --metrics tests/fixtures/hf_tiny/config.json --labels a --out out_curves --title t",
    "score": f"score --model {model} --tasks docs/score_example.jsonl --simba keep=0.5 --output out.jsonl --json s.json",
    "tokenize": "tokenize --tokenizer tests/fixtures/gpt-neox-tokenizer/tokenizer.json --input in.jsonl --output out.jsonl",
    "help": "--help",
    "train_help": "train --help",
    "unknown_command": "frobnicate --steps 1",
}.items():
    write("cli", name, line + "\n")

# tokenizer/: every 14th reference text (24 texts over all kinds), and bytes that are not UTF-8.
cases = [json.loads(line) for line in open("tests/fixtures/gpt-neox-tokenizer/cases.jsonl", encoding="utf-8")]
for i, case in enumerate(cases[::14][:24]):
    write("tokenizer", f"case_{i:02d}.txt", case["text"])
write("tokenizer", "invalid_utf8.bin", b"ab\xc3(\xff\xfe")

# tokenizer_json/: the GPT-2 byte alphabet (printable bytes map to themselves, the others to
# U+0100 onwards, in byte order), a few merges, the NeoX special token and a space-run token.
printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
extra = iter(range(0x100, 0x200))
alphabet = [chr(b) if b in printable else chr(next(extra)) for b in range(256)]
vocab = {ch: i for i, ch in enumerate(alphabet)}
merges = ["\u0120 t", "h e", "\u0120t he", "e r", "\u0120 w"]
for m in merges:
    vocab[m.replace(" ", "")] = len(vocab)
byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
added = [{"id": len(vocab), "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True},
         {"id": len(vocab) + 1, "content": "  ", "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": True, "special": False}]
model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "vocab": vocab, "merges": merges}
tokenizer = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
             "normalizer": {"type": "NFC"}, "pre_tokenizer": byte_level, "post_processor": byte_level,
             "decoder": byte_level, "model": model}
write("tokenizer_json", "neox_shape.json", json.dumps(tokenizer, ensure_ascii=False))
write("tokenizer_json", "pairs_no_normalizer.json", json.dumps(
    {**tokenizer, "normalizer": None, "model": {**model, "merges": [m.split(" ") for m in merges]}}, ensure_ascii=False))
write("tokenizer_json", "wordpiece.json", json.dumps({**tokenizer, "model": {**model, "type": "WordPiece"}}))

# eval_json/: rows as train/simba_eval.cpp writes them (window losses in nats).
def eval_rows(context, flops, shifts):
    return [{"context": context, "method": method, "options": "keep=0.1,schedule=linear,criterion=simba,start=0,seed=0",
             "counts": [context, context // 2], "windows": 3, "tokens": 48, "loss": 1.0 + shift,
             "bits_per_token": (1.0 + shift) / 0.6931471805599453, "flops_per_window": flops * ratio,
             "flops_ratio": ratio, "vs_dense_bits": {"mean": 0.0, "ci95_low": 0.0, "ci95_high": 0.0},
             "window_loss": [0.9 + shift, 1.0 + shift, 1.1 + shift]}
            for method, ratio, shift in shifts]
evaluation = {"model": "runs/family/s/checkpoint", "data": "data/linux-corpus/bin/test.bin", "split": "validation",
              "val_fraction": 1, "continuation": 16, "max_windows": 3,
              "simba": "keep=0.1,schedule=linear,criterion=simba,start=0,seed=0", "flops_ratio_target": 0,
              "split_tokens": 100000, "window_placement": "spread",
              "bootstrap": {"method": "paired percentile bootstrap over windows", "resamples": 10000, "level": 0.95,
                            "seed": 0},
              "rows": eval_rows(1024, 2.0e9, [("dense", 1.0, 0.0), ("simba", 0.6, 0.01), ("random", 0.58, 0.2)])
              + eval_rows(2048, 4.0e9, [("dense", 1.0, -0.05), ("simba", 0.58, -0.04)])}
write("eval_json", "two_contexts.json", json.dumps(evaluation, indent=2))
old = {k: v for k, v in evaluation.items() if k not in ("split_tokens", "window_placement", "flops_ratio_target")}
write("eval_json", "first_windows.json", json.dumps(old))
