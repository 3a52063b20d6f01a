//go:build lenscuda

package cuda

import (
	"sync"

	"lens/engine/accel"
)

func init() { accel.Register("cuda", backend{}) }

// backend is accel backend "cuda": device 0 of the CUDA driver.
type backend struct{}

// Available loads and initializes the driver and opens device 0 once (the
// kernels JIT-compiled, the context made), remembering the outcome, so it
// is cheap to ask again. It is false, with the reason, when libcuda.so.1
// cannot be loaded, cuInit fails, there is no device, or the device cannot
// be opened (busy, prohibited, kernels rejected): device=auto then falls
// back to the CPU instead of failing at the first step.
func (backend) Available() (bool, string) {
	probeOnce.Do(func() {
		d, err := Open()
		if err == nil {
			err = d.Close()
		}
		probeErr = err
	})
	if probeErr != nil {
		return false, probeErr.Error()
	}
	return true, ""
}

var (
	probeOnce sync.Once
	probeErr  error
)

func (backend) Open() (accel.Device, error) {
	d, err := Open()
	if err != nil {
		return nil, err
	}
	return d, nil
}
