package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
)

// Reader reads a safetensors file a piece at a time: Open reads and
// validates the header only, and Float32At decodes a range of one tensor's
// values, so a file much larger than memory can be converted tensor by
// tensor (a 1B-parameter model in BF16 is 2.5 GB).
type Reader struct {
	Metadata map[string]string
	path     string
	f        *os.File
	data     int64 // offset of the data buffer in the file
	spans    map[string]span
	buf      []byte // raw bytes of the last read, reused
}

// Open opens the file at path and validates its header as Parse does
// (byte ranges checked against the file's size). Errors name the path.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: open: %w", err)
	}
	r, err := open(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.path = path
	return r, nil
}

func open(f *os.File) (*Reader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	size := st.Size()
	var lb [8]byte
	if _, err := io.ReadFull(f, lb[:]); err != nil {
		return nil, fmt.Errorf("safetensors: file of %d bytes has no header length", size)
	}
	n := binary.LittleEndian.Uint64(lb[:])
	if n > MaxHeader {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the %d-byte limit", n, MaxHeader)
	}
	if n > uint64(size-8) {
		return nil, fmt.Errorf("safetensors: header length %d exceeds the file (%d bytes)", n, size)
	}
	hdr := make([]byte, n)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return nil, fmt.Errorf("safetensors: read header: %w", err)
	}
	data := 8 + int64(n)
	meta, spans, err := parseHeader(hdr, size-data)
	if err != nil {
		return nil, err
	}
	r := &Reader{Metadata: meta, f: f, data: data, spans: make(map[string]span, len(spans))}
	for _, s := range spans {
		r.spans[s.Name] = s
	}
	return r, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Names returns the tensor names, sorted.
func (r *Reader) Names() []string {
	out := make([]string, 0, len(r.spans))
	for n := range r.spans {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Info returns a tensor's dtype and shape, and whether it is in the file.
func (r *Reader) Info(name string) (DType, []int, bool) {
	s, ok := r.spans[name]
	if !ok {
		return "", nil, false
	}
	return s.DType, append([]int{}, s.Shape...), true
}

// Float32At decodes the floating-point tensor's values off..off+len(dst)
// (in row-major order) to float32, as File.Float32 does.
func (r *Reader) Float32At(name string, off int, dst []float32) error {
	s, ok := r.spans[name]
	if !ok {
		return fmt.Errorf("%s: safetensors: tensor %s not found", r.path, name)
	}
	size, _ := s.DType.Size()
	begin, end := s.Begin+int64(off)*int64(size), s.Begin+int64(off+len(dst))*int64(size)
	if off < 0 || end > s.End {
		return fmt.Errorf("%s: safetensors: tensor %s: values [%d, %d) outside its %d", r.path, name, off, off+len(dst), (s.End-s.Begin)/int64(size))
	}
	n := int(end - begin)
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := r.f.ReadAt(b, r.data+begin); err != nil {
		return fmt.Errorf("%s: safetensors: read tensor %s: %w", r.path, name, err)
	}
	if err := decodeFloat32(s.DType, b, dst); err != nil {
		return fmt.Errorf("%s: safetensors: tensor %s %w", r.path, name, err)
	}
	return nil
}
