//go:build lenscuda

package cuda

import "lens/engine/accel"

func init() { accel.Register("cuda", backend{}) }

// backend is accel backend "cuda": device 0 of the CUDA driver.
type backend struct{}

// Available loads and initializes the driver on its first call and
// remembers the outcome, so it is cheap to ask again. It is false, with the
// reason, when libcuda.so.1 cannot be loaded, cuInit fails or there is no
// device.
func (backend) Available() (bool, string) {
	if err := driverInit(); err != nil {
		return false, err.Error()
	}
	return true, ""
}

func (backend) Open() (accel.Device, error) {
	d, err := Open()
	if err != nil {
		return nil, err
	}
	return d, nil
}
