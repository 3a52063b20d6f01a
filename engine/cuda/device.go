//go:build lenscuda

package cuda

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"
	"unsafe"

	"lens/engine/accel"
	"lens/engine/quant"
)

//go:embed kernels.ptx
var ptx string

// The kernels of kernels.cu, in the order of kernelNames.
const (
	kSgemm = iota
	kSgemmReduce
	kEmbed
	kRMSNorm
	kRMSNormBack
	kRoPE
	kSgemmBatched
	kSoftmaxCausal
	kSoftmaxBack
	kSwiGLU
	kSwiGLUBack
	kAdd
	kMul
	kCrossEntropy
	kSum
	kAdamW
	kEmbedBack
	kRMSNormDW
	kCopy
	kSoftmaxCached
	kGeGLU
	kGeGLUBack
	kScale
	kDequantNF4
	kWidenBF16
	numKernels
)

var kernelNames = [numKernels]string{
	"sgemm", "sgemm_reduce", "embed", "rmsnorm", "rmsnorm_back", "rope", "sgemm_batched", "softmax_causal",
	"softmax_back", "swiglu", "swiglu_back", "add", "mul", "cross_entropy", "sum", "adamw",
	"embed_back", "rmsnorm_dw", "copy_f32", "softmax_cached", "geglu", "geglu_back", "scale",
	"dequant_nf4", "widen_bf16",
}

const (
	threads  = 256 // block size of the 1-D, per-row and sgemm kernels
	tile     = 64  // sgemm's BM and BN
	maxGridX = 1<<31 - 1
	maxGridY = 65535
)

// Device is CUDA device 0 behind its primary context.
//
// A CUDA context is current per OS thread, while goroutines move between
// threads. So every call that touches the driver holds mu, locks its
// goroutine to its thread and makes the context current there first (do);
// calls on one Device are thereby serialized, which also keeps the single
// launch-argument block (args) safe. Kernels run asynchronously on the
// default stream, in launch order; Download waits for them.
type Device struct {
	mu     sync.Mutex
	dev    cuDevice
	ctx    cuContext // nil until opened
	mod    cuModule
	fn     [numKernels]cuFunction
	args   *args
	name   string
	closed bool
	prof   *profile // nil unless Profile is set
	ws     dptr     // split-K partial products (sgemm), grown on demand
	wsN    int
	// Packed rows' attention mask: each token's first key (its segment's
	// start) as last uploaded, and its device copy, grown on demand.
	segStart []int32
	seg      dptr
	segN     int
}

// profile times every kernel when Profile is set: each launch
// is followed by a synchronize, so the times are the kernels' own (plus a
// launch), at the price of the overlap of launches with running kernels.
// Close prints the table to stderr.
type profile struct {
	n    [numKernels]int
	t    [numKernels]time.Duration
	gemm map[string]*gemmStat // by shape, the split-K reduction included
}

type gemmStat struct {
	n     int
	t     time.Duration
	flops float64
}

func (p *profile) print() {
	var total time.Duration
	order := make([]int, 0, numKernels)
	for k := range numKernels {
		total += p.t[k]
		if p.n[k] > 0 {
			order = append(order, k)
		}
	}
	sort.Slice(order, func(i, j int) bool { return p.t[order[i]] > p.t[order[j]] })
	fmt.Fprintf(os.Stderr, "cuda profile: %v in kernels\n", total)
	for _, k := range order {
		fmt.Fprintf(os.Stderr, "  %-20s %8d launches %10v %5.1f%% %8.1f µs each\n", kernelNames[k], p.n[k], p.t[k],
			100*p.t[k].Seconds()/total.Seconds(), p.t[k].Seconds()*1e6/float64(p.n[k]))
	}
	shapes := make([]string, 0, len(p.gemm))
	for sh := range p.gemm {
		shapes = append(shapes, sh)
	}
	sort.Slice(shapes, func(i, j int) bool { return p.gemm[shapes[i]].t > p.gemm[shapes[j]].t })
	fmt.Fprintf(os.Stderr, "  sgemm by shape (op(a) m×k · op(b) k×n, splits of k):\n")
	for i, sh := range shapes {
		if i == 15 {
			break
		}
		g := p.gemm[sh]
		fmt.Fprintf(os.Stderr, "    %-28s %6d × %8.1f µs %8.0f GFLOP/s\n", sh, g.n, g.t.Seconds()*1e6/float64(g.n), g.flops/g.t.Seconds()/1e9)
	}
}

// gemmDone adds one product (launched and synchronized since start) to
// the by-shape table.
func (p *profile) gemmDone(start time.Time, ta, tb bool, m, n, k, splits int) {
	t := func(b bool) string {
		if b {
			return "ᵀ"
		}
		return ""
	}
	sh := fmt.Sprintf("%d×%d%s·%d×%d%s /%d", m, k, t(ta), k, n, t(tb), splits)
	g := p.gemm[sh]
	if g == nil {
		g = &gemmStat{}
		p.gemm[sh] = g
	}
	g.n++
	g.t += time.Since(start)
	g.flops += 2 * float64(m) * float64(n) * float64(k)
}

