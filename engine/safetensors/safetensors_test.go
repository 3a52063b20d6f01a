package safetensors

import (
	"encoding/binary"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.safetensors")

func TestRoundTripF32(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	a := []float32{1, -2.5, float32(math.Inf(1)), 3e-8}
	require.NoError(t, Write(path, []Tensor{F32Tensor("b", []int{2, 2}, a), F32Tensor("a", []int{1}, []float32{7})}, map[string]string{"format": "pt"}))
	f, err := ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, f.Names())
	got, shape, err := f.Float32("b")
	require.NoError(t, err)
	require.Equal(t, a, got)
	require.Equal(t, []int{2, 2}, shape)
	require.Equal(t, "pt", f.Metadata["format"])
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Zero(t, binary.LittleEndian.Uint64(raw)%8, "header padded to 8 bytes")

	// Overwriting goes through a rename and leaves no temporary files.
	require.NoError(t, Write(path, []Tensor{F32Tensor("c", []int{}, []float32{3})}, nil))
	f, err = ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, []string{"c"}, f.Names())
	require.Empty(t, f.Metadata)
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1)
}

func TestEncodeDeterministic(t *testing.T) {
	ts := []Tensor{
		F32Tensor("z", []int{2}, []float32{1, 2}),
		F32Tensor("a", []int{1}, []float32{3}),
		{Name: "m", DType: I64, Shape: []int{1}, Data: make([]byte, 8)},
	}
	one, err := Encode(ts, map[string]string{"b": "2", "a": "1"})
	require.NoError(t, err)
	rev := []Tensor{ts[2], ts[1], ts[0]}
	two, err := Encode(rev, map[string]string{"a": "1", "b": "2"})
	require.NoError(t, err)
	require.Equal(t, one, two, "input order does not change the bytes")
	f, err := Parse(one)
	require.NoError(t, err)
	// Data laid out in name order: a, m, z.
	a, _ := f.Tensor("a")
	m, _ := f.Tensor("m")
	z, _ := f.Tensor("z")
	require.Len(t, f.Tensors(), 3)
	buf := one[8+binary.LittleEndian.Uint64(one):]
	require.Equal(t, append(append(append([]byte{}, a.Data...), m.Data...), z.Data...), buf)
	require.Equal(t, F32Tensor("a", []int{1}, []float32{3}).Data, buf[:4])
}

func halfBytes(hs ...uint16) []byte {
	b := make([]byte, 2*len(hs))
	for i, h := range hs {
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

func TestFloatDecoding(t *testing.T) {
	f64 := make([]byte, 16)
	binary.LittleEndian.PutUint64(f64, math.Float64bits(0.1))
	binary.LittleEndian.PutUint64(f64[8:], math.Float64bits(-1e300))
	for _, tc := range []struct {
		name  string
		dtype DType
		data  []byte
		want  []float32
	}{
		{"f16 normal", F16, halfBytes(0x3c00, 0xc100, 0x7bff, 0x3555), []float32{1, -2.5, 65504, 0.33325195}},
		{"f16 subnormal", F16, halfBytes(0x0001, 0x03ff, 0x8001), []float32{float32(math.Ldexp(1, -24)), float32(math.Ldexp(1023, -24)), -float32(math.Ldexp(1, -24))}},
		{"f16 zero and inf", F16, halfBytes(0x0000, 0x8000, 0x7c00, 0xfc00), []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1))}},
		{"bf16", BF16, halfBytes(0x3f80, 0xc020, 0x4049, 0x0001), []float32{1, -2.5, 3.140625, math.Float32frombits(0x00010000)}},
		{"f64 rounds to nearest", F64, f64, []float32{0.1, float32(math.Inf(-1))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shape := []int{len(tc.want)}
			img, err := Encode([]Tensor{{Name: "x", DType: tc.dtype, Shape: shape, Data: tc.data}}, nil)
			require.NoError(t, err)
			f, err := Parse(img)
			require.NoError(t, err)
			got, gotShape, err := f.Float32("x")
			require.NoError(t, err)
			require.Equal(t, shape, gotShape)
			require.Len(t, got, len(tc.want))
			for i := range got {
				require.Equal(t, math.Float32bits(tc.want[i]), math.Float32bits(got[i]), "element %d: got %g want %g", i, got[i], tc.want[i])
			}
			// Reader decodes any range of the same values.
			path := filepath.Join(t.TempDir(), "x.safetensors")
			require.NoError(t, os.WriteFile(path, img, 0o644))
			r, err := Open(path)
			require.NoError(t, err)
			defer r.Close()
			dt, rs, ok := r.Info("x")
			require.True(t, ok)
			require.Equal(t, tc.dtype, dt)
			require.Equal(t, shape, rs)
			for off := range got {
				part := make([]float32, len(got)-off)
				require.NoError(t, r.Float32At("x", off, part))
				for i := range part {
					require.Equal(t, math.Float32bits(got[off+i]), math.Float32bits(part[i]), "Float32At(%d) element %d", off, i)
				}
			}
			require.ErrorContains(t, r.Float32At("x", 1, make([]float32, len(got))), "outside")
		})
	}
	nan := HalfToFloat32(0x7e00)
	require.True(t, math.IsNaN(float64(nan)))
}

