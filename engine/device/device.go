// Package device decides where a run trains: "cpu", "cuda", or "auto"
// (CUDA when this build has a CUDA backend and a GPU is present, else the
// CPU). The CUDA trainer is not written yet, so every build today trains on
// the CPU: "cuda" is a clear error and "auto" falls back with a note.
package device

import "fmt"

// Names accepted in scripts (device=) and on the CLI (--device).
const (
	Auto = "auto"
	CPU  = "cpu"
	CUDA = "cuda"
)

// cuda reports whether a CUDA backend can train here, and if not, why.
// A build with a CUDA backend replaces it.
var cuda = func() (bool, string) {
	return false, "this lens has no CUDA backend (the CUDA trainer is not written yet)"
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
