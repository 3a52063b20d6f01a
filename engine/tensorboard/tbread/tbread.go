// Package tbread reads TensorBoard event files for tests. It is written
// from the TFRecord and Event definitions alone and shares no code with
// package tensorboard, the writer it checks: framing and masked CRC-32C
// are parsed here, and protobuf fields are decoded with protowire.
//
// It is not a general TensorBoard reader: it knows the fields lens writes
// (scalars, histograms, string tensors) and skips the rest.
package tbread

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"os"
	"path/filepath"
	"sort"

	"google.golang.org/protobuf/encoding/protowire"
)

// Event is one decoded Event record.
type Event struct {
	WallTime    float64
	Step        int64
	FileVersion string
	Values      []Value // Summary.value
}

// Value is one Summary.Value.
type Value struct {
	Tag       string
	HasSimple bool
	Simple    float32
	Histo     *Histo
	Plugin    string   // metadata.plugin_data.plugin_name
	DType     int      // tensor.dtype, 0 without a tensor
	Strings   []string // tensor.string_val
}

// Histo is a HistogramProto.
type Histo struct {
	Min, Max, Num, Sum, SumSquares float64
	Limits, Counts                 []float64
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// masked is the CRC as TFRecord stores it: rotated right by 15 bits plus
// 0xa282ead8.
func masked(b []byte) uint32 {
	return bits.RotateLeft32(crc32.Checksum(b, crcTable), -15) + 0xa282ead8
}

// Records splits a TFRecord file into its payloads, checking both CRCs of
// every record.
func Records(b []byte) ([][]byte, error) {
	var out [][]byte
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return out, fmt.Errorf("record at offset %d: truncated header (%d bytes)", off, len(b)-off)
		}
		n := binary.LittleEndian.Uint64(b[off:])
		if got, want := binary.LittleEndian.Uint32(b[off+8:]), masked(b[off:off+8]); got != want {
			return out, fmt.Errorf("record at offset %d: length CRC %#x, want %#x", off, got, want)
		}
		start := off + 12
		if n > uint64(len(b)-start) || uint64(len(b)-start)-n < 4 {
			return out, fmt.Errorf("record at offset %d: length %d runs past the end of the file", off, n)
		}
		end := start + int(n)
		data := b[start:end]
		if got, want := binary.LittleEndian.Uint32(b[end:]), masked(data); got != want {
			return out, fmt.Errorf("record at offset %d: data CRC %#x, want %#x", off, got, want)
		}
		out = append(out, data)
		off = end + 4
	}
	return out, nil
}

// Parse decodes every event of an event file's bytes.
func Parse(b []byte) ([]Event, error) {
	recs, err := Records(b)
	if err != nil {
		return nil, err
	}
	evs := make([]Event, 0, len(recs))
	for i, r := range recs {
		e, err := parseEvent(r)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", i, err)
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// ReadFile decodes one event file.
func ReadFile(path string) ([]Event, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	evs, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return evs, nil
}

// ReadDir decodes every events.out.tfevents.* file of dir, in name order,
// and returns the file names with the events.
func ReadDir(dir string) ([]string, []Event, error) {
	files, err := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(files)
	var all []Event
	for _, f := range files {
		evs, err := ReadFile(f)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, evs...)
	}
	return files, all, nil
}

// fields calls fn for each field of a message; fn returns how many bytes
// of the value it consumed, or -1 to have the value skipped.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		m, err := fn(num, typ, b)
		if err != nil {
			return fmt.Errorf("field %d: %w", num, err)
		}
		if m < 0 {
			m = protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
			}
		}
		b = b[m:]
	}
	return nil
}

func double(typ protowire.Type, b []byte) (float64, int, error) {
	if typ != protowire.Fixed64Type {
		return 0, 0, fmt.Errorf("wire type %d, want fixed64", typ)
	}
	v, n := protowire.ConsumeFixed64(b)
	if n < 0 {
		return 0, 0, protowire.ParseError(n)
	}
	return math.Float64frombits(v), n, nil
}

func bytesField(typ protowire.Type, b []byte) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, fmt.Errorf("wire type %d, want bytes", typ)
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, protowire.ParseError(n)
	}
	return v, n, nil
}

func varint(typ protowire.Type, b []byte) (uint64, int, error) {
	if typ != protowire.VarintType {
		return 0, 0, fmt.Errorf("wire type %d, want varint", typ)
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, protowire.ParseError(n)
	}
	return v, n, nil
}

