#!/usr/bin/python3
"""PyTorch reference for one optimizer step: clip_grad_norm_ over every
parameter together (the global L2 norm), then torch.optim.AdamW with two
parameter groups, weight decay on the tensors marked "decay" and none on
the others (as HF's Trainer leaves norm weights and biases undecayed).

  adamw_ref.py --in step.json --out result.json

step.json:   {"lr", "beta1", "beta2", "eps", "weight_decay", "max_norm" (0: no clipping),
              "params": [{"name", "shape", "data", "grad", "decay"}, ...]}
result.json: {"total_norm", "clipped", "params": {name: data after the step}}
"""
import argparse
import json

import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.inp) as f:
        s = json.load(f)
    params, decay, no_decay = [], [], []
    for p in s["params"]:
        t = torch.tensor(p["data"], dtype=torch.float32).reshape(p["shape"]).requires_grad_()
        t.grad = torch.tensor(p["grad"], dtype=torch.float32).reshape(p["shape"])
        params.append((p["name"], t))
        (decay if p["decay"] else no_decay).append(t)
    tensors = [t for _, t in params]
    total = torch.sqrt(sum((t.grad.double() ** 2).sum() for t in tensors)).item()
    clipped = False
    if s["max_norm"] > 0:
        norm = torch.nn.utils.clip_grad_norm_(tensors, s["max_norm"]).item()
        clipped = norm > s["max_norm"]
    groups = [g for g in ({"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=s["lr"], betas=(s["beta1"], s["beta2"]), eps=s["eps"])
    opt.step()
    out = {"total_norm": total, "clipped": clipped,
           "params": {n: t.detach().reshape(-1).tolist() for n, t in params}}
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
