package accel

import (
	"fmt"
	"math"
)

// Host is a Device in plain, single-threaded Go: slow, obvious, and the
// reference the other backends' kernels are compared with.
type Host struct{}

type hostBuf struct {
	f []float32
	i []int32
}

func (b *hostBuf) Len() int {
	if b.i != nil {
		return len(b.i)
	}
	return len(b.f)
}

func fl(b Buf) []float32 { return b.(*hostBuf).f }
func in(b Buf) []int32   { return b.(*hostBuf).i }

func (Host) Name() string             { return "host" }
func (Host) Alloc(n int) (Buf, error) { return &hostBuf{f: make([]float32, n)}, nil }
func (Host) Free(Buf)                 {}
func (Host) Close() error             { return nil }
func (Host) Zero(b Buf) error         { clear(fl(b)); return nil }
func (Host) AllocInt(n int) (Buf, error) {
	return &hostBuf{i: make([]int32, n)}, nil
}

func (Host) Upload(dst Buf, src []float32) error {
	if len(src) != dst.Len() {
		return fmt.Errorf("upload: %d values into a buffer of %d", len(src), dst.Len())
	}
	copy(fl(dst), src)
	return nil
}

func (Host) UploadInt(dst Buf, src []int32) error {
	if len(src) != dst.Len() {
		return fmt.Errorf("upload: %d values into a buffer of %d", len(src), dst.Len())
	}
	copy(in(dst), src)
	return nil
}

func (Host) Download(dst []float32, src Buf) error {
	if len(dst) != src.Len() {
		return fmt.Errorf("download: %d values from a buffer of %d", src.Len(), len(dst))
	}
	copy(dst, fl(src))
	return nil
}

func (Host) Gemm(ta, tb bool, m, n, k int, alpha float32, a Buf, lda int, b Buf, ldb int, beta float32, c Buf, ldc int) error {
	A, B, C := fl(a), fl(b), fl(c)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				var av, bv float32
				if ta {
					av = A[p*lda+i]
				} else {
					av = A[i*lda+p]
				}
				if tb {
					bv = B[j*ldb+p]
				} else {
					bv = B[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			v := alpha * float32(s)
			if beta != 0 {
				v += beta * C[i*ldc+j]
			}
			C[i*ldc+j] = v
		}
	}
	return nil
}

func (Host) Embed(out, table, ids Buf, n, dim int) error {
	o, t, id := fl(out), fl(table), in(ids)
	for r := range n {
		copy(o[r*dim:(r+1)*dim], t[int(id[r])*dim:])
	}
	return nil
}

func (Host) RMSNorm(out, rinv, x, w Buf, rows, h int, eps float32) error {
	o, ri, X, W := fl(out), fl(rinv), fl(x), fl(w)
	for r := range rows {
		xs := X[r*h : (r+1)*h]
		var ss float64
		for _, v := range xs {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(ss/float64(h)+float64(eps)))
		ri[r] = inv
		for j, v := range xs {
			o[r*h+j] = v * inv * W[j]
		}
	}
	return nil
}

func (Host) RMSNormBack(dx, x, w, rinv, dy Buf, rows, h int) error {
	D, X, W, ri, dY := fl(dx), fl(x), fl(w), fl(rinv), fl(dy)
	for r := range rows {
		xs, ds := X[r*h:(r+1)*h], dY[r*h:(r+1)*h]
		inv := float64(ri[r])
		var dot float64
		for j := range xs {
			dot += float64(xs[j]) * float64(W[j]) * float64(ds[j])
		}
		c := dot * inv * inv * inv / float64(h)
		for j := range xs {
			D[r*h+j] = float32(inv*float64(W[j])*float64(ds[j]) - float64(xs[j])*c)
		}
	}
	return nil
}

func (Host) RoPE(y, x, cos, sin Buf, rows, rowLen, seqLen, headDim int, back bool) error {
	Y, X, C, S := fl(y), fl(x), fl(cos), fl(sin)
	half := headDim / 2
	for n := range rows {
		p := n % seqLen
		for h := 0; h < rowLen; h += headDim {
			o := n*rowLen + h
			for i := range half {
				a, b := X[o+i], X[o+i+half]
				ca, cb := C[p*headDim+i], C[p*headDim+i+half]
				sa, sb := S[p*headDim+i], S[p*headDim+i+half]
				if !back {
					Y[o+i], Y[o+i+half] = a*ca-b*sa, b*cb+a*sb
				} else {
					Y[o+i], Y[o+i+half] = a*ca+b*sb, b*cb-a*sa
				}
			}
		}
	}
	return nil
}

func (Host) Attention(out, p, q, k, v Buf, a Attn) error {
	O, P, Q, K, V := fl(out), fl(p), fl(q), fl(k), fl(v)
	qw, kw, group := a.NH*a.D, a.NKV*a.D, a.NH/a.NKV
	scale := 1 / math.Sqrt(float64(a.D))
	for b := range a.B {
		for h := range a.NH {
			g := h / group
			pr := P[(b*a.NH+h)*a.T*a.T:]
			for i := range a.T {
				qi := Q[(b*a.T+i)*qw+h*a.D:]
				row := pr[i*a.T : (i+1)*a.T]
				mx := math.Inf(-1)
				s := make([]float64, i+1)
				for j := 0; j <= i; j++ {
					kj := K[(b*a.T+j)*kw+g*a.D:]
					var d float64
					for t := range a.D {
						d += float64(qi[t]) * float64(kj[t])
					}
					s[j] = d * scale
					mx = math.Max(mx, s[j])
				}
				var sum float64
				for j := range s {
					s[j] = math.Exp(s[j] - mx)
					sum += s[j]
				}
				for j := range row {
					row[j] = 0
					if j <= i {
						row[j] = float32(s[j] / sum)
					}
				}
				oi := O[(b*a.T+i)*qw+h*a.D:]
				for t := range a.D {
					var acc float64
					for j := 0; j <= i; j++ {
						acc += float64(row[j]) * float64(V[(b*a.T+j)*kw+g*a.D+t])
					}
					oi[t] = float32(acc)
				}
			}
		}
	}
	return nil
}