var _ accel.Device = (*Device)(nil)

// buf is a device allocation of n float32 (or int32, if isInt) elements,
// or of n bytes (isBytes: packed weights, in whole 32-bit words).
type buf struct {
	dev     *Device
	ptr     dptr // 0 for an empty buffer
	n       int
	isInt   bool
	isBytes bool
	freed   bool
}

// kind names what b holds, for errors.
func (b *buf) kind() string {
	switch {
	case b.isInt:
		return "an int buffer (AllocInt)"
	case b.isBytes:
		return "a byte buffer (AllocBytes)"
	}
	return "a float buffer (Alloc)"
}

func (b *buf) Len() int { return b.n }

// Open opens CUDA device 0: it loads the driver, retains the device's
// primary context and JIT-loads the embedded kernels.
func Open() (*Device, error) {
	if err := driverInit(); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dev, err := cuDeviceGet(0)
	if err != nil {
		return nil, err
	}
	name, err := cuDeviceGetName(dev)
	if err != nil {
		return nil, err
	}
	ctx, err := cuDevicePrimaryCtxRetain(dev)
	if err != nil {
		return nil, err
	}
	d := &Device{dev: dev, name: "cuda:0 " + name}
	fail := func(err error) (*Device, error) {
		if d.mod != nil {
			_ = cuModuleUnload(d.mod)
		}
		_ = cuDevicePrimaryCtxRelease(dev)
		return nil, err
	}
	if err := cuCtxSetCurrent(ctx); err != nil {
		return fail(err)
	}
	if d.mod, err = cuModuleLoadPTX("kernels.ptx", ptx); err != nil {
		return fail(err)
	}
	for k, name := range kernelNames {
		if d.fn[k], err = cuModuleGetFunction(d.mod, name); err != nil {
			return fail(err)
		}
	}
	if d.args, err = newArgs(); err != nil {
		return fail(err)
	}
	d.ctx = ctx
	if Profile.Load() {
		d.prof = &profile{gemm: map[string]*gemmStat{}}
	}
	return d, nil
}

func (d *Device) Name() string { return d.name }

// do runs f with d's context current on the calling thread and d locked.
func (d *Device) do(what string, f func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fmt.Errorf("cuda: %s on a closed device", what)
	}
	if d.ctx == nil {
		return fmt.Errorf("cuda: %s on a device that was not opened (use Open)", what)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cuCtxSetCurrent(d.ctx); err != nil {
		return err
	}
	return f()
}

// Close releases the kernels and the primary context; the device memory
// still allocated goes with the context once no other Device holds it.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.ctx == nil {
		d.closed = true
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var errs []error
	if err := cuCtxSetCurrent(d.ctx); err == nil {
		errs = append(errs, cuCtxSynchronize("Close"), cuModuleUnload(d.mod))
		if d.ws != 0 {
			errs = append(errs, cuMemFree(d.ws))
		}
		if d.seg != 0 {
			errs = append(errs, cuMemFree(d.seg))
		}
	} else {
		errs = append(errs, err)
	}
	errs = append(errs, cuDevicePrimaryCtxRelease(d.dev))
	d.args.free()
	d.closed = true
	if d.prof != nil {
		d.prof.print()
	}
	return errors.Join(errs...)
}

// ---- memory ----

func (d *Device) Alloc(n int) (accel.Buf, error)    { return d.alloc(n, false) }
func (d *Device) AllocInt(n int) (accel.Buf, error) { return d.alloc(n, true) }

