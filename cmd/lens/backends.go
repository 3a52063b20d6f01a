package main

// The CUDA backend registers itself with engine/accel when the binary is
// built with -tags lenscuda; without the tag the package is empty.
import _ "lens/engine/cuda"
