// Package safetensors reads and writes the safetensors format: an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Reading validates
// everything the header claims before any tensor is used; writing is
// deterministic (tensors sorted by name) and atomic.
package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// DType is a safetensors element type, spelled as in the header.
type DType string

// The dtypes this package knows.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// dtypeSize is the element size in bytes of each known dtype.
var dtypeSize = map[DType]int{
	F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, Bool: 1,
}

// Size is the element size of d in bytes, and whether d is known.
func (d DType) Size() (int, bool) {
	n, ok := dtypeSize[d]
	return n, ok
}

// MaxHeader bounds the JSON header, so a corrupt length cannot make a
// reader allocate without limit.
const MaxHeader = 100 << 20

// metadataKey is the reserved header key holding string metadata.
const metadataKey = "__metadata__"

// Tensor is one tensor's raw little-endian, row-major bytes.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// File is a parsed safetensors file. Tensor data aliases the parsed image.
type File struct {
	Metadata map[string]string
	tensors  map[string]Tensor
}

type headerEntry struct {
	DType   DType   `json:"dtype"`
	Shape   []int   `json:"shape"`
	Offsets []int64 `json:"data_offsets"`
}

// ReadFile reads and validates the file at path. Errors name the path.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: read: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// numel is the element count of shape, or an error for a negative
// dimension or a byte size (count × elem) that overflows int64.
func numel(shape []int, elem int) (int64, error) {
	count := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d > 0 && count > math.MaxInt64/int64(d)/int64(elem) {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		count *= int64(d)
	}
	return count, nil
}

// headerObject decodes the top-level JSON object of a header, keeping the
// order of keys and rejecting duplicates (which encoding/json would
// silently merge).
func headerObject(h []byte) ([]string, map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(h))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("header is not valid JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("header is not a JSON object")
	}
	var keys []string
	vals := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header is not valid JSON: %w", err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("header is not valid JSON: key %v", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("header is not valid JSON: value of %q: %w", key, err)
		}
		if _, dup := vals[key]; dup {
			return nil, nil, fmt.Errorf("duplicate tensor name %q in header", key)
		}
		keys = append(keys, key)
		vals[key] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, fmt.Errorf("header is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("header is not valid JSON: data after the object")
	}
	return keys, vals, nil
}

// Parse validates and decodes a safetensors image. The returned tensors'
// Data slices alias b.
func Parse(b []byte) (*File, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("safetensors: file of %d bytes has no header length", len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > MaxHeader {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the %d-byte limit", n, MaxHeader)
	}
	if n > uint64(len(b)-8) {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the file (%d bytes)", n, len(b))
	}
	buf := b[8+n:]
	meta, spans, err := parseHeader(b[8:8+n], int64(len(buf)))
	if err != nil {
		return nil, err
	}
	f := &File{Metadata: meta, tensors: make(map[string]Tensor, len(spans))}
	for _, s := range spans {
		f.tensors[s.Name] = Tensor{Name: s.Name, DType: s.DType, Shape: s.Shape, Data: buf[s.Begin:s.End:s.End]}
	}
	return f, nil
}

// span is one tensor's header entry: its bytes are [Begin, End) of the
// data buffer.
type span struct {
	Name       string
	DType      DType
	Shape      []int
	Begin, End int64
}

// parseHeader validates a JSON header against a data buffer of dataLen
// bytes: known dtypes, shapes matching byte ranges, and ranges that tile
// the buffer exactly.
func parseHeader(hdr []byte, dataLen int64) (map[string]string, []span, error) {
	keys, raw, err := headerObject(hdr)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	meta := map[string]string{}
	var spans []span
	for _, name := range keys {
		v := raw[name]
		if name == metadataKey {
			if err := json.Unmarshal(v, &meta); err != nil {
				return nil, nil, fmt.Errorf("safetensors: %s must map strings to strings: %w", metadataKey, err)
			}
			if meta == nil { // "__metadata__": null
				meta = map[string]string{}
			}
			continue
		}
		if name == "" {
			return nil, nil, fmt.Errorf("safetensors: empty tensor name in header")
		}
		var e headerEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: %w", name, err)
		}
		size, ok := dtypeSize[e.DType]
		if !ok {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: unknown dtype %q", name, e.DType)
		}
		if e.Shape == nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: missing shape", name)
		}
		count, err := numel(e.Shape, size)
		if err != nil {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: %w", name, err)
		}
		if len(e.Offsets) != 2 {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: data_offsets must hold two numbers, got %d", name, len(e.Offsets))
		}
		begin, end := e.Offsets[0], e.Offsets[1]
		if begin < 0 || end < begin || end > dataLen {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: data_offsets [%d, %d] outside the %d-byte data buffer", name, begin, end, dataLen)
		}
		if end-begin != count*int64(size) {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: data_offsets span %d bytes, but %s%v needs %d", name, end-begin, e.DType, e.Shape, count*int64(size))
		}
		spans = append(spans, span{Name: name, DType: e.DType, Shape: append([]int{}, e.Shape...), Begin: begin, End: end})
	}
	sort.SliceStable(spans, func(i, j int) bool {
		if spans[i].Begin != spans[j].Begin {
			return spans[i].Begin < spans[j].Begin
		}
		return spans[i].End < spans[j].End
	})
	var at int64
	for _, s := range spans {
		if s.Begin < at {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: data_offsets [%d, %d] overlap the tensor before it", s.Name, s.Begin, s.End)
		}
		if s.Begin > at {
			return nil, nil, fmt.Errorf("safetensors: tensor %s: gap of %d bytes in the data buffer before it", s.Name, s.Begin-at)
		}
		at = s.End
	}
	if at != dataLen {
		return nil, nil, fmt.Errorf("safetensors: %d trailing bytes after the last tensor", dataLen-at)
	}
	return meta, spans, nil
}

