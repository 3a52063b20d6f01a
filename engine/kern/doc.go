// Package kern is lens's one set of numerical kernels for the transformer
// step: embedding, RMSNorm, rotary embeddings (HF rotate-half), causal
// grouped-query attention, SwiGLU, residual add, dropout multiply,
// softmax cross-entropy and the AdamW update, each forward and backward,
// over plain slices.
//
// Both CPU executors call these functions: engine/nn wraps them as
// gorgonia ops (the graph the trainer runs on the CPU and the numerical
// reference of the tests), and engine/accel's Host device runs
// accel.Step's layout with them, so the device step and the graph compute
// the same math with the same code. A GPU backend (engine/cuda) mirrors
// each kernel and is checked against these, kernel by kernel.
//
// Kernels are generic over float32 and float64; the float64 instantiation
// exists for finite-difference gradient checks. Work is split over Cores
// goroutines in a way that never changes a result: outputs are written by
// disjoint chunks, and sums over rows are taken in fixed chunks of RowChunk
// rows and then over the chunks in order. A new model family's pieces
// (another norm, another gated MLP) belong here, with their backward pass,
// so that every executor gets them at once.
package kern
