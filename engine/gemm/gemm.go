// Package gemm provides a fast single-precision general matrix multiply
// (Sgemm) with exactly the semantics of gonum's blas/gonum Implementation
// (row-major storage, leading dimensions, both transposes, alpha and beta).
//
// Design. The multiply follows the GotoBLAS/BLIS blocking scheme:
//
//	for jc over columns of C in steps of nc
//	  for pc over k in steps of kc
//	    pack op(B)[pc:pc+kc, jc:jc+nc] into nr-wide micro-panels   (L3)
//	    for ic over rows of C in steps of mc
//	      pack op(A)[ic:ic+mc, pc:pc+kc] into mr-tall micro-panels (L2)
//	      for jr over the B panel in steps of nr                   (L1)
//	        for ir over the A block in steps of mr
//	          micro-kernel: C[mr×nr] = alpha·Ã·B̃ + beta·C
//
// Packing resolves the transposes, so a micro-kernel only ever sees one
// layout for B: B̃ stores nr values of a row of op(B) per k step (the Bᵀ
// case is packed by an in-register 8×8 transpose on amd64). A micro-panel
// is addressed with a row and a column stride, so the assembly kernels read
// full panels of op(A) in place, in either orientation, and only the
// partial panel at the bottom edge is packed (with zero padding); the
// generic kernel reads packed panels. Partial tiles at the bottom and right
// edges go through the very same micro-kernel into a small scratch tile,
// which is then copied into C.
//
// Builds with the openblas tag (cgo, Debian's libopenblas-dev) forward
// Sgemm and Dgemm to OpenBLAS's cblas_sgemm and cblas_dgemm instead
// (openblas.go), unless Use names one of the kernels below (cmd/lens passes
// LENS_GEMM). OpenBLAS
// splits work over its own threads and its results depend on their number,
// so runs are bit-reproducible only with the same OPENBLAS_NUM_THREADS.
//
// On amd64 with AVX2 and FMA the micro-kernel is a 6×16 register-blocked
// kernel written in Go assembly (12 YMM accumulators), with a 12×8 variant
// for products with n ≤ 8 (LoRA ranks) and, for n ≤ 4 with A not
// transposed, a dot-product kernel vectorised along k (dot.go). With
// AVX-512 a 12×32 kernel (gemm512_amd64.s, 24 ZMM accumulators) takes the
// products with n > 16 and a 12×16 one those with 8 < n ≤ 16; they
// perform each element's fused operations in the AVX2 kernel's order, so
// the results are bit-identical to AVX2's and a run does not change with
// the CPU it lands on. Each path is chosen from the shape alone. On arm64 the micro-kernels are NEON ones
// in Go assembly (gemm_arm64.go: 8×12, and 12×8 for n ≤ 8, 24 accumulators
// each) which replay the generic kernel's fused operations, so there the two
// give bit-identical results. Elsewhere, or after Use("generic")
// (LENS_GEMM=generic for the lens command), a portable Go 4×4 micro-kernel is used
// with the same driver. Tiny products (m·n·k ≤ 512) use a direct loop.
//
// Large products are split over up to runtime.GOMAXPROCS goroutines (or
// the count given to SgemmThreads) along
// the M or N dimension of C, in whole tiles; k is never split. Every element
// of C is computed by the same sequence of floating-point operations
// whatever the split (the kc blocking depends on k only, and edge tiles use
// the same kernel), so results are bit-for-bit deterministic and
// independent of the number of threads. Packing buffers are recycled
// through a sync.Pool and the parallel parts run on long-lived worker
// goroutines (workers.go, which also offers ParallelFor to element-wise
// kernels), so a call does not allocate.
package gemm

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Panic messages, identical to gonum's.
const (
	mLT0   = "blas: m < 0"
	nLT0   = "blas: n < 0"
	kLT0   = "blas: k < 0"
	badLdA = "blas: bad leading dimension of A"
	badLdB = "blas: bad leading dimension of B"
	badLdC = "blas: bad leading dimension of C"
	shortA = "blas: insufficient length of a"
	shortB = "blas: insufficient length of b"
	shortC = "blas: insufficient length of c"
)