func TestFloat32Errors(t *testing.T) {
	img, err := Encode([]Tensor{{Name: "ids", DType: I32, Shape: []int{1}, Data: make([]byte, 4)}}, nil)
	require.NoError(t, err)
	f, err := Parse(img)
	require.NoError(t, err)
	_, _, err = f.Float32("ids")
	require.ErrorContains(t, err, "ids has dtype I32")
	_, _, err = f.Float32("nope")
	require.ErrorContains(t, err, "nope not found")
}

// image builds a file from a raw header and data zero bytes.
func image(header string, data int) []byte {
	b := make([]byte, 8, 8+len(header)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	return append(append(b, header...), make([]byte, data)...)
}

func withLength(n uint64, b []byte) []byte {
	out := append([]byte{}, b...)
	binary.LittleEndian.PutUint64(out, n)
	return out
}

func TestParseRejects(t *testing.T) {
	const a = `"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}`
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"short", []byte{1, 2}, "no header length"},
		{"header past file", withLength(100, image("{}", 0)), "exceeds the file"},
		{"header over limit", withLength(MaxHeader+1, image("{}", 0)), "exceeds the 104857600-byte limit"},
		{"empty header", image("", 0), "not valid JSON"},
		{"bad json", image("{nope", 0), "not valid JSON"},
		{"not an object", image(`[1,2]`, 0), "not a JSON object"},
		{"two objects", image(`{} {}`, 0), "data after the object"},
		{"unknown dtype", image(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}`, 4), `tensor a: unknown dtype "Q7"`},
		{"missing shape", image(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, 4), "tensor a: missing shape"},
		{"negative dim", image(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), "tensor a: negative dimension"},
		{"shape overflow", image(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}`, 4), "tensor a: shape [4611686018427387904 4] is too large"},
		{"wrong size", image(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "tensor a: data_offsets span 4 bytes, but F32[2] needs 8"},
		{"one offset", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}`, 4), "tensor a: data_offsets must hold two numbers"},
		{"out of range", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 4), "tensor a: data_offsets [4, 8] outside"},
		{"reversed", image(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), "tensor a: data_offsets [4, 0] outside"},
		{"negative offset", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, 4), "outside"},
		{"overlap", image(`{`+a+`,"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), "overlap the tensor before it"},
		{"gap", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "tensor a: gap of 4 bytes"},
		{"trailing", image(`{`+a+`}`, 8), "4 trailing bytes"},
		{"duplicate", image(`{`+a+`,`+a+`}`, 4), `duplicate tensor name "a"`},
		{"bad metadata", image(`{"__metadata__":{"k":1}}`, 0), "__metadata__ must map strings to strings"},
		{"bad entry", image(`{"a":[1]}`, 0), "tensor a:"},
		{"empty name", image(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), "empty tensor name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.img)
			require.Error(t, err)
			require.ErrorContains(t, err, tc.want)
			// Open validates the same header against the file's size.
			path := filepath.Join(t.TempDir(), "x.safetensors")
			require.NoError(t, os.WriteFile(path, tc.img, 0o644))
			_, err = Open(path)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, path)
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		img   []byte
		names []string
	}{
		{"empty", image(`{}`, 0), []string{}},
		{"null metadata", image(`{"__metadata__":null}`, 0), []string{}},
		{"padded", image(`{"a":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}      `, 1), []string{"a"}},
		{"zero-size tensor", image(`{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}}`, 2), []string{"a", "e"}},
		{"out of order", image(`{"b":{"dtype":"I16","shape":[1],"data_offsets":[0,2]},"a":{"dtype":"I16","shape":[1],"data_offsets":[2,4]}}`, 4), []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.img)
			require.NoError(t, err)
			require.Equal(t, tc.names, f.Names())
			require.NotNil(t, f.Metadata)
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   []Tensor
		want string
	}{
		{"duplicate", []Tensor{F32Tensor("w", []int{1}, []float32{1}), F32Tensor("w", []int{1}, []float32{2})}, "duplicate tensor w"},
		{"unknown dtype", []Tensor{{Name: "w", DType: "F8", Shape: []int{1}, Data: []byte{0}}}, `tensor w: unknown dtype "F8"`},
		{"size mismatch", []Tensor{F32Tensor("w", []int{3}, []float32{1, 2})}, "tensor w: 8 bytes of data, but F32[3] needs 12"},
		{"negative dims", []Tensor{{Name: "w", DType: U8, Shape: []int{-1, -2}, Data: []byte{0, 0}}}, "tensor w: negative dimension"},
		{"empty name", []Tensor{F32Tensor("", []int{1}, []float32{1})}, `invalid tensor name ""`},
		{"reserved name", []Tensor{F32Tensor("__metadata__", []int{1}, []float32{1})}, "invalid tensor name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(tc.ts, nil)
			require.ErrorContains(t, err, tc.want)
			path := filepath.Join(t.TempDir(), "x.safetensors")
			err = Write(path, tc.ts, nil)
			require.ErrorContains(t, err, path)
			_, statErr := os.Stat(path)
			require.True(t, os.IsNotExist(statErr), "a failed write leaves no file")
		})
	}
}

