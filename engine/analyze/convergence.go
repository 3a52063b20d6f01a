package analyze

import (
	"fmt"
	"math"
)

// EMA smooths series with factor beta ∈ [0, 1) and start-bias correction
// ŝ_t = s_t/(1 − β^t), s_t = β·s_{t−1} + (1−β)·x_t, as TensorBoard's
// smoothing slider does. A constant series comes back unchanged.
func EMA(series []float64, beta float64) []float64 {
	out := make([]float64, len(series))
	var e ema
	for i, x := range series {
		e.add(beta, x)
		out[i] = e.value(beta)
	}
	return out
}

// GL is Prechelt's (1998) generalization loss GL(t) = 100·(E(t)/min_{t'≤t} E(t') − 1).
func GL(evalLosses []float64) []float64 {
	out := make([]float64, len(evalLosses))
	best := math.Inf(1)
	for i, e := range evalLosses {
		best = math.Min(best, e)
		out[i] = 100 * (e/best - 1)
	}
	return out
}

// TrainingProgress is Prechelt's (1998) P_k(t) = 1000·(Σ_strip E_tr/(k·min_strip E_tr) − 1)
// over the strip of the k losses ending at t; NaN for t < k−1.
func TrainingProgress(trainLosses []float64, k int) []float64 {
	out := make([]float64, len(trainLosses))
	for t := range out {
		if k < 1 || t < k-1 {
			out[t] = math.NaN()
			continue
		}
		var sum float64
		mn := math.Inf(1)
		for _, e := range trainLosses[t-k+1 : t+1] {
			sum += e
			mn = math.Min(mn, e)
		}
		out[t] = 1000 * (sum/(float64(k)*mn) - 1)
	}
	return out
}

// StopSignal says that an early-stopping criterion first fired at Index,
// where it had value Value (GL, GL/P_k, or the number of successive rises).
type StopSignal struct {
	Criterion string // "GL", "PQ" or "UP"
	Index     int
	Value     float64
}

// EarlyStop evaluates Prechelt's (1998) criteria on aligned train and eval
// losses (one entry per evaluation) with strips of k entries: GL_α (GL >
// alphaGL, checked at every entry), PQ_α (GL/P_k > alphaPQ) and UP_s (eval
// loss higher than a strip earlier at s successive strip ends), the last two
// at strip ends t with (t+1) % k == 0. It returns the first firing of each
// criterion, in the order GL, PQ, UP; a negative alpha or s < 1 disables one.
func EarlyStop(train, eval []float64, k int, alphaGL, alphaPQ float64, s int) ([]StopSignal, error) {
	if len(train) != len(eval) {
		return nil, fmt.Errorf("early stop: %d train and %d eval losses: %w", len(train), len(eval), errShape)
	}
	if k < 1 {
		return nil, fmt.Errorf("early stop: strip length %d < 1", k)
	}
	gl, pk := GL(eval), TrainingProgress(train, k)
	var out []StopSignal
	if alphaGL >= 0 {
		for t, g := range gl {
			if g > alphaGL {
				out = append(out, StopSignal{"GL", t, g})
				break
			}
		}
	}
	if alphaPQ >= 0 {
		for t := k - 1; t < len(eval); t += k {
			pq := gl[t] / pk[t]
			if gl[t] > 0 && pk[t] == 0 {
				pq = math.Inf(1)
			}
			if pq > alphaPQ {
				out = append(out, StopSignal{"PQ", t, pq})
				break
			}
		}
	}
	if s >= 1 {
		rises := 0
		for t := 2*k - 1; t < len(eval); t += k {
			if eval[t] > eval[t-k] {
				rises++
			} else {
				rises = 0
			}
			if rises >= s {
				out = append(out, StopSignal{"UP", t, float64(rises)})
				break
			}
		}
	}
	return out, nil
}
