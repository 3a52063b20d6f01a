// Package torchref holds the PyTorch reference the tests check lens
// against. Its Go side only embeds the script the lens binary runs itself:
// bench.py, the PyTorch side of `lens bench` (self-contained), so `lens
// bench` works from any directory with one copy of it.
package torchref

import "embed"

// FS holds bench.py.
//
//go:embed bench.py
var FS embed.FS