func (Host) AttentionBack(dq, dk, dv, ds, q, k, v, p, out, dout Buf, a Attn) error {
	dQ, dK, dV, dS := fl(dq), fl(dk), fl(dv), fl(ds)
	Q, K, V, P, O, dO := fl(q), fl(k), fl(v), fl(p), fl(out), fl(dout)
	qw, kw, group := a.NH*a.D, a.NKV*a.D, a.NH/a.NKV
	scale := 1 / math.Sqrt(float64(a.D))
	clear(dK[:a.B*a.T*kw])
	clear(dV[:a.B*a.T*kw])
	for b := range a.B {
		for h := range a.NH {
			g := h / group
			pr, sr := P[(b*a.NH+h)*a.T*a.T:], dS[(b*a.NH+h)*a.T*a.T:]
			for i := range a.T {
				oi, doi := O[(b*a.T+i)*qw+h*a.D:], dO[(b*a.T+i)*qw+h*a.D:]
				var di float64 // rowsum(dP⊙P) = dO_i·O_i
				for t := range a.D {
					di += float64(doi[t]) * float64(oi[t])
				}
				for j := range a.T {
					sr[i*a.T+j] = 0
					if j > i {
						continue
					}
					vj := V[(b*a.T+j)*kw+g*a.D:]
					var dp float64
					for t := range a.D {
						dp += float64(doi[t]) * float64(vj[t])
					}
					sr[i*a.T+j] = float32(float64(pr[i*a.T+j]) * (dp - di))
				}
				dqi := dQ[(b*a.T+i)*qw+h*a.D:]
				for t := range a.D {
					var acc float64
					for j := 0; j <= i; j++ {
						acc += float64(sr[i*a.T+j]) * float64(K[(b*a.T+j)*kw+g*a.D+t])
					}
					dqi[t] = float32(acc * scale)
				}
			}
			for j := range a.T {
				dkj, dvj := dK[(b*a.T+j)*kw+g*a.D:], dV[(b*a.T+j)*kw+g*a.D:]
				for t := range a.D {
					var ak, av float64
					for i := j; i < a.T; i++ {
						ak += float64(sr[i*a.T+j]) * float64(Q[(b*a.T+i)*qw+h*a.D+t])
						av += float64(pr[i*a.T+j]) * float64(dO[(b*a.T+i)*qw+h*a.D+t])
					}
					dkj[t] += float32(ak * scale)
					dvj[t] += float32(av)
				}
			}
		}
	}
	return nil
}

func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

func (Host) SwiGLU(y, sig, g, u Buf, n int) error {
	Y, S, G, U := fl(y), fl(sig), fl(g), fl(u)
	for i := range n {
		S[i] = sigmoid(G[i])
		Y[i] = G[i] * S[i] * U[i]
	}
	return nil
}

func (Host) SwiGLUBack(dg, du, g, u, sig, dy Buf, n int) error {
	dG, dU, G, U, S, dY := fl(dg), fl(du), fl(g), fl(u), fl(sig), fl(dy)
	for i := range n {
		dG[i] = dY[i] * U[i] * S[i] * (1 + G[i]*(1-S[i]))
		dU[i] = dY[i] * G[i] * S[i]
	}
	return nil
}

func (Host) Add(dst, a, b Buf, n int) error {
	D, A, B := fl(dst), fl(a), fl(b)
	for i := range n {
		D[i] = A[i] + B[i]
	}
	return nil
}

func (Host) Mul(dst, a, m Buf, n int, acc bool) error {
	D, A, M := fl(dst), fl(a), fl(m)
	for i := range n {
		if acc {
			D[i] += A[i] * M[i]
		} else {
			D[i] = A[i] * M[i]
		}
	}
	return nil
}

func (Host) CrossEntropy(dlogits, rowLoss, logits, targets Buf, rows, vocab int, scale float32) error {
	dL, rl, L, tg := fl(dlogits), fl(rowLoss), fl(logits), in(targets)
	for r := range rows {
		row, d := L[r*vocab:(r+1)*vocab], dL[r*vocab:(r+1)*vocab]
		t := tg[r]
		if t < 0 {
			clear(d)
			rl[r] = 0
			continue
		}
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - mx)
		}
		rl[r] = float32(math.Log(sum) + mx - float64(row[t]))
		for j, v := range row {
			d[j] = float32(math.Exp(float64(v)-mx)/sum) * scale
		}
		d[t] -= scale
	}
	return nil
}

func (Host) Sum(dst, x Buf, n int) error {
	var s float64
	for _, v := range fl(x)[:n] {
		s += float64(v)
	}
	fl(dst)[0] = float32(s)
	return nil
}

func (Host) AdamW(p, g, m, v Buf, n int, h AdamParams) error {
	P, G, M, V := fl(p), fl(g), fl(m), fl(v)
	for i := range n {
		gi := G[i] * h.GScale
		mi := h.Beta1*M[i] + (1-h.Beta1)*gi
		vi := h.Beta2*V[i] + (1-h.Beta2)*gi*gi
		M[i], V[i] = mi, vi
		P[i] = P[i]*h.Decay - h.Step*mi/(float32(math.Sqrt(float64(vi)))*h.Sq+h.Eps)
	}
	return nil
}
