package kern

import "math"

// The pieces model families add to the Llama block: linear biases (Qwen2,
// attention_bias), a scaled embedding and the GeGLU MLP (Gemma), and RoPE
// tables from given inverse frequencies (rope_scaling, Gemma's local base).

// ---- rotary tables from inverse frequencies ----

// RopeInvFreq returns HF's default inverse frequencies 1/θ^(2i/d), i < d/2,
// rounded to float32 as RopeTable does.
func RopeInvFreq(headDim int, theta float64) []float32 {
	inv := make([]float32, headDim/2)
	for i := range inv {
		inv[i] = float32(1 / math.Pow(theta, float64(2*i)/float64(headDim)))
	}
	return inv
}

// RopeTableFreq is RopeTable over the given inverse frequencies (len
// headDim/2): angle = float32(pos)·inv in float32, emb = cat(a, a). With
// RopeInvFreq's frequencies it equals RopeTable.
func RopeTableFreq(seqLen, headDim int, inv []float32) (cos, sin []float32) {
	half := headDim / 2
	cos = make([]float32, seqLen*headDim)
	sin = make([]float32, seqLen*headDim)
	for i := range half {
		for p := range seqLen {
			a := float64(float32(p) * inv[i])
			c, s := float32(math.Cos(a)), float32(math.Sin(a))
			cos[p*headDim+i], cos[p*headDim+i+half] = c, c
			sin[p*headDim+i], sin[p*headDim+i+half] = s, s
		}
	}
	return cos, sin
}

// ---- bias: y = x + b on every row ----

// Bias sets y = x + b for each row of x (·×len(b)). y may be x.
func Bias[T Float](c Cores, x, b, y []T) {
	w := len(b)
	c.ParallelFor(len(x)/w, RowChunk, func(_, lo, hi int) {
		for n := lo; n < hi; n++ {
			xs, ys := x[n*w:(n+1)*w], y[n*w:(n+1)*w]
			for j, v := range b {
				ys[j] = xs[j] + v
			}
		}
	})
}

// BiasBack sets db = Σ_n dy[n], summed per chunk of RowChunk rows into part
// (RMSNormPartLen(rows, len(db))) and then over the chunks in order, so the
// sum does not depend on the number of cores.
func BiasBack[T Float](c Cores, dy, db, part []T) {
	w := len(db)
	rows := len(dy) / w
	chunks := (rows + RowChunk - 1) / RowChunk
	c.ParallelFor(chunks, 1, func(_, lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			pc := part[ch*w : (ch+1)*w]
			clear(pc)
			for n := ch * RowChunk; n < min(rows, (ch+1)*RowChunk); n++ {
				for j, v := range dy[n*w : (n+1)*w] {
					pc[j] += v
				}
			}
		}
	})
	clear(db)
	for ch := range chunks {
		for j, v := range part[ch*w : (ch+1)*w] {
			db[j] += v
		}
	}
}

// ---- scale: y = s·x ----

// Scale sets y = s·x (Gemma's embedding times √hidden, and its gradient).
func Scale[T Float](c Cores, x, y []T, s T) {
	c.ParallelFor(len(x), 1<<15, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			y[i] = x[i] * s
		}
	})
}

// ---- GeGLU: y = gelu_tanh(g)·u ----

// geluC is √(2/π) as PyTorch's gelu(approximate="tanh") uses it.
const geluC = 0.7978845608028654

// GeGLU computes y = gelu_tanh(g)·u with gelu_tanh(x) = x/2·(1 +
// tanh(√(2/π)·(x + 0.044715x³))), PyTorch's gelu_pytorch_tanh, and keeps
// the tanh in th for the backward pass.
func GeGLU[T Float](c Cores, g, u, y, th []T) {
	c.ParallelFor(len(g), 1<<14, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			x := float64(g[i])
			t := math.Tanh(geluC * (x + 0.044715*x*x*x))
			th[i] = T(t)
			y[i] = T(0.5*x*(1+t)) * u[i]
		}
	})
}

// GeGLUBack sets dg = dy·u·gelu_tanh'(g) and du = dy·gelu_tanh(g), each when
// not nil, with gelu_tanh'(x) = (1+t)/2 + x/2·(1−t²)·√(2/π)·(1 +
// 3·0.044715x²).
func GeGLUBack[T Float](c Cores, g, u, th, dy, dg, du []T) {
	c.ParallelFor(len(g), 1<<14, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			x, t := float64(g[i]), float64(th[i])
			if dg != nil {
				d := 0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*0.044715*x*x)
				dg[i] = dy[i] * u[i] * T(d)
			}
			if du != nil {
				du[i] = dy[i] * T(0.5*x*(1+t))
			}
		}
	})
}
