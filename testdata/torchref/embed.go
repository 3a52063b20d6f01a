// Package torchref holds the PyTorch reference the tests check lens
// against. Its Go side only embeds the scripts the lens binary runs itself:
// bench.py, the PyTorch side of `lens bench`, and llama_ref.py, which it
// imports; so `lens bench` works from any directory, with one copy of each.
package torchref

import "embed"

// FS holds bench.py and llama_ref.py.
//
//go:embed bench.py llama_ref.py
var FS embed.FS
