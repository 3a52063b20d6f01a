#!/usr/bin/env python3
"""NF4 quantization as bitsandbytes defines it, in plain PyTorch (no
bitsandbytes package), for lens's engine/quant tests.

    python3 nf4_ref.py --in x.safetensors --out ref.safetensors [--double]

For every float32 tensor NAME of the input it writes NAME.codes (the packed
bytes as I32, high nibble first), NAME.absmax, NAME.dequant and, with
--double, NAME.qabsmax (I32), NAME.absmax2, NAME.offset, NAME.dequant_dq;
plus nf4 (the code book) and dynamic (the 8-bit dynamic map).

Semantics (bitsandbytes csrc kQuantizeBlockwise / dQuantizeNF4 and
functional.quantize_4bit): blocks of 64 over the flat tensor, absmax per
block, x * (1/absmax) in float32, code = the number of the kernel's
thresholds below the value (its decision tree), checked here against the
nearest code-book entry (argmin), which must agree except on exact ties.
"""
import argparse
import sys

import torch

sys.path.insert(0, __import__("os").path.dirname(__file__))
from llama_ref import load_safetensors, save_safetensors  # noqa: E402

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=torch.float32)

# dQuantizeNF4's thresholds, ascending.
MIDS = torch.tensor([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=torch.float32)


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    # bitsandbytes.functional.create_dynamic_map
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += (10 ** (-(max_exponent_bits - 1) + i) * means).tolist()
        if signed:
            data += (-10 ** (-(max_exponent_bits - 1) + i) * means).tolist()
    assert additional_items == 0
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def blocks_of(flat, bs):
    n = flat.numel()
    nb = (n + bs - 1) // bs
    pad = torch.zeros(nb * bs, dtype=torch.float32)
    pad[:n] = flat
    valid = torch.zeros(nb * bs, dtype=torch.bool)
    valid[:n] = True
    return pad.view(nb, bs), valid.view(nb, bs)


def quantize_nf4(x):
    flat = x.reshape(-1).float()
    n = flat.numel()
    b, _ = blocks_of(flat, 64)
    absmax = b.abs().max(dim=1).values
    scaled = b * (1.0 / absmax).unsqueeze(1)  # padding zeros: 0 * (1/absmax)
    # torch.bucketize(right=False) counts thresholds strictly below x: the tree.
    codes = torch.bucketize(scaled, MIDS, right=False)
    codes = torch.where(torch.isnan(scaled), torch.zeros_like(codes), codes)
    near = torch.argmin((scaled.unsqueeze(-1) - NF4).abs(), dim=-1)
    tie = ((scaled.unsqueeze(-1) - NF4).abs().sort(dim=-1).values[..., :2].diff(dim=-1) == 0).squeeze(-1)
    bad = ((near != codes) & ~tie & ~torch.isnan(scaled)).sum().item()
    if bad:
        raise SystemExit("tree and nearest-entry quantization disagree on %d values" % bad)
    codes = codes.reshape(-1)[: n + (n % 2)]
    if n % 2:
        codes[-1] = torch.bucketize(torch.tensor([0.0]), MIDS)[0]
    packed = (codes[0::2] << 4) | codes[1::2]
    dq = (NF4[codes[:n]].view(-1) * absmax.repeat_interleave(64)[:n])
    return packed, absmax, dq.reshape(x.shape)


def quantize_blockwise8(v, code, bs=256):
    b, valid = blocks_of(v, bs)
    absmax = b.abs().max(dim=1).values
    scaled = b * (1.0 / absmax).unsqueeze(1)
    q = torch.argmin((scaled.unsqueeze(-1) - code).abs(), dim=-1)
    return q.reshape(-1)[: v.numel()], absmax


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="inp", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--double", action="store_true")
    a = ap.parse_args()
    dyn = create_dynamic_map()
    out = {"nf4": NF4, "dynamic": dyn}
    for name, x in load_safetensors(a.inp).items():
        packed, absmax, dq = quantize_nf4(x)
        out[name + ".codes"] = packed.to(torch.int32)
        out[name + ".absmax"] = absmax
        out[name + ".dequant"] = dq
        if a.double:
            # The mean in float64, rounded once (lens does the same; torch's
            # float32 mean may differ from it by an ulp).
            offset = absmax.double().mean().float()
            q, absmax2 = quantize_blockwise8(absmax - offset, dyn)
            scales = dyn[q] * absmax2.repeat_interleave(256)[: q.numel()] + offset
            n = x.numel()
            codes = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)[:n]
            dq2 = NF4[codes] * scales.repeat_interleave(64)[:n]
            out[name + ".qabsmax"] = q.to(torch.int32)
            out[name + ".absmax2"] = absmax2
            out[name + ".offset"] = offset.reshape(1)
            out[name + ".dequant_dq"] = dq2.reshape(x.shape)
    save_safetensors(a.out, out)


if __name__ == "__main__":
    main()
