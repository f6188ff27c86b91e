#!/usr/bin/env python3
"""PyTorch peers for bench/bench_mamba.cpp: the same configurations in
transformers' MambaForCausalLM (eager, pure PyTorch path) and in mamba.py's
parallel-scan model, on the CPU with a fixed thread count.

  taskset -c 0,1 python3 bench/pytorch_peers.py --threads 2 --mambapy DIR

DIR is a checkout of github.com/alxndrTL/mamba.py (the folder that holds the
`mambapy` package); it is used from there and is not part of simba. Prints one
line per (peer, config, mode) with tokens/s, and the same as JSON at the end.
"""
import argparse
import json
import sys
import time

import torch

CONFIGS = {"demo": dict(d_model=128, layers=4, batch=16, length=256),
           "A": dict(d_model=256, layers=4, batch=32, length=256)}
VOCAB = 256


def hf_model(c):
    from transformers import MambaConfig, MambaForCausalLM
    cfg = MambaConfig(vocab_size=VOCAB, hidden_size=c["d_model"], num_hidden_layers=c["layers"], state_size=16,
                      expand=2, conv_kernel=4, time_step_rank="auto", use_mambapy=False)
    model = MambaForCausalLM(cfg)

    def loss(ids):
        return model(input_ids=ids, labels=ids, use_cache=False).loss

    def infer(ids):
        return model(input_ids=ids, use_cache=False).logits
    return model, loss, infer


def mambapy_model(c):
    from mambapy.lm import LM
    from mambapy.mamba import MambaConfig
    model = LM(MambaConfig(d_model=c["d_model"], n_layers=c["layers"], d_state=16, expand_factor=2, d_conv=4,
                           pscan=True), vocab_size=VOCAB)
    ce = torch.nn.CrossEntropyLoss()

    def loss(ids):
        logits = model(ids[:, :-1])
        return ce(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))

    def infer(ids):
        return model(ids)
    return model, loss, infer


def timed(fn, seconds):
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mambapy", default=None, help="folder containing the mambapy package")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", default="transformers:train,transformers:infer,mamba.py:train,mamba.py:infer",
                    help="comma-separated peer:mode pairs to measure (transformers' eager training takes "
                         "tens of seconds per step: leave it out for a short run)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peers = {"transformers": hf_model}
    if args.mambapy:
        sys.path.insert(0, args.mambapy)
        peers["mamba.py"] = mambapy_model
    wanted = {tuple(r.split(":")) for r in args.runs.split(",")}
    results = []
    for peer, build in peers.items():
        modes = [m for m in ("train", "infer") if (peer, m) in wanted]
        if not modes:
            continue
        for name, c in CONFIGS.items():
            model, loss_fn, infer_fn = build(c)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            tokens = c["batch"] * c["length"]
            ids_train = torch.randint(0, VOCAB, (c["batch"], c["length"] + 1))
            ids = ids_train[:, :-1].contiguous()

            def train_step():
                opt.zero_grad(set_to_none=True)
                loss_fn(ids_train).backward()
                opt.step()

            def infer_step():
                with torch.no_grad():
                    infer_fn(ids)
            for mode in modes:
                if mode == "train":
                    model.train()
                    t = timed(train_step, args.seconds)
                else:
                    model.eval()
                    t = timed(infer_step, args.seconds)
                r = dict(peer=peer, config=name, mode=mode, tokens_per_s=tokens / t, seconds_per_step=t)
                results.append(r)
                print(f"{peer:13s} {name:5s} {mode:6s} {tokens / t:10.0f} tok/s ({t * 1000:.0f} ms/step)", flush=True)
    print(json.dumps(dict(torch=torch.__version__, threads=args.threads, results=results)))


if __name__ == "__main__":
    main()
