package tensorboard

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// TFRecord framing, as tensorflow/core/lib/io/record_writer.cc writes it:
//
//	uint64  length of data, little-endian
//	uint32  masked CRC-32C of those 8 bytes
//	byte    data[length]
//	uint32  masked CRC-32C of data
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskDelta and maskedCRC follow tsl/lib/hash/crc32c.h: a CRC stored next to
// data that may itself hold CRCs is rotated and offset.
const maskDelta = 0xa282ead8

func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + maskDelta
}

// appendRecord frames data as one TFRecord.
func appendRecord(dst, data []byte) []byte {
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[8:], maskedCRC(hdr[:8]))
	dst = append(dst, hdr[:]...)
	dst = append(dst, data...)
	return binary.LittleEndian.AppendUint32(dst, maskedCRC(data))
}

// A few protobuf wire-format encoders: the messages written here (Event,
// Summary, HistogramProto, TensorProto) need only varints, fixed 32/64-bit
// fields and length-delimited fields.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendTag(b []byte, field, wire int) []byte {
	return appendVarint(b, uint64(field)<<3|uint64(wire))
}

func appendVarintField(b []byte, field int, v uint64) []byte {
	return appendVarint(appendTag(b, field, wireVarint), v)
}

func appendDouble(b []byte, field int, v float64) []byte {
	return binary.LittleEndian.AppendUint64(appendTag(b, field, wireFixed64), math.Float64bits(v))
}

func appendFloat(b []byte, field int, v float32) []byte {
	return binary.LittleEndian.AppendUint32(appendTag(b, field, wireFixed32), math.Float32bits(v))
}

func appendBytesField(b []byte, field int, v []byte) []byte {
	b = appendVarint(appendTag(b, field, wireBytes), uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, field int, s string) []byte {
	b = appendVarint(appendTag(b, field, wireBytes), uint64(len(s)))
	return append(b, s...)
}

// appendPackedDoubles writes a packed repeated double field.
func appendPackedDoubles(b []byte, field int, vs []float64) []byte {
	b = appendVarint(appendTag(b, field, wireBytes), uint64(8*len(vs)))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// Field numbers, from tensorboard/compat/proto/{event,summary,histogram,
// tensor,tensor_shape}.proto.
const (
	eventWallTime    = 1 // double
	eventStep        = 2 // int64
	eventFileVersion = 3 // string
	eventSummary     = 5 // Summary

	summaryValue = 1 // repeated Value

	valueTag         = 1 // string
	valueSimpleValue = 2 // float
	valueHisto       = 5 // HistogramProto
	valueTensor      = 8 // TensorProto
	valueMetadata    = 9 // SummaryMetadata

	histoMin         = 1
	histoMax         = 2
	histoNum         = 3
	histoSum         = 4
	histoSumSquares  = 5
	histoBucketLimit = 6 // packed double
	histoBucket      = 7 // packed double

	metadataPluginData = 1 // PluginData
	metadataDataClass  = 4 // enum DataClass
	pluginName         = 1 // string

	tensorDtype     = 1 // enum DataType
	tensorShape     = 2 // TensorShapeProto (no dims: a scalar)
	tensorStringVal = 8 // repeated bytes

	dtString        = 7 // DT_STRING in types.proto
	dataClassTensor = 2 // DATA_CLASS_TENSOR
)

// event encodes an Event holding a summary (or, with summary nil, nothing
// but the time and step).
func event(wall float64, step int64, summary []byte) []byte {
	b := appendDouble(nil, eventWallTime, wall)
	b = appendVarintField(b, eventStep, uint64(step))
	if summary != nil {
		b = appendBytesField(b, eventSummary, summary)
	}
	return b
}

func scalarValue(tag string, v float64) []byte {
	b := appendString(nil, valueTag, tag)
	return appendFloat(b, valueSimpleValue, float32(v))
}

func histoValue(tag string, h *histogram) []byte {
	var hb []byte
	hb = appendDouble(hb, histoMin, h.min)
	hb = appendDouble(hb, histoMax, h.max)
	hb = appendDouble(hb, histoNum, h.num)
	hb = appendDouble(hb, histoSum, h.sum)
	hb = appendDouble(hb, histoSumSquares, h.sumSquares)
	hb = appendPackedDoubles(hb, histoBucketLimit, h.limits)
	hb = appendPackedDoubles(hb, histoBucket, h.counts)
	b := appendString(nil, valueTag, tag)
	return appendBytesField(b, valueHisto, hb)
}

// textValue is what tf.summary.text writes: a scalar DT_STRING tensor with
// metadata naming the text plugin.
func textValue(tag, text string) []byte {
	var tb []byte
	tb = appendVarintField(tb, tensorDtype, dtString)
	tb = appendBytesField(tb, tensorShape, nil)
	tb = appendString(tb, tensorStringVal, text)
	plugin := appendString(nil, pluginName, "text")
	var md []byte
	md = appendBytesField(md, metadataPluginData, plugin)
	md = appendVarintField(md, metadataDataClass, dataClassTensor)
	b := appendString(nil, valueTag, tag)
	b = appendBytesField(b, valueMetadata, md)
	return appendBytesField(b, valueTensor, tb)
}
