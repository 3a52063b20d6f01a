package cuda

import "sync/atomic"

// Profile, when set, makes devices opened afterwards time every kernel
// (each launch followed by a synchronize) and print the table to stderr on
// Close. cmd/lens sets it from LENS_CUDA_PROFILE; the engine reads no
// environment. Without the lenscuda build tag nothing reads it.
var Profile atomic.Bool