func TestReadFileErrors(t *testing.T) {
	_, err := ReadFile("/nonexistent/x.safetensors")
	require.ErrorContains(t, err, "/nonexistent/x.safetensors")
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	require.NoError(t, os.WriteFile(bad, image(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}`, 4), 0o644))
	_, err = ReadFile(bad)
	require.ErrorContains(t, err, bad)
	require.ErrorContains(t, err, "tensor a")
}

// goldenTensors is the content of testdata/golden.safetensors.
func goldenTensors() ([]Tensor, map[string]string) {
	i64 := make([]byte, 16)
	binary.LittleEndian.PutUint64(i64, 7)
	binary.LittleEndian.PutUint64(i64[8:], math.MaxUint64) // -1
	return []Tensor{
		F32Tensor("weight", []int{2, 3}, []float32{1, 2, 3, -4, 0.5, -0.25}),
		{Name: "half", DType: F16, Shape: []int{3}, Data: halfBytes(0x3c00, 0xc100, 0x7bff)},
		{Name: "brain", DType: BF16, Shape: []int{2}, Data: halfBytes(0x3f80, 0xc020)},
		{Name: "ids", DType: I64, Shape: []int{2}, Data: i64},
	}, map[string]string{"format": "pt", "note": "<golden & stable>"}
}

func TestGolden(t *testing.T) {
	path := filepath.Join("testdata", "golden.safetensors")
	ts, meta := goldenTensors()
	if *update {
		require.NoError(t, Write(path, ts, meta))
	}
	img, err := Encode(ts, meta)
	require.NoError(t, err)
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -run TestGolden -update to create it")
	require.Equal(t, want, img, "encoding changed; the bytes must be stable")

	// The header, spelled out: sorted keys, name-ordered layout, no HTML
	// escaping, space padding to 8 bytes.
	n := binary.LittleEndian.Uint64(want)
	header := string(want[8 : 8+n])
	require.Equal(t, `{"__metadata__":{"format":"pt","note":"<golden & stable>"},`+
		`"brain":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},`+
		`"half":{"dtype":"F16","shape":[3],"data_offsets":[4,10]},`+
		`"ids":{"dtype":"I64","shape":[2],"data_offsets":[10,26]},`+
		`"weight":{"dtype":"F32","shape":[2,3],"data_offsets":[26,50]}}`, strings.TrimRight(header, " "))
	require.Zero(t, n%8)
	require.Equal(t, 8+int(n)+50, len(want))

	f, err := ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, meta, f.Metadata)
	w, shape, err := f.Float32("weight")
	require.NoError(t, err)
	require.Equal(t, []int{2, 3}, shape)
	require.Equal(t, []float32{1, 2, 3, -4, 0.5, -0.25}, w)
	h, _, err := f.Float32("half")
	require.NoError(t, err)
	require.Equal(t, []float32{1, -2.5, 65504}, h)
	ids, ok := f.Tensor("ids")
	require.True(t, ok)
	require.Equal(t, int64(-1), int64(binary.LittleEndian.Uint64(ids.Data[8:])))
}

// FuzzRead checks that Parse never panics and that whatever it accepts
// survives an Encode/Parse round trip unchanged.
func FuzzRead(f *testing.F) {
	good, err := Encode([]Tensor{F32Tensor("w", []int{2}, []float32{1, 2})}, map[string]string{"k": "v"})
	require.NoError(f, err)
	f.Add(good)
	f.Add(image(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}`, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		for _, n := range file.Names() {
			if _, _, err := file.Float32(n); err != nil {
				tn, _ := file.Tensor(n)
				switch tn.DType {
				case F32, F16, BF16, F64:
					t.Fatalf("float tensor %s: %v", n, err)
				}
			}
		}
		again, err := Encode(file.Tensors(), file.Metadata)
		if err != nil {
			t.Fatalf("re-encode accepted file: %v", err)
		}
		back, err := Parse(again)
		if err != nil {
			t.Fatalf("parse re-encoded file: %v", err)
		}
		require.Equal(t, file.Tensors(), back.Tensors())
		require.Equal(t, file.Metadata, back.Metadata)
	})
}