// microKernel describes a register-blocked micro-kernel and the cache
// blocking that suits it.
type microKernel struct {
	name       string
	mr, nr     int // register tile
	mc, kc, nc int // cache blocks; mc is a multiple of mr, nc of nr
	// fn computes, for the A micro-panel a (mr×kc, element (i, l) at
	// a[i*rsa + l*csa]) and the packed B micro-panel b (kc×nr),
	//	C[0:mr, 0:nr] = alpha·a·b + beta·C
	// where C has row stride ldc. When beta == 0, C is not read.
	fn func(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32)
	// strided reports that fn reads A efficiently in place, so that packing
	// A can be skipped.
	strided bool
	// packBT, if not nil, packs a full nr-wide panel of op(B) = Bᵀ: it
	// writes b[j*ldb + l] to dst[l*nr + j] for j < nr, l < kb.
	packBT func(dst, b []float32, ldb, kb int)
	// narrow, if not nil, is a kernel with a smaller nr used when n ≤
	// narrow.nr, where the wide tile would mostly multiply padding.
	narrow *microKernel
	// alt, if not nil, is a slower kernel with bit-identical results that
	// Use can still select by name (AVX2 on a CPU with AVX-512).
	alt *microKernel
}

var genericKernel = &microKernel{
	name: "generic",
	mr:   4, nr: 4,
	mc: 128, kc: 256, nc: 2048,
	fn: kernelGeneric,
}

// active is the kernel Sgemm uses, and useExternal says whether it
// forwards to the external BLAS instead. Both are chosen once at start-up
// (see selectKernel) and only changed by Use and by tests through setKernel.
var (
	active      = selectKernel()
	useExternal = external != nil
)

