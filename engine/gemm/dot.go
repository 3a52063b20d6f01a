package gemm

import "sync"

// The dot-product path computes A·op(B) (A not transposed) for n ≤ 4, where
// a 16- or 8-wide register tile would mostly multiply padding. The n
// columns of op(B) are copied into 4 zero-padded rows, so that both
// operands are contiguous along k and a kernel can vectorise along k and
// keep every lane busy. It handles 3 rows of A against the 4 rows at a
// time.

// dotKernel sets out[4*i+j] to Σ_l a[i*lda+l]·b[j*ldb+l] for i < 3, j < 4
// and l < k, summing in a fixed order that depends on k only.
type dotKernel func(k int, a []float32, lda int, b []float32, ldb int, out *[12]float32)

// dotTail adds the terms l in [k0, k) to out.
func dotTail(k0, k int, a []float32, lda int, b []float32, ldb int, out *[12]float32) {
	if k0 == k {
		return
	}
	for i := 0; i < 3; i++ {
		ar := a[i*lda+k0 : i*lda+k]
		for j := 0; j < 4; j++ {
			br := b[j*ldb+k0 : j*ldb+k]
			br = br[:len(ar)]
			var s float32
			for l, v := range ar {
				s += v * br[l]
			}
			out[4*i+j] += s
		}
	}
}

// minDotK is the least k for which the dot path is used.
const minDotK = 16

// useDot reports whether the product goes through the dot-product path.
func useDot(dot dotKernel, tA bool, n, k int) bool {
	return dot != nil && !tA && n <= 4 && k >= minDotK
}

// dotBuffers holds the zero-padded copy of B, a scratch block for the last
// rows of A and the kernel's output.
type dotBuffers struct {
	b, a []float32
	out  [12]float32
}

var dotPool = sync.Pool{New: func() any { return new(dotBuffers) }}

// dotNT computes C = alpha·A·op(B) + beta·C on the dot-product path, split
// over up to threads goroutines by rows.
func (p *problem) dotNT(dot dotKernel, m, n, threads int) {
	k := p.k
	buf := dotPool.Get().(*dotBuffers)
	defer dotPool.Put(buf)
	if cap(buf.b) < 4*k {
		buf.b = make([]float32, 4*k)
	}
	bp := buf.b[:4*k]
	for j := 0; j < 4; j++ {
		row := bp[j*k : (j+1)*k]
		switch {
		case j >= n:
			clear(row)
		case p.tB:
			copy(row, p.b[j*p.ldb:j*p.ldb+k])
		default:
			for l := range row {
				row[l] = p.b[l*p.ldb+j]
			}
		}
	}
	groups := m / 3
	threads = min(threads, groups)
	if threads <= 1 {
		p.dotRows(dot, bp, 0, m, n, buf)
		return
	}
	dotParallel(p, dot, bp, m, n, threads, buf)
}

// dotJob is a parallel dotNT call: part t computes rows
// [groups·t/threads·3, groups·(t+1)/threads·3) of C (the last part also the
// remaining rows).
type dotJob struct {
	p             problem
	dot           dotKernel
	bp            []float32
	m, n, threads int
	buf           *dotBuffers // the caller's buffers, for part 0
	wait          pending
}

func (d *dotJob) runPart(t int) {
	groups := d.m / 3
	i0, i1 := groups*t/d.threads*3, groups*(t+1)/d.threads*3
	if t == d.threads-1 {
		i1 = d.m
	}
	if t == 0 {
		d.p.dotRows(d.dot, d.bp, i0, i1, d.n, d.buf)
		return
	}
	tb := dotPool.Get().(*dotBuffers)
	d.p.dotRows(d.dot, d.bp, i0, i1, d.n, tb)
	dotPool.Put(tb)
}

var dotJobs = sync.Pool{New: func() any { return new(dotJob) }}

// dotParallel splits dotNT over threads goroutines, by groups of 3 rows.
func dotParallel(p *problem, dot dotKernel, bp []float32, m, n, threads int, buf *dotBuffers) {
	d := dotJobs.Get().(*dotJob)
	d.p, d.dot, d.bp, d.m, d.n, d.threads, d.buf = *p, dot, bp, m, n, threads, buf
	fanOut(d, threads, &d.wait)
	d.p, d.bp, d.buf = problem{}, nil, nil
	dotJobs.Put(d)
}

// dotRows computes rows [i0, i1) of C on the dot-product path; bp holds the
// 4 zero-padded rows of B with stride k.
func (p *problem) dotRows(dot dotKernel, bp []float32, i0, i1, n int, buf *dotBuffers) {
	k, lda := p.k, p.lda
	out := &buf.out
	for i := i0; i < i1; i += 3 {
		rows := min(3, i1-i)
		a, ld := p.a[i*lda:], lda
		if rows < 3 {
			if cap(buf.a) < 3*k {
				buf.a = make([]float32, 3*k)
			}
			a, ld = buf.a[:3*k], k
			for r := 0; r < 3; r++ {
				if r < rows {
					copy(a[r*k:(r+1)*k], p.a[(i+r)*lda:(i+r)*lda+k])
				} else {
					clear(a[r*k : (r+1)*k])
				}
			}
		}
		dot(k, a, ld, bp, k, out)
		for r := 0; r < rows; r++ {
			c := p.c[(i+r)*p.ldc : (i+r)*p.ldc+n]
			for j := range c {
				if p.beta == 0 {
					c[j] = p.alpha * out[4*r+j]
				} else {
					c[j] = p.alpha*out[4*r+j] + p.beta*c[j]
				}
			}
		}
	}
}
