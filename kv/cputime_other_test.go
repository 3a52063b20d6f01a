//go:build !unix

package kv_test

import "time"

// cpuTime is unknown here; BenchmarkStore then reports 0.
func cpuTime() time.Duration { return 0 }
