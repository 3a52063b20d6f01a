package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"strings"
	"testing"
)

func TestTensorRoundTrip(t *testing.T) {
	tests := []Tensor{
		{Name: "scalar", Shape: []int{}, Data: []float32{3.5}},
		{Name: "vector", Shape: []int{3}, Data: []float32{1, -2, float32(math.Inf(1))}},
		testTensor("matrix", 4, 5),
		{Name: "empty", Shape: []int{0, 7}, Data: []float32{}},
		testTensor("rank8", 1, 2, 1, 2, 1, 2, 1, 2),
		{Name: "nan", Shape: []int{1}, Data: []float32{float32(math.NaN())}},
	}
	for _, in := range tests {
		t.Run(in.Name, func(t *testing.T) {
			b, err := encodeTensor(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := decodeTensor(b)
			if err != nil {
				t.Fatal(err)
			}
			out.Name = in.Name
			if !sameTensors([]Tensor{in}, []Tensor{out}) {
				t.Errorf("got %+v, want %+v", out, in)
			}
		})
	}
}

func TestEncodeTensorRejects(t *testing.T) {
	tests := []struct {
		in   Tensor
		want string
	}{
		{Tensor{Name: "short", Shape: []int{2, 2}, Data: []float32{1}}, "needs 4 values, have 1"},
		{Tensor{Name: "neg", Shape: []int{-1}, Data: nil}, "negative"},
		{Tensor{Name: "rank", Shape: make([]int, 9)}, "rank 9"},
	}
	for _, tt := range tests {
		t.Run(tt.in.Name, func(t *testing.T) {
			_, err := encodeTensor(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.in.Name) {
				t.Errorf("encodeTensor = %v, want an error naming %q saying %q", err, tt.in.Name, tt.want)
			}
		})
	}
}

// Every single flipped byte and every truncation is caught.
func TestDecodeTensorDetectsDamage(t *testing.T) {
	good, err := encodeTensor(testTensor("w", 3, 5))
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		if _, err := decodeTensor(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("flipped byte %d: err = %v", i, err)
		}
	}
	for n := range len(good) {
		if _, err := decodeTensor(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d bytes: err = %v", n, err)
		}
	}
	if _, err := decodeTensor(append(bytes.Clone(good), 0, 0, 0, 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("extended: err = %v", err)
	}
}

// withChecksum fixes up the checksum of a hand-made record, so the test
// reaches the checks after it.
func withChecksum(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[8:], tensorChecksum(b))
	return b
}

func TestDecodeTensorRejectsHugeShapes(t *testing.T) {
	header := func(dims ...uint64) []byte {
		b := make([]byte, tensorFixedLen+8*len(dims))
		copy(b, tensorMagic)
		b[4], b[5], b[6] = tensorVersion, dtypeF32, byte(len(dims))
		for i, d := range dims {
			binary.LittleEndian.PutUint64(b[tensorFixedLen+8*i:], d)
		}
		return b
	}
	tests := map[string][]byte{
		"one huge dim":      withChecksum(header(1 << 62)),
		"overflowing dims":  withChecksum(header(1<<32, 1<<32, 1<<32)),
		"big but in int32":  withChecksum(header(1<<30, 1<<30)),
		"claims 8 has 4":    withChecksum(append(header(2), 0, 0, 0, 0)),
		"rank over the max": withChecksum(append(header(), make([]byte, 8*9)...)),
	}
	tests["rank over the max"][6] = 9
	withChecksum(tests["rank over the max"])
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := decodeTensor(b)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v", err)
			}
			// The error message allocates a little; a buffer for the
			// declared shape would be gigabytes.
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Errorf("rejecting a bad header allocated %d bytes", n)
			}
		})
	}
}

// FuzzDecodeTensor checks that the decoder never panics, and that whatever
// it accepts re-encodes to the same bytes (the format has one encoding).
func FuzzDecodeTensor(f *testing.F) {
	for _, t := range []Tensor{testTensor("a", 2, 3), {Shape: []int{}, Data: []float32{1}}, {Shape: []int{0}, Data: []float32{}}} {
		b, err := encodeTensor(t)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte(tensorMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		tn, err := decodeTensor(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		again, err := encodeTensor(tn)
		if err != nil {
			t.Fatalf("decoded tensor does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, again)
		}
	})
}
