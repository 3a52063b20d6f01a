// Package analyze holds pure numerical analyzers for LoRA fine-tuning: spectra
// and ranks of ΔW = s·B·A computed without forming ΔW, LoRA subspace
// similarity and amplification (Hu et al. 2021), intruder dimensions
// (Shuttleworth et al. 2024), heavy-tailed power-law exponents (Martin &
// Mahoney; Clauset, Shalizi & Newman 2009), linear CKA (Kornblith et al.
// 2019), gradient health (global norm, McCandlish et al. 2018 noise scale,
// robust spike detection), convergence diagnostics (Prechelt 1998 early
// stopping, power-law curve fits, plateau detection) and activation
// statistics.
//
// Matrices are row-major slices: a rows×cols matrix M has M[i][j] at
// Data[i*cols+j]. LoRA shapes follow PEFT: A is r×in, B is out×r,
// ΔW = s·B·A is out×in. Inputs are accepted as []float32 (the tensor type in
// lens) and all arithmetic is done in float64. Definitions follow
// docs/SCIENCE.md; each function names its source.
package analyze
