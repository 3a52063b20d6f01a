package nn

// Feed carries the non-differentiable inputs of one graph run: token ids,
// targets and dropout masks. The caller fills it before each run.
type Feed struct {
	B, T    int
	Inputs  []int32 // B×T token ids
	Targets []int32 // B×T next-token ids; negative means ignored
	// Masks holds one dropout mask per LoRA module name, N×in, entries
	// 0 or 1/(1-p). A nil entry means no dropout.
	Masks map[string][]float32
	// Positions and Segments (B×T each) describe packed rows: the RoPE
	// position of each token and the example it belongs to; attention
	// stays within a segment. nil means one sequence per row at positions
	// 0..T-1.
	Positions, Segments []int32
}

// N is the number of token positions in a run.
func (f *Feed) N() int { return f.B * f.T }