func parseEvent(b []byte) (Event, error) {
	var e Event
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			v, n, err := double(typ, b)
			e.WallTime = v
			return n, err
		case 2:
			v, n, err := varint(typ, b)
			e.Step = int64(v)
			return n, err
		case 3:
			v, n, err := bytesField(typ, b)
			e.FileVersion = string(v)
			return n, err
		case 5:
			v, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			return n, fields(v, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				if num != 1 {
					return -1, nil
				}
				v, n, err := bytesField(typ, b)
				if err != nil {
					return 0, err
				}
				val, err := parseValue(v)
				e.Values = append(e.Values, val)
				return n, err
			})
		}
		return -1, nil
	})
	return e, err
}

func parseValue(b []byte) (Value, error) {
	var v Value
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch num {
		case 1:
			s, n, err := bytesField(typ, b)
			v.Tag = string(s)
			return n, err
		case 2:
			if typ != protowire.Fixed32Type {
				return 0, fmt.Errorf("simple_value: wire type %d, want fixed32", typ)
			}
			x, n := protowire.ConsumeFixed32(b)
			if n < 0 {
				return 0, protowire.ParseError(n)
			}
			v.HasSimple, v.Simple = true, math.Float32frombits(x)
			return n, nil
		case 5:
			s, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			v.Histo, err = parseHisto(s)
			return n, err
		case 8:
			s, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			return n, fields(s, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				switch num {
				case 1:
					x, n, err := varint(typ, b)
					v.DType = int(x)
					return n, err
				case 8:
					x, n, err := bytesField(typ, b)
					v.Strings = append(v.Strings, string(x))
					return n, err
				}
				return -1, nil
			})
		case 9:
			s, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			return n, fields(s, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
				if num != 1 {
					return -1, nil
				}
				pd, n, err := bytesField(typ, b)
				if err != nil {
					return 0, err
				}
				return n, fields(pd, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
					if num != 1 {
						return -1, nil
					}
					x, n, err := bytesField(typ, b)
					v.Plugin = string(x)
					return n, err
				})
			})
		}
		return -1, nil
	})
	return v, err
}

func parseHisto(b []byte) (*Histo, error) {
	h := &Histo{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		var dst *float64
		switch num {
		case 1:
			dst = &h.Min
		case 2:
			dst = &h.Max
		case 3:
			dst = &h.Num
		case 4:
			dst = &h.Sum
		case 5:
			dst = &h.SumSquares
		case 6, 7:
			list := &h.Limits
			if num == 7 {
				list = &h.Counts
			}
			if typ == protowire.Fixed64Type { // unpacked form, also valid
				x, n, err := double(typ, b)
				*list = append(*list, x)
				return n, err
			}
			p, n, err := bytesField(typ, b)
			if err != nil {
				return 0, err
			}
			if len(p)%8 != 0 {
				return 0, fmt.Errorf("packed doubles: %d bytes", len(p))
			}
			for i := 0; i < len(p); i += 8 {
				*list = append(*list, math.Float64frombits(binary.LittleEndian.Uint64(p[i:])))
			}
			return n, nil
		default:
			return -1, nil
		}
		x, n, err := double(typ, b)
		*dst = x
		return n, err
	})
	return h, err
}

// Point is one scalar value.
type Point struct {
	Step  int64
	Value float32
	Wall  float64
}

// Scalars collects the simple_value scalars of events by tag, in file order.
func Scalars(evs []Event) map[string][]Point {
	out := map[string][]Point{}
	for _, e := range evs {
		for _, v := range e.Values {
			if v.HasSimple {
				out[v.Tag] = append(out[v.Tag], Point{Step: e.Step, Value: v.Simple, Wall: e.WallTime})
			}
		}
	}
	return out
}

// HistoPoint is one histogram at a step.
type HistoPoint struct {
	Step  int64
	Histo *Histo
}

// Histograms collects the histograms of events by tag, in file order.
func Histograms(evs []Event) map[string][]HistoPoint {
	out := map[string][]HistoPoint{}
	for _, e := range evs {
		for _, v := range e.Values {
			if v.Histo != nil {
				out[v.Tag] = append(out[v.Tag], HistoPoint{Step: e.Step, Histo: v.Histo})
			}
		}
	}
	return out
}

// Tags lists the tags of a map from this package, sorted.
func Tags[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
