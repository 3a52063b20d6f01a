package kern

import "math"

// SoftmaxPrefix normalises the first n entries of row in float64 and
// zeroes the rest: one row of attention scores whose keys after the query
// (or outside the cache) do not count. The decoders on the CPU and on
// accel.Host share it.
func SoftmaxPrefix(row []float32, n int) {
	mx := row[0]
	for _, v := range row[1:n] {
		mx = max(mx, v)
	}
	var sum float64
	for j := range n {
		e := math.Exp(float64(row[j] - mx))
		row[j] = float32(e)
		sum += e
	}
	inv := 1 / sum
	for j := range n {
		row[j] = float32(float64(row[j]) * inv)
	}
	clear(row[n:])
}