// Names returns the tensor names, sorted.
func (f *File) Names() []string {
	out := make([]string, 0, len(f.tensors))
	for n := range f.tensors {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Tensors returns every tensor, sorted by name.
func (f *File) Tensors() []Tensor {
	out := make([]Tensor, 0, len(f.tensors))
	for _, n := range f.Names() {
		out = append(out, f.tensors[n])
	}
	return out
}

// Tensor returns the named tensor's raw bytes.
func (f *File) Tensor(name string) (Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Float32 decodes a floating-point tensor (F32, F16, BF16 or F64) to
// float32, F64 rounding to nearest, and returns it with its shape.
func (f *File) Float32(name string) ([]float32, []int, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, nil, fmt.Errorf("safetensors: tensor %s not found", name)
	}
	size, _ := t.DType.Size()
	out := make([]float32, len(t.Data)/size)
	if err := decodeFloat32(t.DType, t.Data, out); err != nil {
		return nil, nil, fmt.Errorf("safetensors: tensor %s %w", name, err)
	}
	return out, append([]int{}, t.Shape...), nil
}

// decodeFloat32 converts the little-endian values in b (of dtype dt) to
// float32 in out, F64 rounding to nearest.
func decodeFloat32(dt DType, b []byte, out []float32) error {
	switch dt {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:])))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
	case F16:
		for i := range out {
			out[i] = HalfToFloat32(binary.LittleEndian.Uint16(b[2*i:]))
		}
	default:
		return fmt.Errorf("has dtype %s, not a floating-point type", dt)
	}
	return nil
}

// HalfToFloat32 converts an IEEE 754 half-precision value exactly.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0:
		if frac == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: frac · 2^-24, exact in float32
		v := float32(frac) * float32(math.Ldexp(1, -24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// F32Tensor encodes float32 data as an F32 tensor.
func F32Tensor(name string, shape []int, data []float32) Tensor {
	b := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return Tensor{Name: name, DType: F32, Shape: append([]int{}, shape...), Data: b}
}

// Encode builds a safetensors image: tensors sorted by name and laid out
// contiguously in that order, header keys sorted, header padded with
// spaces to a multiple of 8 bytes. The same input always gives the same
// bytes.
func Encode(tensors []Tensor, metadata map[string]string) ([]byte, error) {
	ts := append([]Tensor{}, tensors...)
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	header := map[string]any{}
	if len(metadata) > 0 {
		header[metadataKey] = metadata
	}
	var off int64
	for i, t := range ts {
		if t.Name == "" || t.Name == metadataKey {
			return nil, fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
		}
		if i > 0 && ts[i-1].Name == t.Name {
			return nil, fmt.Errorf("safetensors: duplicate tensor %s", t.Name)
		}
		size, ok := dtypeSize[t.DType]
		if !ok {
			return nil, fmt.Errorf("safetensors: tensor %s: unknown dtype %q", t.Name, t.DType)
		}
		count, err := numel(t.Shape, size)
		if err != nil {
			return nil, fmt.Errorf("safetensors: tensor %s: %w", t.Name, err)
		}
		if count*int64(size) != int64(len(t.Data)) {
			return nil, fmt.Errorf("safetensors: tensor %s: %d bytes of data, but %s%v needs %d", t.Name, len(t.Data), t.DType, t.Shape, count*int64(size))
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = headerEntry{DType: t.DType, Shape: shape, Offsets: []int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	var hb bytes.Buffer
	enc := json.NewEncoder(&hb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(header); err != nil {
		return nil, fmt.Errorf("safetensors: encode header: %w", err)
	}
	h := bytes.TrimSuffix(hb.Bytes(), []byte("\n"))
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+int(off))
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	for _, t := range ts {
		out = append(out, t.Data...)
	}
	return out, nil
}

// Write encodes tensors to path atomically (a temporary file in the same
// folder, synced, then renamed into place), so a reader never sees half a
// file.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	b, err := Encode(tensors, metadata)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.safetensors")
	if err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("safetensors: write %s: %w", path, err)
	}
	return nil
}
