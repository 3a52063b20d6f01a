// Package nn holds the differentiable pieces of the transformer as gorgonia
// operations: embedding, RMSNorm, linear and LoRA-linear, rotary embeddings,
// causal grouped-query attention, SwiGLU, residual add and cross-entropy.
//
// The math of each piece, forward and backward, is a kernel of engine/kern
// (shared with engine/accel's Host device, so the CPU graph and the device
// step run the same code); this package wraps each as a gorgonia Op
// (SDOp), so a model is an ordinary gorgonia expression graph:
// gorgonia.Grad builds the backward graph, and a small executor (exec.go)
// runs both in topological order. Ops own their output and gradient buffers
// and reuse them on every run, so a training step allocates (almost)
// nothing; a value read from a node is valid until the next run of its
// machine. Graphs are generic over float32 and float64; the float64
// instantiation exists for finite-difference gradient checks.
//
// Token ids and dropout masks are not graph values: they live in a Feed that
// the caller fills before each run, which keeps the graph purely numeric.
package nn
