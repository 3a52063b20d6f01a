#!/usr/bin/env python3
"""QLoRA reference: llama_ref.py's forward/backward with the linear-module
weights (q/k/v/o, gate/up/down) quantized to NF4 by nf4_ref.py and
dequantized before use, as bitsandbytes' Linear4bit does (the product runs
on NF4[code]*absmax in float32). The token embedding and an untied lm_head
are rounded to bfloat16 (to nearest even, torch's .to(torch.bfloat16)), as
QLoRA keeps them in 16 bits.

    python3 qlora_ref.py --model DIR --batch B.json --adapter DIR --out ref.safetensors \
        [--double] [--codes-out codes.safetensors]

--codes-out writes each quantized weight's packed codes (NAME.codes, I32)
so the caller can check it quantized to the same codes.
"""
import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import llama_ref  # noqa: E402
import nf4_ref  # noqa: E402

LINEAR = re.compile(r"\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")
TABLES = ("model.embed_tokens.weight", "lm_head.weight")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--double", action="store_true")
    ap.add_argument("--codes-out")
    args = ap.parse_args()
    load = llama_ref.load_safetensors
    codes = {}

    def load_quantized(path):
        t = load(path)
        if os.path.basename(path) != "model.safetensors":
            return t
        for name in list(t):
            if name in TABLES:
                t[name] = t[name].to(torch.bfloat16).float()
                continue
            if not LINEAR.search(name):
                continue
            packed, absmax, dq = nf4_ref.quantize_nf4(t[name])
            codes[name + ".codes"] = packed.to(torch.int32)
            if args.double:
                dyn = nf4_ref.create_dynamic_map()
                offset = absmax.double().mean().float()
                q, absmax2 = nf4_ref.quantize_blockwise8(absmax - offset, dyn)
                scales = dyn[q] * absmax2.repeat_interleave(256)[: q.numel()] + offset
                n = t[name].numel()
                c = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n]
                dq = (nf4_ref.NF4[c] * scales.repeat_interleave(64)[:n]).reshape(t[name].shape)
            t[name] = dq
        if not codes:
            raise SystemExit("no linear-module weights in %s" % path)
        return t

    llama_ref.load_safetensors = load_quantized
    args.full, args.verbose = False, False
    llama_ref.run(args)
    if args.codes_out:
        llama_ref.save_safetensors(args.codes_out, codes)


if __name__ == "__main__":
    main()
