package safetensors

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRoundTrip(t *testing.T) {
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
	raw, _ := os.ReadFile(path)
	require.Zero(t, binary.LittleEndian.Uint64(raw)%8, "header padded to 8 bytes")
}

func TestHalfFormats(t *testing.T) {
	f16 := []uint16{0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00}
	want := []float32{1, -2.5, 65504, float32(math.Ldexp(1, -24)), float32(math.Inf(1))}
	b := make([]byte, 2*len(f16))
	for i, h := range f16 {
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	bf := make([]byte, 4)
	binary.LittleEndian.PutUint16(bf, 0x3f80)     // 1.0
	binary.LittleEndian.PutUint16(bf[2:], 0xc020) // -2.5
	img, err := Encode([]Tensor{{Name: "h", DType: "F16", Shape: []int{5}, Data: b}, {Name: "bf", DType: "BF16", Shape: []int{2}, Data: bf}}, nil)
	require.NoError(t, err)
	f, err := Parse(img)
	require.NoError(t, err)
	got, _, err := f.Float32("h")
	require.NoError(t, err)
	require.Equal(t, want, got)
	got, _, err = f.Float32("bf")
	require.NoError(t, err)
	require.Equal(t, []float32{1, -2.5}, got)
}

func image(header string, data int) []byte {
	b := make([]byte, 8, 8+len(header)+data)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	return append(append(b, header...), make([]byte, data)...)
}

func TestBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"short", []byte{1, 2}, "no header length"},
		{"huge header", image("{}", 0)[:8], "header length"},
		{"bad json", image("{nope", 0), "not valid JSON"},
		{"dtype", image(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}`, 4), "unknown dtype"},
		{"negative dim", image(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), "negative dimension"},
		{"wrong size", image(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 4), "needs 8"},
		{"out of range", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 4), "outside"},
		{"overlap", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), "overlaps"},
		{"trailing", image(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "trailing"},
		{"huge shape", image(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}`, 4), "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img
			if tc.name == "huge header" {
				binary.LittleEndian.PutUint64(img, 1<<40)
			}
			_, err := Parse(img)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := ReadFile("/nonexistent/x.safetensors")
	require.ErrorContains(t, err, "/nonexistent/x.safetensors")
}

func FuzzParse(f *testing.F) {
	good, _ := Encode([]Tensor{F32Tensor("w", []int{2}, []float32{1, 2})}, map[string]string{"k": "v"})
	f.Add(good)
	f.Add(image(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}`, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		for _, n := range file.Names() {
			file.Float32(n)
		}
	})
}
