package quant

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"lens/engine/safetensors"
)

const python = "/usr/bin/python3"

func torchDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "torchref")
}

func needTorch(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PyTorch reference unavailable in CI: %v", err)
		}
		t.Skipf("PyTorch reference unavailable (%v): apt-get install python3-torch python3-numpy libopenblas0-pthread", err)
	}
}

// TestCodeBook checks the code book's published shape: 16 ascending values
// from -1 to 1 with an exact zero at index 7, and that each decision
// threshold is the float32 midpoint of its neighbours (so the tree picks
// the nearest entry).
func TestCodeBook(t *testing.T) {
	if NF4[0] != -1 || NF4[15] != 1 || NF4[7] != 0 {
		t.Fatalf("ends/zero: %v", NF4)
	}
	for i := 1; i < 16; i++ {
		if NF4[i] <= NF4[i-1] {
			t.Fatalf("not ascending at %d", i)
		}
		mid := (float64(NF4[i-1]) + float64(NF4[i])) / 2
		if d := math.Abs(float64(nf4Mid[i-1]) - mid); d > 1e-7 {
			t.Errorf("threshold %d = %v, midpoint %v", i-1, nf4Mid[i-1], mid)
		}
		if nf4Code(NF4[i]) != byte(i) || nf4Code(NF4[i-1]) != byte(i-1) {
			t.Errorf("entry %d does not quantize to itself", i)
		}
	}
}

func randn(r *rand.Rand, n int, s float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * s)
	}
	return x
}

// TestRoundTrip bounds the dequantization error of each value by half the
// widest code-book gap times its block's absmax, and checks the packing.
func TestRoundTrip(t *testing.T) {
	var gap float32
	for i := 1; i < 16; i++ {
		gap = max(gap, NF4[i]-NF4[i-1])
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name   string
		shape  []int
		double bool
	}{
		{"64x128", []int{64, 128}, false},
		{"odd 7x9", []int{7, 9}, false},
		{"double 96x160", []int{96, 160}, true},
		{"double odd 33x70", []int{33, 70}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.shape[0] * tc.shape[1]
			x := randn(r, n, 0.5)
			q, err := QuantizeNF4(x, tc.shape, tc.double)
			if err != nil {
				t.Fatal(err)
			}
			if len(q.Codes) != (n+1)/2 {
				t.Fatalf("%d code bytes, want %d", len(q.Codes), (n+1)/2)
			}
			if nf4Code(x[0]/q.Scales()[0]) != q.Codes[0]>>4 && !tc.double {
				t.Errorf("first value is not in the high nibble")
			}
			y := make([]float32, n)
			q.Dequantize(y)
			sc := q.Scales()
			var sse, ssx float64
			for i := range x {
				s := sc[i/BlockSize]
				// Nested scales are themselves approximate: allow their error.
				tol := float64(gap/2*s) * 1.0001
				if tc.double {
					tol = float64(gap/2*s)*1.0001 + math.Abs(float64(s-exactAbsmax(x, i)))
				}
				if d := math.Abs(float64(y[i] - x[i])); d > tol {
					t.Fatalf("value %d: |%v-%v| = %v > %v", i, y[i], x[i], d, tol)
				}
				sse += float64(y[i]-x[i]) * float64(y[i]-x[i])
				ssx += float64(x[i]) * float64(x[i])
			}
			if rel := math.Sqrt(sse / ssx); rel > 0.12 {
				t.Errorf("relative RMS error %.4f, NF4 on Gaussian data gives under 0.12", rel)
			}
		})
	}
	if _, err := QuantizeNF4(make([]float32, 5), []int{2, 3}, false); err == nil {
		t.Error("shape/length mismatch accepted")
	}
}

func exactAbsmax(x []float32, i int) float32 {
	lo := i / BlockSize * BlockSize
	var m float32
	for _, v := range x[lo:min(lo+BlockSize, len(x))] {
		m = max(m, float32(math.Abs(float64(v))))
	}
	return m * (1 + 1e-3)
}

