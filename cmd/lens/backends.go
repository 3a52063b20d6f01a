package main

// The CUDA backend registers itself with engine/accel when the binary is
// built with -tags lenscuda; without the tag the package only holds the
// Profile switch (settings.go sets it).
import _ "lens/engine/cuda"