// externalBLAS is a BLAS library linked in by a build tag.
type externalBLAS struct {
	name  string
	sgemm func(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	dgemm func(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
}

func selectKernel() *microKernel {
	if k := archKernel(); k != nil {
		return k
	}
	return genericKernel
}

// Use makes Sgemm use the kernel named: "generic", the architecture
// kernel's name ("avx512", "avx2", "neon") or the external BLAS's ("openblas"); "" restores
// the default (the external BLAS when linked, else the fastest kernel).
// cmd/lens calls it with LENS_GEMM at start-up; it must not be called
// while products run.
func Use(name string) error {
	if name == "" {
		active, useExternal = selectKernel(), external != nil
		return nil
	}
	if _, ok := setKernel(name); !ok {
		have := []string{"generic"}
		for k := archKernel(); k != nil; k = k.alt {
			have = append(have, k.name)
		}
		if external != nil {
			have = append(have, external.name)
		}
		return fmt.Errorf("gemm kernel %q is not in this build (it has %s)", name, strings.Join(have, ", "))
	}
	return nil
}

// setKernel forces the kernel by name ("generic", the architecture
// kernel's name or the external BLAS's) and returns a function restoring
// the previous choice. It reports false if the kernel is not available.
func setKernel(name string) (restore func(), ok bool) {
	prev, prevExt := active, useExternal
	restore = func() { active, useExternal = prev, prevExt }
	switch {
	case name == "generic":
		active, useExternal = genericKernel, false
	case archNamed(name) != nil:
		active, useExternal = archNamed(name), false
	case external != nil && external.name == name:
		useExternal = true
	default:
		return restore, false
	}
	return restore, true
}

// archNamed returns the architecture kernel or one of its alternatives
// named name (on amd64 with AVX-512, "avx2" is the AVX2 kernel), or nil.
func archNamed(name string) *microKernel {
	for k := archKernel(); k != nil; k = k.alt {
		if k.name == name {
			return k
		}
	}
	return nil
}

// activeDot returns the dot-product kernel that goes with the active
// kernel, or nil.
func activeDot() dotKernel {
	if active == genericKernel {
		return nil
	}
	return archDot()
}

// Kernel reports what Sgemm uses: "avx512", "avx2", "neon" or "generic" (lens's kernels),
// or "openblas" in builds with the openblas tag.
func Kernel() string {
	if useExternal {
		return external.name
	}
	return active.name
}

var impl gonum.Implementation

func transOf(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// Dgemm computes C = alpha·op(A)·op(B) + beta·C in float64 by forwarding to
// gonum's implementation (or the external BLAS). It exists for gradient
// checks.
func Dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if useExternal {
		checkArgs(tA, tB, m, n, k, lda, ldb, ldc, len(a), len(b), len(c))
		if m > 0 && n > 0 {
			external.dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		}
		return
	}
	impl.Dgemm(transOf(tA), transOf(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C, row-major; op(A) is m×k,
// op(B) is k×n and C is m×n. op(X) is Xᵀ when the corresponding t flag is
// set. lda, ldb and ldc are the row strides of the stored matrices. When
// beta is zero C is not read (NaNs in C are overwritten). Invalid arguments
// panic with gonum's messages.
func Sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	SgemmThreads(runtime.GOMAXPROCS(0), tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmThreads is Sgemm split over at most threads goroutines (at least
// one). Callers that run several products at once, each on its share of
// the CPUs, pass that share. The result does not depend on threads.
func SgemmThreads(threads int, tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(tA, tB, m, n, k, lda, ldb, ldc, len(a), len(b), len(c))
	if m == 0 || n == 0 {
		return
	}
	if metering.Load() {
		meterEnter(m, n, k)
		defer meterLeave()
	}

	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}

	if useExternal {
		externalParallel(threads, tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}

	p := problem{
		tA: tA, tB: tB, k: k,
		alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
	}
	if m*n*k <= smallWork {
		p.naive(m, n)
		return
	}
	threads = max(1, threads)
	if w := m * n * k / minWorkPerThread; w < threads {
		threads = w
	}
	if dot := activeDot(); useDot(dot, tA, n, k) {
		p.dotNT(dot, m, n, threads)
		return
	}

	kern := active
	for kern.narrow != nil && n <= kern.narrow.nr {
		kern = kern.narrow
	}
	p.kern = kern
	p.kcb = kcBlock(k, kern.kc)
	p.packedA = !kern.strided || forcePackA

	mt := (m + kern.mr - 1) / kern.mr // tiles along M
	nt := (n + kern.nr - 1) / kern.nr // tiles along N
	splitM := mt >= nt
	tiles, step := nt, kern.nr
	if splitM {
		tiles, step = mt, kern.mr
	}
	if threads > tiles {
		threads = tiles
	}
	if threads <= 1 {
		p.run(0, m, 0, n)
		return
	}
	parallel(&p, m, n, threads, tiles, step, splitM)
}

// checkArgs panics, with gonum's messages, unless the arguments describe a
// valid product (la, lb, lc are the lengths of a, b and c).
func checkArgs(tA, tB bool, m, n, k, lda, ldb, ldc, la, lb, lc int) {
	if m < 0 {
		panic(mLT0)
	}
	if n < 0 {
		panic(nLT0)
	}
	if k < 0 {
		panic(kLT0)
	}
	if tA {
		if lda < max(1, m) {
			panic(badLdA)
		}
	} else if lda < max(1, k) {
		panic(badLdA)
	}
	if tB {
		if ldb < max(1, k) {
			panic(badLdB)
		}
	} else if ldb < max(1, n) {
		panic(badLdB)
	}
	if ldc < max(1, n) {
		panic(badLdC)
	}
	if m == 0 || n == 0 {
		return
	}
	if tA {
		if la < (k-1)*lda+m {
			panic(shortA)
		}
	} else if la < (m-1)*lda+k {
		panic(shortA)
	}
	if tB {
		if lb < (n-1)*ldb+k {
			panic(shortB)
		}
	} else if lb < (k-1)*ldb+n {
		panic(shortB)
	}
	if lc < (m-1)*ldc+n {
		panic(shortC)
	}
}

// extJob is an Sgemm call forwarded to the external BLAS, split like
// lens's own products: part t computes the t-th of threads blocks of
// extStep rows (splitM) or columns of C.
type extJob struct {
	tA, tB         bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	threads, tiles int
	splitM         bool
	wait           pending
}

// extStep is the granularity of the external BLAS's blocks.
const extStep = 16

func (e *extJob) runPart(t int) {
	lo := e.tiles * t / e.threads * extStep
	hi := e.tiles * (t + 1) / e.threads * extStep
	if e.splitM {
		hi = min(hi, e.m)
		var a []float32
		if e.tA {
			a = e.a[lo:]
		} else {
			a = e.a[lo*e.lda:]
		}
		external.sgemm(e.tA, e.tB, hi-lo, e.n, e.k, e.alpha, a, e.lda, e.b, e.ldb, e.beta, e.c[lo*e.ldc:], e.ldc)
		return
	}
	hi = min(hi, e.n)
	var b []float32
	if e.tB {
		b = e.b[lo*e.ldb:]
	} else {
		b = e.b[lo:]
	}
	external.sgemm(e.tA, e.tB, e.m, hi-lo, e.k, e.alpha, e.a, e.lda, b, e.ldb, e.beta, e.c[lo:], e.ldc)
}

var extJobs = sync.Pool{New: func() any { return new(extJob) }}

// externalParallel forwards a checked, non-trivial product to the external
// BLAS, split over the workers when it is large enough.
func externalParallel(threads int, tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	threads = min(threads, m*n*k/minWorkPerThread)
	splitM := m >= n
	tiles := (n + extStep - 1) / extStep
	if splitM {
		tiles = (m + extStep - 1) / extStep
	}
	threads = min(threads, tiles)
	if threads <= 1 {
		external.sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	e := extJobs.Get().(*extJob)
	e.tA, e.tB, e.m, e.n, e.k, e.alpha, e.beta = tA, tB, m, n, k, alpha, beta
	e.a, e.b, e.c, e.lda, e.ldb, e.ldc = a, b, c, lda, ldb, ldc
	e.threads, e.tiles, e.splitM = threads, tiles, splitM
	fanOut(e, threads, &e.wait)
	e.a, e.b, e.c = nil, nil, nil
	extJobs.Put(e)
}

// gemmJob is a parallel Sgemm call: part t computes the t-th of threads
// blocks of whole tiles along M (splitM) or N.
type gemmJob struct {
	p                          problem
	m, n, threads, tiles, step int
	splitM                     bool
	wait                       pending
}

func (g *gemmJob) runPart(t int) {
	lo := g.tiles * t / g.threads * g.step
	hi := g.tiles * (t + 1) / g.threads * g.step
	if g.splitM {
		g.p.run(lo, min(hi, g.m), 0, g.n)
	} else {
		g.p.run(0, g.m, lo, min(hi, g.n))
	}
}

var gemmJobs = sync.Pool{New: func() any { return new(gemmJob) }}

// parallel splits C into threads blocks of whole tiles along M (splitM) or
// N and computes them concurrently.
func parallel(p *problem, m, n, threads, tiles, step int, splitM bool) {
	g := gemmJobs.Get().(*gemmJob)
	g.p, g.m, g.n, g.threads, g.tiles, g.step, g.splitM = *p, m, n, threads, tiles, step, splitM
	fanOut(g, threads, &g.wait)
	g.p = problem{} // drop the operands
	gemmJobs.Put(g)
}

const (
	// smallWork is the m·n·k below which packing does not pay off.
	smallWork = 8 * 8 * 8
	// minWorkPerThread is the least m·n·k worth handing to a goroutine.
	minWorkPerThread = 1 << 19
)

// forcePackA makes Sgemm pack A even for strided kernels (for tests and
// benchmarks).
var forcePackA = false

// kcBlock returns the k block size: k is cut into the fewest blocks of at
// most kcMax, of nearly equal size. It depends on k only, which keeps the
// summation order independent of the thread split.
func kcBlock(k, kcMax int) int {
	nb := (k + kcMax - 1) / kcMax
	return (k + nb - 1) / nb
}

// scaleC sets C = beta·C (C = 0 when beta is zero).
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// problem holds the operands of one Sgemm call.
type problem struct {
	tA, tB      bool
	k           int
	alpha, beta float32
	a           []float32
	lda         int
	b           []float32
	ldb         int
	c           []float32
	ldc         int
	kern        *microKernel
	kcb         int  // k block size
	packedA     bool // pack A (otherwise the kernel reads full panels in place)
}

// naive computes C directly for tiny products.
func (p *problem) naive(m, n int) {
	for i := 0; i < m; i++ {
		crow := p.c[i*p.ldc : i*p.ldc+n]
		for j := range crow {
			var s float32
			for l := 0; l < p.k; l++ {
				var av, bv float32
				if p.tA {
					av = p.a[l*p.lda+i]
				} else {
					av = p.a[i*p.lda+l]
				}
				if p.tB {
					bv = p.b[j*p.ldb+l]
				} else {
					bv = p.b[l*p.ldb+j]
				}
				s += av * bv
			}
			if p.beta == 0 {
				crow[j] = p.alpha * s
			} else {
				crow[j] = p.alpha*s + p.beta*crow[j]
			}
		}
	}
}

// buffers holds packing space for one goroutine.
type buffers struct {
	a, b []float32
	tile [maxTile]float32 // scratch tile for partial edge tiles
}

var bufPool = sync.Pool{New: func() any { return new(buffers) }}

// alignedFloats returns a slice of n float32 starting on a 64-byte
// boundary, reusing *buf when it is large enough.
func alignedFloats(buf *[]float32, n int) []float32 {
	const pad = 16 // 64 bytes
	if cap(*buf) < n+pad {
		*buf = make([]float32, n+pad)
	}
	s := (*buf)[:cap(*buf)]
	off := int(uintptr(unsafe.Pointer(&s[0]))&63) / 4
	if off != 0 {
		off = pad - off
	}
	return s[off : off+n]
}

// run computes the block C[i0:i1, j0:j1].
func (p *problem) run(i0, i1, j0, j1 int) {
	kern := p.kern
	mr, nr := kern.mr, kern.nr
	k, kcb := p.k, p.kcb
	mc := min(kern.mc, i1-i0)
	nc := min(kern.nc, j1-j0)

	buf := bufPool.Get().(*buffers)
	defer bufPool.Put(buf)
	apack := alignedFloats(&buf.a, (mc+mr-1)/mr*mr*kcb)
	bpack := alignedFloats(&buf.b, (nc+nr-1)/nr*nr*kcb)
	tile := &buf.tile

	for jc := j0; jc < j1; jc += nc {
		nb := min(nc, j1-jc)
		for pc := 0; pc < k; pc += kcb {
			kb := min(kcb, k-pc)
			p.packB(bpack, pc, kb, jc, nb, nr)
			beta := p.beta
			if pc > 0 {
				beta = 1
			}
			for ic := i0; ic < i1; ic += mc {
				mb := min(mc, i1-ic)
				full := mb / mr * mr // rows covered by full micro-panels
				if p.packedA {
					p.packA(apack, ic, mb, pc, kb, mr)
				} else if full < mb {
					// Only the partial panel needs packing (zero padding).
					p.packA(apack[full*kb:], ic+full, mb-full, pc, kb, mr)
				}
				for jr := 0; jr < nb; jr += nr {
					nn := min(nr, nb-jr)
					bp := bpack[jr*kb:]
					for ir := 0; ir < mb; ir += mr {
						mm := min(mr, mb-ir)
						ap, rsa, csa := apack[ir*kb:], 1, mr
						if !p.packedA && mm == mr {
							if p.tA {
								ap, rsa, csa = p.a[pc*p.lda+ic+ir:], 1, p.lda
							} else {
								ap, rsa, csa = p.a[(ic+ir)*p.lda+pc:], p.lda, 1
							}
						}
						off := (ic+ir)*p.ldc + jc + jr
						if mm == mr && nn == nr {
							kern.fn(kb, ap, rsa, csa, bp, p.c[off:], p.ldc, p.alpha, beta)
							continue
						}
						// Edge tile: go through the scratch tile so that
						// the arithmetic is the same as for full tiles.
						t := tile[:mr*nr]
						if beta != 0 {
							for i := 0; i < mm; i++ {
								copySmall(t[i*nr:i*nr+nn], p.c[off+i*p.ldc:off+i*p.ldc+nn])
							}
						}
						kern.fn(kb, ap, rsa, csa, bp, t, nr, p.alpha, beta)
						for i := 0; i < mm; i++ {
							copySmall(p.c[off+i*p.ldc:off+i*p.ldc+nn], t[i*nr:i*nr+nn])
						}
					}
				}
			}
		}
	}
}

// copySmall copies src to dst (same length); for the few elements of a tile
// row a loop beats a call to memmove.
func copySmall(dst, src []float32) {
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = src[i]
	}
}

// maxTile bounds mr·nr over all kernels.
const maxTile = 16 * 32

// packA packs op(A)[ic:ic+mb, pc:pc+kb] into dst as consecutive micro-panels
// of mr rows; panel q holds, for each l, the mr values op(A)[ic+q·mr+i, pc+l]
// at dst[q·mr·kb + l·mr + i]. Rows past mb are zero.
func (p *problem) packA(dst []float32, ic, mb, pc, kb, mr int) {
	a, lda := p.a, p.lda
	if p.tA {
		// op(A)[i, l] = a[l*lda + i]: walk the rows of the stored A in
		// order (friendly to the TLB and the prefetchers) and scatter each
		// into the panels.
		full := mb / mr * mr
		for l := 0; l < kb; l++ {
			src := a[(pc+l)*lda+ic : (pc+l)*lda+ic+mb]
			switch mr {
			case 6:
				for q := 0; q < full; q += 6 {
					// Two moves (16 + 8 bytes): a [6]float32 copy goes
					// through the stack with overlapping stores.
					d := dst[q*kb+l*6 : q*kb+l*6+6 : q*kb+l*6+6]
					s := src[q : q+6 : q+6]
					*(*[4]float32)(d) = *(*[4]float32)(s)
					*(*[2]float32)(d[4:]) = *(*[2]float32)(s[4:])
				}
			case 12:
				for q := 0; q < full; q += 12 {
					v := *(*[12]float32)(src[q:])
					*(*[12]float32)(dst[q*kb+l*12:]) = v
				}
			default:
				for q := 0; q < full; q += mr {
					copySmall(dst[q*kb+l*mr:q*kb+l*mr+mr], src[q:q+mr])
				}
			}
			if full < mb {
				dd := dst[full*kb+l*mr : full*kb+l*mr+mr]
				copySmall(dd[:mb-full], src[full:])
				clear(dd[mb-full:])
			}
		}
		return
	}
	// op(A)[i, l] = a[i*lda + l]: rows of A are contiguous in l.
	for q := 0; q < mb; q += mr {
		mm := min(mr, mb-q)
		d := dst[q*kb : (q+mr)*kb]
		if mm == 6 && mr == 6 {
			packRows6(d, a, (ic+q)*lda+pc, lda, kb)
			continue
		}
		for i := 0; i < mm; i++ {
			src := a[(ic+q+i)*lda+pc : (ic+q+i)*lda+pc+kb]
			for l, v := range src {
				d[l*mr+i] = v
			}
		}
		for i := mm; i < mr; i++ {
			for l := 0; l < kb; l++ {
				d[l*mr+i] = 0
			}
		}
	}
}

// packRows6 interleaves 6 rows of length kb starting at a[off], stride lda.
func packRows6(d, a []float32, off, lda, kb int) {
	r0 := a[off : off+kb]
	r1 := a[off+lda : off+lda+kb]
	r2 := a[off+2*lda : off+2*lda+kb]
	r3 := a[off+3*lda : off+3*lda+kb]
	r4 := a[off+4*lda : off+4*lda+kb]
	r5 := a[off+5*lda : off+5*lda+kb]
	d = d[:6*kb]
	for l := range r0 {
		dd := d[l*6 : l*6+6 : l*6+6]
		dd[0] = r0[l]
		dd[1] = r1[l]
		dd[2] = r2[l]
		dd[3] = r3[l]
		dd[4] = r4[l]
		dd[5] = r5[l]
	}
}

// packB packs op(B)[pc:pc+kb, jc:jc+nb] into dst as consecutive micro-panels
// of nr columns; panel q holds op(B)[pc+l, jc+q·nr+j] at
// dst[q·nr·kb + l·nr + j]. Columns past nb are zero.
func (p *problem) packB(dst []float32, pc, kb, jc, nb, nr int) {
	b, ldb := p.b, p.ldb
	if !p.tB {
		// op(B)[l, j] = b[l*ldb + j]: rows of op(B) are contiguous. Walk
		// them in order and scatter each into the panels.
		full := nb / nr * nr
		for l := 0; l < kb; l++ {
			row := b[(pc+l)*ldb+jc : (pc+l)*ldb+jc+nb]
			if nr == 16 {
				for q := 0; q < full; q += 16 {
					v := *(*[16]float32)(row[q:])
					*(*[16]float32)(dst[q*kb+l*16:]) = v
				}
			} else {
				for q := 0; q < full; q += nr {
					copy(dst[q*kb+l*nr:q*kb+l*nr+nr], row[q:q+nr])
				}
			}
			if full < nb {
				dd := dst[full*kb+l*nr : full*kb+l*nr+nr]
				n := copy(dd, row[full:])
				clear(dd[n:])
			}
		}
		return
	}
	// op(B)[l, j] = b[j*ldb + l]: columns of op(B) are contiguous.
	for q := 0; q < nb; q += nr {
		nn := min(nr, nb-q)
		d := dst[q*kb : (q+nr)*kb]
		if nn == nr && p.kern.packBT != nil {
			p.kern.packBT(d, b[(jc+q)*ldb+pc:], ldb, kb)
			continue
		}
		for j := 0; j < nn; j++ {
			src := b[(jc+q+j)*ldb+pc : (jc+q+j)*ldb+pc+kb]
			for l, v := range src {
				d[l*nr+j] = v
			}
		}
		for j := nn; j < nr; j++ {
			for l := 0; l < kb; l++ {
				d[l*nr+j] = 0
			}
		}
	}
}