func (d *Device) alloc(n int, isInt bool) (accel.Buf, error) {
	if n < 0 || n > math.MaxInt/4 {
		return nil, fmt.Errorf("cuda: allocate %d elements", n)
	}
	b := &buf{dev: d, n: n, isInt: isInt}
	if n == 0 {
		return b, nil // cuMemAlloc rejects 0 bytes; nothing will touch it
	}
	err := d.do("Alloc", func() error {
		p, err := cuMemAlloc(4 * n)
		if err != nil {
			return err
		}
		if err := cuMemsetD32(p, 0, n); err != nil {
			_ = cuMemFree(p)
			return err
		}
		b.ptr = p
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// AllocBytes allocates n zeroed bytes in whole 32-bit words (cuMemAlloc
// aligns them for the kernels' 2-byte reads).
func (d *Device) AllocBytes(n int) (accel.Buf, error) {
	if n < 0 {
		return nil, fmt.Errorf("cuda: allocate %d bytes", n)
	}
	b, err := d.alloc((n+3)/4, false)
	if err != nil {
		return nil, err
	}
	cb := b.(*buf)
	cb.n, cb.isBytes = n, true
	return cb, nil
}

// own returns b as one of d's live buffers.
func (d *Device) own(what string, b accel.Buf) (*buf, error) {
	cb, ok := b.(*buf)
	switch {
	case !ok || cb == nil:
		return nil, fmt.Errorf("cuda: %s: %T is not a CUDA buffer", what, b)
	case cb.dev != d:
		return nil, fmt.Errorf("cuda: %s: the buffer belongs to another device", what)
	case cb.freed:
		return nil, fmt.Errorf("cuda: %s: the buffer was freed", what)
	}
	return cb, nil
}

func (d *Device) Upload(dst accel.Buf, src []float32) error {
	b, err := d.own("Upload", dst)
	if err != nil {
		return err
	}
	if b.isInt || b.isBytes {
		return fmt.Errorf("cuda: Upload of floats into %s", b.kind())
	}
	if len(src) != b.n {
		return fmt.Errorf("cuda: upload: %d values into a buffer of %d", len(src), b.n)
	}
	if b.n == 0 {
		return nil
	}
	return d.do("Upload", func() error {
		return cuMemcpyHtoD(b.ptr, unsafe.Pointer(&src[0]), 4*b.n)
	})
}

func (d *Device) UploadInt(dst accel.Buf, src []int32) error {
	b, err := d.own("UploadInt", dst)
	if err != nil {
		return err
	}
	if !b.isInt {
		return fmt.Errorf("cuda: UploadInt into %s", b.kind())
	}
	if len(src) != b.n {
		return fmt.Errorf("cuda: upload: %d values into a buffer of %d", len(src), b.n)
	}
	if b.n == 0 {
		return nil
	}
	return d.do("UploadInt", func() error {
		return cuMemcpyHtoD(b.ptr, unsafe.Pointer(&src[0]), 4*b.n)
	})
}

func (d *Device) UploadBytes(dst accel.Buf, src []byte) error {
	b, err := d.own("UploadBytes", dst)
	if err != nil {
		return err
	}
	if !b.isBytes {
		return fmt.Errorf("cuda: UploadBytes into %s", b.kind())
	}
	if len(src) != b.n {
		return fmt.Errorf("cuda: upload: %d bytes into a buffer of %d", len(src), b.n)
	}
	if b.n == 0 {
		return nil
	}
	return d.do("UploadBytes", func() error {
		return cuMemcpyHtoD(b.ptr, unsafe.Pointer(&src[0]), b.n)
	})
}

// Download waits for every kernel launched so far (reporting their errors)
// and copies src into dst.
func (d *Device) Download(dst []float32, src accel.Buf) error {
	b, err := d.own("Download", src)
	if err != nil {
		return err
	}
	if b.isInt || b.isBytes {
		return fmt.Errorf("cuda: Download of %s", b.kind())
	}
	if len(dst) != b.n {
		return fmt.Errorf("cuda: download: %d values from a buffer of %d", b.n, len(dst))
	}
	return d.do("Download", func() error {
		if err := cuCtxSynchronize("kernels before Download"); err != nil {
			return err
		}
		if b.n == 0 {
			return nil
		}
		return cuMemcpyDtoH(unsafe.Pointer(&dst[0]), b.ptr, 4*b.n)
	})
}

func (d *Device) Zero(bb accel.Buf) error {
	b, err := d.own("Zero", bb)
	if err != nil {
		return err
	}
	if b.n == 0 {
		return nil
	}
	words := b.n
	if b.isBytes {
		words = (b.n + 3) / 4
	}
	return d.do("Zero", func() error {
		return cuMemsetD32(b.ptr, 0, words)
	})
}

// Free releases b; freeing a buffer twice, or after Close, does nothing.
func (d *Device) Free(bb accel.Buf) {
	b, err := d.own("Free", bb)
	if err != nil {
		return
	}
	b.freed = true
	if b.ptr == 0 {
		return
	}
	p := b.ptr
	b.ptr = 0
	_ = d.do("Free", func() error { return cuMemFree(p) })
}

// ---- launches ----

// call checks one kernel's operands, keeping the first problem, before
// anything is launched: a bad length becomes an error naming the kernel
// instead of a fault on the GPU.
type call struct {
	d    *Device
	k    int
	name string // for errors, when the call is more than kernel k
	err  error
}

func (d *Device) call(k int) *call { return &call{d: d, k: k} }

func (c *call) fail(format string, a ...any) {
	if c.err == nil {
		name := c.name
		if name == "" {
			name = kernelNames[c.k]
		}
		c.err = fmt.Errorf("cuda: %s: "+format, append([]any{name}, a...)...)
	}
}

// dims checks that every named size is ≥ 0.
func (c *call) dims(kv ...any) {
	for i := 0; i+1 < len(kv); i += 2 {
		if v := kv[i+1].(int); v < 0 {
			c.fail("%s = %d < 0", kv[i], v)
		}
	}
}

// size is the product of xs (all ≥ 0), or an error on overflow.
func (c *call) size(xs ...int) int {
	p := 1
	for _, x := range xs {
		if x < 0 {
			c.fail("negative size %d", x)
			return 0
		}
		if x != 0 && p > math.MaxInt/4/x {
			c.fail("size %v overflows", xs)
			return 0
		}
		p *= x
	}
	return p
}

func (c *call) operand(name string, b accel.Buf, need int, want *buf) dptr {
	if c.err != nil {
		return 0
	}
	cb, err := c.d.own(kernelNames[c.k]+" "+name, b)
	if err != nil {
		c.err = err
		return 0
	}
	if cb.isInt != want.isInt || cb.isBytes != want.isBytes {
		c.fail("%s must be %s", name, want.kind())
		return 0
	}
	if cb.n < need {
		c.fail("%s has %d elements, the kernel touches %d", name, cb.n, need)
		return 0
	}
	return cb.ptr
}

// f and i check a float or int operand of at least need elements.
func (c *call) f(name string, b accel.Buf, need int) dptr { return c.operand(name, b, need, &buf{}) }
func (c *call) i(name string, b accel.Buf, need int) dptr {
	return c.operand(name, b, need, &buf{isInt: true})
}

// u8 checks a byte operand of at least need bytes.
func (c *call) u8(name string, b accel.Buf, need int) dptr {
	return c.operand(name, b, need, &buf{isBytes: true})
}

// grid checks a launch shape; a zero grid is a no-op (ok false).
func (c *call) grid(gx, gy int) (ok bool) {
	if c.err != nil || gx == 0 || gy == 0 {
		return false
	}
	if gx > maxGridX || gy > maxGridY {
		c.fail("grid %d×%d exceeds the limits %d×%d", gx, gy, maxGridX, maxGridY)
		return false
	}
	return true
}

// launch runs the kernel on a gx×gy grid of bx-thread blocks; see run.
func (c *call) launch(gx, gy, bx int, a ...any) error {
	if !c.grid(gx, gy) {
		return c.err
	}
	return c.d.do(kernelNames[c.k], func() error { return c.d.run(c.k, gx, gy, bx, a...) })
}

// run packs a (dptr, int, bool, float32) into the argument block, each
// in its own 8-byte slot, and launches kernel k. d is locked and current.
func (d *Device) run(k, gx, gy, bx int, a ...any) error { return d.runZ(k, gx, gy, 1, bx, a...) }

// runZ is run on a gx×gy×gz grid.
func (d *Device) runZ(k, gx, gy, gz, bx int, a ...any) error {
	d.args.reset()
	for _, v := range a {
		switch v := v.(type) {
		case dptr:
			d.args.ptr(v)
		case int:
			d.args.int(v)
		case bool:
			d.args.bool(v)
		case float32:
			d.args.float(v)
		default:
			panic(fmt.Sprintf("cuda: kernel argument of type %T", v))
		}
	}
	if d.prof == nil {
		return cuLaunchKernel(d.fn[k], kernelNames[k], gx, gy, gz, bx, d.args)
	}
	start := time.Now()
	err := cuLaunchKernel(d.fn[k], kernelNames[k], gx, gy, gz, bx, d.args)
	if err == nil {
		err = cuCtxSynchronize(kernelNames[k])
	}
	d.prof.n[k]++
	d.prof.t[k] += time.Since(start)
	return err
}

func blocks(n int) int { return (n + threads - 1) / threads }

// extent is how many elements a rows×cols matrix with row stride ld spans.
func (c *call) extent(what string, rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	if ld < cols {
		c.fail("%s: leading dimension %d < %d columns", what, ld, cols)
		return 0
	}
	return c.size(rows-1, ld) + cols
}

// ---- kernels ----

func (d *Device) Gemm(ta, tb bool, m, n, k int, alpha float32, a accel.Buf, lda int, b accel.Buf, ldb int, beta float32, cc accel.Buf, ldc int) error {
	c := d.call(kSgemm)
	c.dims("m", m, "n", n, "k", k, "lda", lda, "ldb", ldb, "ldc", ldc)
	if c.err != nil {
		return c.err
	}
	ar, ac := m, k
	if ta {
		ar, ac = k, m
	}
	br, bc := k, n
	if tb {
		br, bc = n, k
	}
	if m == 0 || n == 0 {
		ar, br = 0, 0 // nothing is computed, nothing read
	}
	A := c.f("a", a, c.extent("a", ar, ac, lda))
	B := c.f("b", b, c.extent("b", br, bc, ldb))
	CC := c.f("c", cc, c.extent("c", m, n, ldc))
	gx, gy := (n+tile-1)/tile, (m+tile-1)/tile
	splits, kc := splitK(gx*gy, k)
	if d.prof != nil {
		defer d.prof.gemmDone(time.Now(), ta, tb, m, n, k, splits)
	}
	if splits == 1 {
		return c.launch(gx, gy, threads, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, CC, ldc, k, dptr(0))
	}
	if !c.grid(gx, gy) {
		return c.err
	}
	return d.do("sgemm", func() error {
		W, err := d.workspace(splits * m * n)
		if err != nil {
			return err
		}
		if err := d.runZ(kSgemm, gx, gy, splits, threads, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, CC, ldc, kc, W); err != nil {
			return err
		}
		return d.run(kSgemmReduce, blocks(m*n), 1, threads, CC, W, splits, m, n, ldc, alpha, beta)
	})
}

// splitK picks how many slices of k a product of the given number of
// 64×64 tiles is cut into (see sgemm in kernels.cu): enough blocks to keep
// every multiprocessor busy (about 512: four each on the largest GPUs),
// with slices of at least 64 and a multiple of the kernel's BK (16).
func splitK(tiles, k int) (splits, kc int) {
	if tiles == 0 {
		return 1, k // an empty product: nothing is launched
	}
	splits = min((512+tiles-1)/tiles, k/64)
	if splits <= 1 {
		return 1, k
	}
	kc = ((k+splits-1)/splits + 15) / 16 * 16
	return (k + kc - 1) / kc, kc
}

// workspace returns the split-K scratch, of at least n floats. d is locked
// and current. Growing it waits for the kernels that may still use the old
// one.
func (d *Device) workspace(n int) (dptr, error) {
	if n <= d.wsN {
		return d.ws, nil
	}
	if d.ws != 0 {
		if err := cuCtxSynchronize("sgemm workspace"); err != nil {
			return 0, err
		}
		if err := cuMemFree(d.ws); err != nil {
			return 0, err
		}
		d.ws, d.wsN = 0, 0
	}
	n = max(n, 1<<20)
	p, err := cuMemAlloc(4 * n)
	if err != nil {
		return 0, fmt.Errorf("cuda: sgemm workspace of %d floats: %w", n, err)
	}
	d.ws, d.wsN = p, n
	return p, nil
}

// Embed does not check the ids against the table's rows: that would take
// a download. Like the host's, an id out of range is the caller's bug.
func (d *Device) Embed(out, table, ids accel.Buf, n, dim int) error {
	c := d.call(kEmbed)
	c.dims("n", n, "dim", dim)
	tot := c.size(n, dim)
	O := c.f("out", out, tot)
	tab := 0
	if tot > 0 {
		tab = dim // at least one row
	}
	T := c.f("table", table, tab)
	I := c.i("ids", ids, n)
	return c.launch(blocks(tot), 1, threads, O, T, I, n, dim)
}

func (d *Device) RMSNorm(out, rinv, x, w accel.Buf, rows, h int, eps, off float32) error {
	c := d.call(kRMSNorm)
	c.dims("rows", rows, "h", h)
	tot := c.size(rows, h)
	wn := h
	if rows == 0 {
		wn = 0
	}
	O, R, X, W := c.f("out", out, tot), c.f("rinv", rinv, rows), c.f("x", x, tot), c.f("w", w, wn)
	return c.launch(rows, 1, threads, O, R, X, W, rows, h, eps, off)
}

// RMSNormBack launches rmsnorm_back for dx and, with dw, rmsnorm_dw (which
// does not read the weight, so needs no offset).
func (d *Device) RMSNormBack(dx, dw, x, w, rinv, dy accel.Buf, rows, h int, off float32) error {
	c := d.call(kRMSNormBack)
	c.dims("rows", rows, "h", h)
	tot := c.size(rows, h)
	wn := h
	if rows == 0 {
		wn = 0
	}
	DX, X, W := c.f("dx", dx, tot), c.f("x", x, tot), c.f("w", w, wn)
	R, DY := c.f("rinv", rinv, rows), c.f("dy", dy, tot)
	if dw == nil || c.err != nil {
		return c.launch(rows, 1, threads, DX, X, W, R, DY, rows, h, off)
	}
	// Both kernels' operands are checked before either launches.
	cw := d.call(kRMSNormDW)
	DW := cw.f("dw", dw, h)
	if cw.err != nil {
		return cw.err
	}
	if err := c.launch(rows, 1, threads, DX, X, W, R, DY, rows, h, off); err != nil {
		return err
	}
	return cw.launch(blocks(h), 1, threads, DW, X, R, DY, rows, h)
}

// EmbedBack runs one thread per column; it does not check the ids against
// the table (that would take a download), as Embed does not.
func (d *Device) EmbedBack(dtable, ids, dout accel.Buf, n, dim int) error {
	c := d.call(kEmbedBack)
	c.dims("n", n, "dim", dim)
	tot := c.size(n, dim)
	cols, tab := 0, 0
	if tot > 0 {
		cols, tab = dim, dim // at least one row
	}
	DT, I, DO := c.f("dtable", dtable, tab), c.i("ids", ids, n), c.f("dout", dout, tot)
	return c.launch(blocks(cols), 1, threads, DT, I, DO, n, dim)
}

func (d *Device) RoPE(y, x, cos, sin accel.Buf, rows, rowLen, seqLen, headDim int, back bool) error {
	c := d.call(kRoPE)
	c.dims("rows", rows, "rowLen", rowLen, "seqLen", seqLen, "headDim", headDim)
	if c.err == nil && rows > 0 && rowLen > 0 {
		switch {
		case headDim <= 0 || headDim%2 != 0:
			c.fail("headDim %d is not a positive even number", headDim)
		case rowLen%headDim != 0:
			c.fail("rowLen %d is not a multiple of headDim %d", rowLen, headDim)
		case seqLen <= 0:
			c.fail("seqLen %d ≤ 0", seqLen)
		}
	}
	tot := c.size(rows, rowLen)
	tab := 0
	if tot > 0 {
		tab = c.size(min(rows, seqLen), headDim) // positions 0…min(rows, seqLen)−1
	}
	Y, X := c.f("y", y, tot), c.f("x", x, tot)
	CS, SN := c.f("cos", cos, tab), c.f("sin", sin, tab)
	return c.launch(blocks(tot/2), 1, threads, Y, X, CS, SN, rows, rowLen, seqLen, headDim, back)
}

// attn checks an attention shape and returns the sizes of q (and out),
// of k (and v) and of p.
func (c *call) attn(a accel.Attn) (qn, kn, pn int) {
	c.dims("B", a.B, "T", a.T, "NH", a.NH, "NKV", a.NKV, "D", a.D)
	if c.err != nil || a.B == 0 || a.T == 0 {
		return 0, 0, 0
	}
	switch {
	case a.NH <= 0 || a.NKV <= 0 || a.D <= 0:
		c.fail("NH %d, NKV %d and D %d must be positive", a.NH, a.NKV, a.D)
	case a.NH%a.NKV != 0:
		c.fail("NH %d is not a multiple of NKV %d", a.NH, a.NKV)
	case a.Seg != nil && len(a.Seg) != c.size(a.B, a.T):
		c.fail("%d segment ids for B·T = %d tokens", len(a.Seg), c.size(a.B, a.T))
	case c.size(a.B, a.NH) > maxGridY:
		c.fail("B·NH = %d products exceed the grid's %d", c.size(a.B, a.NH), maxGridY)
	}
	if !c.grid((a.T+tile-1)/tile, (a.T+tile-1)/tile) {
		return 0, 0, 0
	}
	return c.size(a.B, a.T, a.NH, a.D), c.size(a.B, a.T, a.NKV, a.D), c.size(a.B, a.NH, a.T, a.T)
}

// operand is one matrix of a batched product: product z's matrix starts
// at p + (z/nh)·o + ((z%nh)/g)·i floats, rows ld apart (see sgemm_batched).
type operand struct {
	p           dptr
	ld, o, i, g int
}

// at is the operand moved by n floats.
func (x operand) at(n int) operand { x.p += dptr(4 * n); return x }

// batched launches sgemm_batched over nz products. d is locked and current.
func (d *Device) batched(ta, tb bool, m, n, k int, alpha float32, a, b operand, beta float32, c operand, nz, nh int) error {
	return d.runZ(kSgemmBatched, (n+tile-1)/tile, (m+tile-1)/tile, nz, threads, ta, tb, m, n, k, alpha,
		a.p, a.ld, b.p, b.ld, beta, c.p, c.ld, nh, a.o, a.i, a.g, b.o, b.i, b.g, c.o, c.i)
}

// rowBlocks is the grid of the one-warp-per-row kernels.
func rowBlocks(rows int) int { return (rows + threads/32 - 1) / (threads / 32) }

// attnScale is the factor of q·kᵀ: a.Scale, or 1/√D.
func attnScale(a accel.Attn) float32 {
	if a.Scale != 0 {
		return float32(a.Scale)
	}
	return float32(1 / math.Sqrt(float64(a.D)))
}

// segStarts returns the device copy of each token's first key within its
// segment (what kern.Attention's segStart computes per row), or 0 without
// segments. It uploads only when the segments changed since the last call:
// a step's layers all pass the same ones. d is locked and current; the
// copy on the default stream waits for the kernels that read the old one.
func (d *Device) segStarts(a accel.Attn) (dptr, error) {
	if a.Seg == nil {
		return 0, nil
	}
	st := make([]int32, len(a.Seg))
	for i := range st {
		if i%a.T > 0 && a.Seg[i] == a.Seg[i-1] {
			st[i] = st[i-1]
		} else {
			st[i] = int32(i % a.T)
		}
	}
	if d.seg != 0 && slices.Equal(st, d.segStart) {
		return d.seg, nil
	}
	if len(st) > d.segN {
		if d.seg != 0 {
			if err := cuMemFree(d.seg); err != nil {
				return 0, err
			}
			d.seg, d.segN, d.segStart = 0, 0, nil
		}
		p, err := cuMemAlloc(4 * len(st))
		if err != nil {
			return 0, fmt.Errorf("cuda: attention segments of %d tokens: %w", len(st), err)
		}
		d.seg, d.segN = p, len(st)
	}
	if err := cuMemcpyHtoD(d.seg, unsafe.Pointer(&st[0]), 4*len(st)); err != nil {
		return 0, err
	}
	d.segStart = st
	return d.seg, nil
}

// Attention is three launches: the scores S = Q·Kᵀ·scale of every batch
// and head into p, the masked softmax of p's rows in place (causal, the
// sliding window, the segments of packed rows), and out = P·V.
func (d *Device) Attention(out, p, q, k, v accel.Buf, a accel.Attn) error {
	c := &call{d: d, k: kSgemmBatched, name: "attention"}
	qn, kn, pn := c.attn(a)
	O, P := c.f("out", out, qn), c.f("p", p, pn)
	Q, K, V := c.f("q", q, qn), c.f("k", k, kn), c.f("v", v, kn)
	if qn == 0 || c.err != nil {
		return c.err
	}
	T, D, NH, G := a.T, a.D, a.NH, a.NH/a.NKV
	qw, kw, nz := NH*D, a.NKV*D, a.B*NH
	scale := attnScale(a)
	ps := operand{P, T, NH * T * T, T * T, 1}
	return d.do("attention", func() error {
		st, err := d.segStarts(a)
		if err != nil {
			return err
		}
		if err := d.batched(false, true, T, T, D, scale, operand{Q, qw, T * qw, D, 1}, operand{K, kw, T * kw, D, G}, 0, ps, nz, NH); err != nil {
			return err
		}
		if err := d.run(kSoftmaxCausal, rowBlocks(nz*T), 1, threads, P, nz*T, T, NH, max(a.Window, 0), st); err != nil {
			return err
		}
		return d.batched(false, false, T, D, T, 1, ps, operand{V, kw, T * kw, D, G}, 0, operand{O, qw, T * qw, D, 1}, nz, NH)
	})
}

// AttentionBack: dP = dO·Vᵀ into ds, dS = P⊙(dP − rowsum(dO⊙O)) in place,
// dQ = dS·K/√D, and per key/value head g the sums over its query heads
// dK = Σ dSᵀ·Q/√D and dV = Σ Pᵀ·dO, one accumulating launch per head of
// the group.
func (d *Device) AttentionBack(dq, dk, dv, ds, q, k, v, p, out, dout accel.Buf, a accel.Attn) error {
	c := &call{d: d, k: kSgemmBatched, name: "attention_back"}
	qn, kn, pn := c.attn(a)
	DQ, DK, DV, DS := c.f("dq", dq, qn), c.f("dk", dk, kn), c.f("dv", dv, kn), c.f("ds", ds, pn)
	Q, K, V, P := c.f("q", q, qn), c.f("k", k, kn), c.f("v", v, kn), c.f("p", p, pn)
	O, DO := c.f("out", out, qn), c.f("dout", dout, qn)
	if qn == 0 || c.err != nil {
		return c.err
	}
	T, D, NH, NKV, G := a.T, a.D, a.NH, a.NKV, a.NH/a.NKV
	qw, kw, nz := NH*D, NKV*D, a.B*NH
	scale := attnScale(a) // P holds the mask: masked entries are exact zeros
	dss := operand{DS, T, NH * T * T, T * T, 1}
	dos := operand{DO, qw, T * qw, D, 1}
	return d.do("attention_back", func() error {
		if err := d.batched(false, true, T, T, D, 1, dos, operand{V, kw, T * kw, D, G}, 0, dss, nz, NH); err != nil {
			return err
		}
		if err := d.run(kSoftmaxBack, rowBlocks(nz*T), 1, threads, DS, P, O, DO, nz*T, T, NH, D); err != nil {
			return err
		}
		if err := d.batched(false, false, T, D, T, scale, dss, operand{K, kw, T * kw, D, G}, 0, operand{DQ, qw, T * qw, D, 1}, nz, NH); err != nil {
			return err
		}
		// Over z = b·NKV + g: query head g·G + r of batch b.
		dsg := operand{DS, T, NH * T * T, G * T * T, 1}
		pg := operand{P, T, NH * T * T, G * T * T, 1}
		qg := operand{Q, qw, T * qw, G * D, 1}
		dog := operand{DO, qw, T * qw, G * D, 1}
		dks, dvs := operand{DK, kw, T * kw, D, 1}, operand{DV, kw, T * kw, D, 1}
		for r := range G {
			beta := float32(min(r, 1))
			if err := d.batched(true, false, T, D, T, scale, dsg.at(r*T*T), qg.at(r*D), beta, dks, a.B*NKV, NKV); err != nil {
				return err
			}
			if err := d.batched(true, false, T, D, T, 1, pg.at(r*T*T), dog.at(r*D), beta, dvs, a.B*NKV, NKV); err != nil {
				return err
			}
		}
		return nil
	})
}

func (d *Device) SwiGLU(y, sig, g, u accel.Buf, n int) error {
	c := d.call(kSwiGLU)
	c.dims("n", n)
	Y, S, G, U := c.f("y", y, n), c.f("sig", sig, n), c.f("g", g, n), c.f("u", u, n)
	return c.launch(blocks(n), 1, threads, Y, S, G, U, n)
}

func (d *Device) SwiGLUBack(dg, du, g, u, sig, dy accel.Buf, n int) error {
	c := d.call(kSwiGLUBack)
	c.dims("n", n)
	DG, DU, G, U := c.f("dg", dg, n), c.f("du", du, n), c.f("g", g, n), c.f("u", u, n)
	S, DY := c.f("sig", sig, n), c.f("dy", dy, n)
	return c.launch(blocks(n), 1, threads, DG, DU, G, U, S, DY, n)
}

func (d *Device) GeGLU(y, th, g, u accel.Buf, n int) error {
	c := d.call(kGeGLU)
	c.dims("n", n)
	Y, TH, G, U := c.f("y", y, n), c.f("th", th, n), c.f("g", g, n), c.f("u", u, n)
	return c.launch(blocks(n), 1, threads, Y, TH, G, U, n)
}

func (d *Device) GeGLUBack(dg, du, g, u, th, dy accel.Buf, n int) error {
	c := d.call(kGeGLUBack)
	c.dims("n", n)
	DG, DU, G, U := c.f("dg", dg, n), c.f("du", du, n), c.f("g", g, n), c.f("u", u, n)
	TH, DY := c.f("th", th, n), c.f("dy", dy, n)
	return c.launch(blocks(n), 1, threads, DG, DU, G, U, TH, DY, n)
}

func (d *Device) Scale(dst, x accel.Buf, n int, s float32) error {
	c := d.call(kScale)
	c.dims("n", n)
	D, X := c.f("dst", dst, n), c.f("x", x, n)
	return c.launch(blocks(n), 1, threads, D, X, n, s)
}

func (d *Device) Add(dst, a, b accel.Buf, n int) error {
	c := d.call(kAdd)
	c.dims("n", n)
	D, A, B := c.f("dst", dst, n), c.f("a", a, n), c.f("b", b, n)
	return c.launch(blocks(n), 1, threads, D, A, B, n)
}

func (d *Device) Mul(dst, a, m accel.Buf, n int, acc bool) error {
	c := d.call(kMul)
	c.dims("n", n)
	D, A, M := c.f("dst", dst, n), c.f("a", a, n), c.f("m", m, n)
	return c.launch(blocks(n), 1, threads, D, A, M, n, acc)
}

// CrossEntropy does not check the targets against vocab (that would take
// a download): a target ≥ vocab is the caller's bug, as on the host.
func (d *Device) CrossEntropy(dlogits, rowLoss, logits, targets accel.Buf, rows, vocab int, scale float32) error {
	c := d.call(kCrossEntropy)
	c.dims("rows", rows, "vocab", vocab)
	if c.err == nil && rows > 0 && vocab == 0 {
		c.fail("vocab is 0")
	}
	tot := c.size(rows, vocab)
	DL, RL := c.f("dlogits", dlogits, tot), c.f("rowLoss", rowLoss, rows)
	L, T := c.f("logits", logits, tot), c.i("targets", targets, rows)
	return c.launch(rows, 1, threads, DL, RL, L, T, rows, vocab, scale)
}

// Sum launches even for n = 0, like the host, which then stores 0.
func (d *Device) Sum(dst, x accel.Buf, n int) error {
	c := d.call(kSum)
	c.dims("n", n)
	D, X := c.f("dst", dst, 1), c.f("x", x, n)
	return c.launch(1, 1, 1024, D, X, n)
}

func (d *Device) AdamW(p, g, m, v accel.Buf, n int, h accel.AdamParams) error {
	c := d.call(kAdamW)
	c.dims("n", n)
	P, G, M, V := c.f("p", p, n), c.f("g", g, n), c.f("m", m, n), c.f("v", v, n)
	return c.launch(blocks(n), 1, threads, P, G, M, V, n, h.Beta1, h.Beta2, h.Eps, h.Step, h.Sq, h.Decay, h.GScale)
}

// ---- packed base weights ----

// DequantNF4 launches dequant_nf4, a thread per value.
func (d *Device) DequantNF4(out, codes, scales accel.Buf, n int) error {
	c := d.call(kDequantNF4)
	c.dims("n", n)
	O := c.f("out", out, n)
	C := c.u8("codes", codes, (n+1)/2)
	S := c.f("scales", scales, (n+quant.BlockSize-1)/quant.BlockSize)
	if c.err != nil {
		return c.err
	}
	return c.launch(blocks(n), 1, threads, O, C, S, n)
}

// WidenBF16 launches widen_bf16, a thread per value.
func (d *Device) WidenBF16(out, bits accel.Buf, n int) error {
	c := d.call(kWidenBF16)
	c.dims("n", n)
	O := c.f("out", out, n)
	B := c.u8("bits", bits, c.size(2, n))
	if c.err != nil {
		return c.err
	}
	return c.launch(blocks(n), 1, threads, O, B, n)
}
