package gemm

import (
	"sync"
	"sync/atomic"
	"time"
)

// The meter measures how fast the products inside a larger computation
// run: the wall time during which at least one Sgemm call is in progress
// (concurrent calls count once) and the flops those calls do. lens bench
// uses it to compare the step's products with the sgemm ceiling apart
// from the step's other work. Off, it costs one atomic load per call.
var (
	metering atomic.Bool
	meter    struct {
		mu     sync.Mutex
		active int
		since  time.Time
		busy   time.Duration
		flops  float64
	}
)

// StartMeter zeroes the meter and starts it.
func StartMeter() {
	meter.mu.Lock()
	meter.active, meter.busy, meter.flops = 0, 0, 0
	meter.mu.Unlock()
	metering.Store(true)
}

// StopMeter stops the meter and returns the time spent in Sgemm and the
// flops (2·m·n·k per call) done there since StartMeter.
func StopMeter() (time.Duration, float64) {
	metering.Store(false)
	meter.mu.Lock()
	defer meter.mu.Unlock()
	return meter.busy, meter.flops
}

func meterEnter(m, n, k int) {
	meter.mu.Lock()
	if meter.active == 0 {
		meter.since = time.Now()
	}
	meter.active++
	meter.flops += 2 * float64(m) * float64(n) * float64(k)
	meter.mu.Unlock()
}

func meterLeave() {
	meter.mu.Lock()
	meter.active--
	if meter.active == 0 {
		meter.busy += time.Since(meter.since)
	}
	meter.mu.Unlock()
}
