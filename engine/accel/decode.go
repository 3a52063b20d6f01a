package accel

// CacheAttn is the shape of an attention of M new query rows, at positions
// Pos…Pos+M−1 of one sequence, against a key/value cache that already
// holds their keys and values: positions 0…Pos+M−1, rows of NKV·D.
// Window and Scale are Attn's: a positive Window is a sliding window (a
// query sees itself and the Window−1 positions before it), Scale the
// factor of q·kᵀ (0: 1/√D).
type CacheAttn struct {
	M, Pos, NH, NKV, D int
	Window             int
	Scale              float64
}

// L is the number of cached positions the queries see: Pos+M.
func (a CacheAttn) L() int { return a.Pos + a.M }

// Decoder holds the kernels decoding needs beyond Kernels (engine/generate
// runs prefill and each decode step on a device through them): the cache
// lives in device buffers, so new rows are copied into it at an offset,
// and the new queries attend to all of it. A Device that implements
// Decoder can decode; Host and the CUDA backend do.
type Decoder interface {
	// Copy sets dst[dstOff:dstOff+n] = src[srcOff:srcOff+n]: new keys and
	// values into the cache, a position's rows of the RoPE tables, the
	// last hidden row.
	Copy(dst Buf, dstOff int, src Buf, srcOff, n int) error
	// CachedAttention sets out (M×NH·D) = softmax(q·kᵀ·scale + mask)·v for
	// the M query rows q (M×NH·D) at positions a.Pos…, against the first
	// a.L() rows of the caches k and v (rows of NKV·D; query head h reads
	// key/value head h/(NH/NKV), as HF's repeat_kv). Query i sees
	// positions 0…Pos+i, the last a.Window of them with a window. p is
	// scratch for the probabilities, NH×M×L().
	CachedAttention(out, p, q, k, v Buf, a CacheAttn) error
}