// TestMatchesTorch quantizes the same tensors here and in
// testdata/torchref/nf4_ref.py (plain PyTorch, bitsandbytes' semantics)
// and requires identical codes, scales and dequantized values, with and
// without double quantization.
func TestMatchesTorch(t *testing.T) {
	needTorch(t)
	r := rand.New(rand.NewPCG(3, 4))
	dir := t.TempDir()
	in := map[string][]int{"w": {96, 192}, "odd": {5, 77}, "long": {300, 64}, "zeros": {2, 64}}
	data := map[string][]float32{}
	var ts []safetensors.Tensor
	for name, shape := range in {
		x := randn(r, shape[0]*shape[1], 0.2)
		if name == "zeros" {
			clear(x[:64]) // a block of zeros: absmax 0
		}
		data[name] = x
		ts = append(ts, safetensors.F32Tensor(name, shape, x))
	}
	inPath, outPath := filepath.Join(dir, "in.safetensors"), filepath.Join(dir, "out.safetensors")
	if err := safetensors.Write(inPath, ts, nil); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, filepath.Join(torchDir(), "nf4_ref.py"), "--in", inPath, "--out", outPath, "--double")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nf4_ref.py: %v\n%s", err, b)
	}
	ref, err := safetensors.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	f32 := func(name string) []float32 {
		v, _, err := ref.Float32(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return v
	}
	i32 := func(name string) []int32 {
		tt, ok := ref.Tensor(name)
		if !ok || tt.DType != safetensors.I32 {
			t.Fatalf("%s: missing or not I32", name)
		}
		out := make([]int32, len(tt.Data)/4)
		for i := range out {
			out[i] = int32(binary.LittleEndian.Uint32(tt.Data[4*i:]))
		}
		return out
	}
	bitEq := func(what string, a, b []float32) {
		t.Helper()
		if len(a) != len(b) {
			t.Fatalf("%s: %d values, reference %d", what, len(a), len(b))
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) && !(a[i] == 0 && b[i] == 0) {
				t.Fatalf("%s[%d] = %v, reference %v", what, i, a[i], b[i])
			}
		}
	}
	bitEq("nf4 code book", NF4[:], f32("nf4"))
	dm := DynamicMap()
	bitEq("dynamic map", dm[:], f32("dynamic"))
	for name, shape := range in {
		for _, double := range []bool{false, true} {
			q, err := QuantizeNF4(data[name], shape, double)
			if err != nil {
				t.Fatal(err)
			}
			codes := i32(name + ".codes")
			if len(codes) != len(q.Codes) {
				t.Fatalf("%s: %d code bytes, reference %d", name, len(q.Codes), len(codes))
			}
			for i, c := range codes {
				if byte(c) != q.Codes[i] {
					t.Fatalf("%s: code byte %d = %#x, reference %#x", name, i, q.Codes[i], c)
				}
			}
			y := make([]float32, q.Len())
			q.Dequantize(y)
			if !double {
				bitEq(name+".absmax", q.Absmax, f32(name+".absmax"))
				bitEq(name+".dequant", y, f32(name+".dequant"))
				continue
			}
			for i, c := range i32(name + ".qabsmax") {
				if byte(c) != q.Nested.Q[i] {
					t.Fatalf("%s: nested code %d = %d, reference %d", name, i, q.Nested.Q[i], c)
				}
			}
			bitEq(name+".absmax2", q.Nested.Absmax, f32(name+".absmax2"))
			bitEq(name+".offset", []float32{q.Nested.Offset}, f32(name+".offset"))
			bitEq(name+".dequant_dq", y, f32(name+".dequant_dq"))
		}
	}
}

// TestBF16 rounds to nearest even (ties included) and keeps values that
// are already bf16 exactly.
func TestBF16(t *testing.T) {
	for _, tc := range []struct {
		in   uint32
		want uint16
	}{
		{0x3F800000, 0x3F80}, // 1
		{0x3F808000, 0x3F80}, // tie, even stays
		{0x3F818000, 0x3F82}, // tie, odd rounds up
		{0x3F808001, 0x3F81}, // above the tie
		{0xBF80FFFF, 0xBF81}, // negative rounds away in magnitude
		{0x7F7FFFFF, 0x7F80}, // max float rounds to +Inf, as torch does
	} {
		b, err := ToBF16([]float32{math.Float32frombits(tc.in)}, []int{1})
		if err != nil {
			t.Fatal(err)
		}
		if b.Bits[0] != tc.want {
			t.Errorf("%#x → %#x, want %#x", tc.in, b.Bits[0], tc.want)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	x := randn(r, 256, 1)
	for i := range x {
		x[i] = math.Float32frombits(math.Float32bits(x[i]) &^ 0xFFFF)
	}
	b, _ := ToBF16(x, []int{16, 16})
	y := make([]float32, len(x))
	b.Widen(y)
	for i := range x {
		if x[i] != y[i] {
			t.Fatalf("bf16 value %v came back as %v", x[i], y[i])
		}
	}
}

// TestNF4Slabs checks that WidenRows and WidenCols give exactly the bits
// Dequantize gives those rows and columns, with plain and nested scales,
// for rows that are and are not whole blocks and slabs that cut blocks.
func TestNF4Slabs(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, tc := range []struct {
		out, in int
		double  bool
	}{
		{12, 128, false}, {12, 128, true}, {7, 37, false}, {9, 200, true}, {1, 5, false},
	} {
		x := make([]float32, tc.out*tc.in)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		q, err := QuantizeNF4(x, []int{tc.out, tc.in}, tc.double)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, len(x))
		q.Dequantize(want)
		for _, r := range [][2]int{{0, tc.out}, {0, 1}, {tc.out / 2, tc.out}, {tc.out - 1, tc.out}} {
			got := make([]float32, (r[1]-r[0])*tc.in)
			q.WidenRows(r[0], r[1], got)
			for i, v := range got {
				if w := want[r[0]*tc.in+i]; math.Float32bits(v) != math.Float32bits(w) {
					t.Fatalf("%+v: rows %v: value %d = %v, want %v", tc, r, i, v, w)
				}
			}
		}
		for _, c := range [][2]int{{0, tc.in}, {0, 1}, {tc.in / 3, tc.in/3 + 70}, {tc.in - 3, tc.in}} {
			c[1] = min(c[1], tc.in)
			w := c[1] - c[0]
			got := make([]float32, tc.out*w)
			q.WidenCols(c[0], c[1], got)
			for r := range tc.out {
				for j := range w {
					if v, u := got[r*w+j], want[r*tc.in+c[0]+j]; math.Float32bits(v) != math.Float32bits(u) {
						t.Fatalf("%+v: columns %v: [%d,%d] = %v, want %v", tc, c, r, j, v, u)
					}
				}
			}
		}
	}
}
