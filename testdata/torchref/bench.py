#!/usr/bin/env python3
"""Times a LoRA training step in PyTorch (eager, float32) for `lens bench`.

Same model layout and math as llama_ref.py (HF Llama + PEFT LoRA), random
weights, LoRA on q,k,v,o, AdamW on the adapter only. Prints one JSON line:
{"tokens_per_s": ..., "step_s": ..., "peak_rss_bytes": ..., "threads": ...,
"blas": the BLAS library loaded}. With --device cuda the model, adapter
and batch live on the GPU, the clock stops after torch.cuda.synchronize(),
and "device" and "peak_device_bytes" (max_memory_allocated) are added.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import Cfg, Model, ce_loss, param_names  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--inter", type=int, required=True)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = Cfg({"vocab_size": a.vocab, "hidden_size": a.hidden, "intermediate_size": a.inter,
               "num_hidden_layers": a.layers, "num_attention_heads": a.heads, "num_key_value_heads": a.heads,
               "max_position_embeddings": a.seq, "rms_norm_eps": 1e-5, "tie_word_embeddings": True})
    params = {}
    for n in param_names(cfg):
        if n.endswith("norm.weight"):
            params[n] = torch.ones(a.hidden)
    H, I, V = a.hidden, a.inter, a.vocab
    params["model.embed_tokens.weight"] = torch.randn(V, H) * 0.02
    lora = {}
    trainable = []
    for i in range(a.layers):
        pre = "model.layers.%d." % i
        for m in "qkvo":
            params[pre + "self_attn.%s_proj.weight" % m] = torch.randn(H, H) * 0.02
            name = pre + "self_attn.%s_proj" % m
            A = ((torch.rand(a.rank, H) * 2 - 1) / H ** 0.5).to(dev).requires_grad_()
            B = torch.zeros(H, a.rank, device=dev).requires_grad_()
            lora[name] = {"A": (name + ".A", A), "B": (name + ".B", B)}
            trainable += [A, B]
        params[pre + "mlp.gate_proj.weight"] = torch.randn(I, H) * 0.02
        params[pre + "mlp.up_proj.weight"] = torch.randn(I, H) * 0.02
        params[pre + "mlp.down_proj.weight"] = torch.randn(H, I) * 0.02
    params = {k: v.to(dev) for k, v in params.items()}
    model = Model(cfg, params, lora, scale=2.0)
    opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.0)
    inputs = torch.randint(0, V, (a.batch, a.seq)).to(dev)
    targets = torch.randint(0, V, (a.batch, a.seq)).to(dev)
    cuda = dev.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = ce_loss(model.logits(inputs), targets)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    dt = (time.perf_counter() - t0) / a.steps
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"tokens_per_s": a.batch * a.seq / dt, "step_s": dt, "peak_rss_bytes": rss,
           "threads": torch.get_num_threads(), "torch": torch.__version__, "blas": blas_library()}
    if cuda:
        out["device"] = torch.cuda.get_device_name(dev)
        out["peak_device_bytes"] = torch.cuda.max_memory_allocated(dev)
    print(json.dumps(out))


def blas_library():
    """The BLAS shared library this process loaded (Debian's PyTorch calls
    whatever libblas.so.3 points to: the reference BLAS or OpenBLAS)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:
        return ""
    for p in sorted(paths):
        real = os.path.realpath(p)
        if "blas" in os.path.basename(real).lower():
            return real
    return ""


if __name__ == "__main__":
    main()
