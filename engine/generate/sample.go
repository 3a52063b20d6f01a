package generate

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// sample draws a token from what filter keeps.
func sample(logits []float32, temperature float64, topK int, topP float64, rng *rand.Rand, buf *[]cand) int32 {
	c, p, sum := filter(logits, temperature, topK, topP, buf)
	u := rng.Float64() * sum
	for i := range c {
		u -= p[i]
		if u < 0 {
			return c[i].id
		}
	}
	return c[len(c)-1].id // u within rounding of sum
}

// filter applies transformers' logits warpers as generate does with
// do_sample: scores = logits/temperature; top-k keeps the scores at least
// the k-th largest (ties at the edge stay, as TopKLogitsWarper); top-p
// keeps, from the most likely down, every token whose own probability plus
// that of all less likely ones exceeds 1−top_p (at least one token, as
// TopPLogitsWarper). It returns the candidates left, most likely first, with
// unnormalised probabilities p (summing to sum). buf is reused between
// calls. topK ≤ 0 and topP ≤ 0 or ≥ 1 turn a filter off.
func filter(logits []float32, temperature float64, topK int, topP float64, buf *[]cand) (c []cand, p []float64, sum float64) {
	c = (*buf)[:0]
	t := float32(temperature)
	for i, v := range logits {
		c = append(c, cand{int32(i), v / t})
	}
	// Most likely first; equal scores by id so the order is deterministic.
	slices.SortFunc(c, func(a, b cand) int {
		if a.v != b.v {
			return cmp.Compare(b.v, a.v)
		}
		return cmp.Compare(a.id, b.id)
	})
	*buf = c
	n := len(c)
	if topK > 0 && topK < n {
		edge := c[topK-1].v
		n = topK
		for n < len(c) && c[n].v >= edge {
			n++
		}
	}
	// Probabilities of the candidates still in, in float64.
	p = make([]float64, n)
	for i := range n {
		p[i] = math.Exp(float64(c[i].v - c[0].v))
		sum += p[i]
	}
	if topP > 0 && topP < 1 {
		// tail is the probability of candidate i and all after it: its
		// cumulative probability in the ascending order HF sorts by.
		tail := 0.0
		keep := n
		for i := n - 1; i > 0; i-- {
			tail += p[i] / sum
			if tail > 1-topP {
				break
			}
			keep = i
		}
		n = keep
		sum = 0
		for i := range n {
			sum += p[i]
		}
	}
	return c[:n], p[:n], sum
}
