#!/usr/bin/python3
"""PyTorch reference for supervised fine-tuning on examples (HF's meaning).

Reads examples as Hugging Face's collators hand them to LlamaForCausalLM:
input_ids and labels per example, labels -100 where the loss ignores a
token (prompt / non-assistant tokens). Each example runs alone, unpadded,
and the loss is HF's: logits[t] against labels[t+1], mean over every
non-ignored label of every example. The Go trainer pads the same examples
into one batch, so equal losses and gradients show that padding is never
attended to nor scored. Writes `loss` [1] and d loss / d every adapter
tensor (PEFT key names) as F32 safetensors.

  sft_ref.py --model DIR --adapter DIR --examples examples.json --out ref.safetensors

examples.json: {"input_ids": [[...], ...], "labels": [[...], ...]} (ragged).
Model code is llama_ref.py's.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import Cfg, Model, load_safetensors, param_names, parse_adapter, save_safetensors  # noqa: E402

IGNORE = -100


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = Cfg(json.load(f))
    raw = load_safetensors(os.path.join(args.model, "model.safetensors"))
    params = {n: raw[n].float().clone() for n in param_names(cfg)}
    with open(os.path.join(args.adapter, "adapter_config.json")) as f:
        acfg = json.load(f)
    at = load_safetensors(os.path.join(args.adapter, "adapter_model.safetensors"))
    at = {k: v.float().clone().requires_grad_(True) for k, v in at.items()}
    scale, lora = parse_adapter(acfg, at)
    model = Model(cfg, params, lora, scale)
    with open(args.examples) as f:
        ex = json.load(f)
    total = torch.zeros((), dtype=torch.float32)
    count = 0
    for ids, labels in zip(ex["input_ids"], ex["labels"]):
        assert len(ids) == len(labels) and len(ids) >= 2
        logits = model.logits(torch.tensor([ids], dtype=torch.int64))[0]
        shift_logits, shift_labels = logits[:-1], torch.tensor(labels[1:], dtype=torch.int64)
        total = total + torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE, reduction="sum")
        count += int((shift_labels != IGNORE).sum())
    loss = total / count
    keys = sorted(at)
    grads = torch.autograd.grad(loss, [at[k] for k in keys])
    out = {"loss": loss.detach().reshape(1)}
    out.update({k: g for k, g in zip(keys, grads)})
    save_safetensors(args.out, out, "F32", {"format": "pt"})


if __name__ == "__main__":
    main()
