// Package device decides where a run trains: "cpu", "cuda", or "auto"
// (CUDA when this build has a CUDA backend and a GPU is present, else the
// CPU). The CUDA backend (engine/cuda) is compiled in with -tags lenscuda and
// registers itself with engine/accel; without it, or without a usable GPU,
// "cuda" is a clear error and "auto" falls back to the CPU with a note.
package device

import (
	"fmt"

	"lens/engine/accel"
)

// Names accepted in scripts (device=) and on the CLI (--device).
const (
	Auto = "auto"
	CPU  = "cpu"
	CUDA = "cuda"
)

// cuda reports whether a CUDA backend can train here, and if not, why.
// Tests replace it.
var cuda = func() (bool, string) {
	b, ok := accel.Lookup(CUDA)
	if !ok {
		return false, "this lens was built without the CUDA backend (build it with -tags lenscuda)"
	}
	return b.Available()
}

// Resolve turns a requested device into the one to use. note is a line to
// show the user when "auto" fell back to the CPU; "" (unset) means the CPU
// without a note.
func Resolve(want string) (got, note string, err error) {
	switch want {
	case "", CPU:
		return CPU, "", nil
	case CUDA:
		if ok, why := cuda(); !ok {
			return "", "", fmt.Errorf(`device = "cuda": %s; use device = "cpu" or "auto"`, why)
		}
		return CUDA, "", nil
	case Auto:
		if ok, why := cuda(); !ok {
			return CPU, fmt.Sprintf("device auto: training on the CPU (%s)", why), nil
		}
		return CUDA, "", nil
	}
	return "", "", fmt.Errorf("device = %q: want \"auto\", \"cpu\" or \"cuda\"", want)
}
