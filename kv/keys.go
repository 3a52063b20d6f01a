package kv

// Key layout. Every key is a byte string; "/" separates parts, <step> and
// <seq> are 8-byte big-endian unsigned integers so that byte order is
// numeric order (step 256 sorts after step 2), and the common reads are
// prefix scans.
//
//	store/version                                  format version, decimal ASCII ("3")
//	rec/<id>                                       JSON RunMeta, apart from the run's data
//	sum/<id>                                       binary RunSummary (summary.go), written with the record: listing reads only these
//	prog/<id>                                      JSON Progress of a running run (see progress.go)
//	run/<id>/metric/<name>/<block>                 metric block: the points of steps block..block+255 (see metrics.go)
//	run/<id>/ckpt/<step>/meta                      JSON CheckpointMeta (written last: a checkpoint exists only once it is there)
//	run/<id>/ckpt/<step>/t/<tensor name>           encoded tensor (see tensor.go), or the manifest of a chunked one
//	run/<id>/ckpt/<step>/x/<tensor name>/<n>       chunk n (4-byte big-endian) of a chunked tensor (see chunk.go)
//	run/<id>/collect/<collector>/<step>/<name>     1-byte kind tag + payload (encoded tensor, JSON, or raw bytes)
//	run/<id>/event/<seq>                           JSON Event
//	idx/name/<name>/<id>                           empty; secondary index of RunMeta.Name
//	idx/tag/<tag>/<id>                             empty; secondary index of RunMeta.Tags
//	idx/status/<status>/<id>                       empty; secondary index of RunMeta.Status (Open finds running runs here)
//	idx/created/<created><id>                      empty; runs in creation order (<created>: 8-byte Unix seconds with the sign bit flipped, 4-byte nanoseconds)
//	blob/<namespace>/<key>/meta                    JSON blob record (written last, like a checkpoint meta)
//	blob/<namespace>/<key>/t/<tensor name>         encoded tensor, or the manifest of a chunked one
//	blob/<namespace>/<key>/x/<tensor name>/<n>     chunk n of a chunked tensor
//	intent/ckpt/<id>/<step>                        empty; a checkpoint write or removal in progress (see intent.go)
//	intent/blob/<namespace>/<key>                  empty; a blob write or removal in progress
//
// Format version 1 kept the record at run/<id>/meta, among the run's own
// keys, one 8-byte value per metric step, no status index and no chunks;
// version 2 had no sum/ keys. Open migrates both (migrate.go).
//
// Parsing relies on these rules, enforced by the validate functions below:
// run ids, collector names, blob namespaces and blob keys contain no "/";
// metric names, run names, tags, tensor names and collected names may contain
// "/" because they are either the last part of a key or followed by a
// fixed-width integer, so they can be parsed from the end. No part may be
// empty or contain a NUL byte.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	keyVersion   = "store/version"
	prefixRec    = "rec/"
	prefixSum    = "sum/"
	prefixProg   = "prog/"
	prefixRun    = "run/"
	prefixIdxNam = "idx/name/"
	prefixIdxTag = "idx/tag/"
	prefixIdxSt  = "idx/status/"
	prefixIdxCre = "idx/created/"
	prefixBlob   = "blob/"

	maxPartLen = 1024
)

func be64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

func cat(parts ...any) []byte {
	var b bytes.Buffer
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b.WriteString(p)
		case []byte:
			b.Write(p)
		default:
			panic(fmt.Sprintf("kv: bad key part %T", p))
		}
	}
	return b.Bytes()
}

func runPrefix(id string) []byte    { return cat(prefixRun, id, "/") }
func runMetaKey(id string) []byte   { return cat(prefixRec, id) }
func progressKey(id string) []byte  { return cat(prefixProg, id) }
func summaryKey(id string) []byte   { return cat(prefixSum, id) }
func v1RunMetaKey(id string) []byte { return cat(prefixRun, id, "/meta") }
func metricPrefix(id string) []byte { return cat(prefixRun, id, "/metric/") }
func metricSeriesPrefix(id, name string) []byte {
	return cat(prefixRun, id, "/metric/", name, "/")
}
func metricKey(id, name string, step int) []byte {
	return cat(metricSeriesPrefix(id, name), be64(uint64(step)))
}

// metricBlockKey is the key of the block holding step.
func metricBlockKey(id, name string, step int) []byte { return metricKey(id, name, blockStart(step)) }
func ckptPrefix(id string) []byte                     { return cat(prefixRun, id, "/ckpt/") }
func ckptStepPrefix(id string, step uint64) []byte {
	return cat(ckptPrefix(id), be64(step), "/")
}
func ckptMetaKey(id string, step int) []byte {
	return cat(ckptStepPrefix(id, uint64(step)), "meta")
}
func ckptTensorKey(id string, step int, name string) []byte {
	return cat(ckptStepPrefix(id, uint64(step)), "t/", name)
}

// chunkKeyOf turns the key of a tensor (…/t/<name>) into the prefix of its
// chunks (…/x/<name>/).
func chunkPrefixOf(tensorKey []byte) []byte {
	i := bytes.LastIndex(tensorKey, []byte("/t/"))
	return cat(tensorKey[:i], "/x/", tensorKey[i+3:], "/")
}

func chunkKey(tensorKey []byte, n int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(n))
	return cat(chunkPrefixOf(tensorKey), b[:])
}
func collectPrefix(id string) []byte { return cat(prefixRun, id, "/collect/") }
func collectorPrefix(id, collector string) []byte {
	return cat(collectPrefix(id), collector, "/")
}
func collectStepPrefix(id, collector string, step uint64) []byte {
	return cat(collectorPrefix(id, collector), be64(step), "/")
}
func collectKey(id, collector string, step int, name string) []byte {
	return cat(collectStepPrefix(id, collector, uint64(step)), name)
}
func eventPrefix(id string) []byte { return cat(prefixRun, id, "/event/") }
func eventKey(id string, seq uint64) []byte {
	return cat(eventPrefix(id), be64(seq))
}
func idxNamePrefix(name string) []byte  { return cat(prefixIdxNam, name, "/") }
func idxNameKey(name, id string) []byte { return cat(prefixIdxNam, name, "/", id) }
func idxTagPrefix(tag string) []byte    { return cat(prefixIdxTag, tag, "/") }
func idxTagKey(tag, id string) []byte   { return cat(prefixIdxTag, tag, "/", id) }
func idxStatusPrefix(status string) []byte {
	return cat(prefixIdxSt, status, "/")
}
func idxStatusKey(status, id string) []byte { return cat(prefixIdxSt, status, "/", id) }

// idxCreatedKey orders runs by creation time, then id, as sortRuns does:
// the sign bit of the seconds is flipped so that byte order is numeric
// order for times before 1970 too (the zero time is year 1).
func idxCreatedKey(created time.Time, id string) []byte {
	var b [12]byte
	binary.BigEndian.PutUint64(b[:8], uint64(created.Unix())^(1<<63))
	binary.BigEndian.PutUint32(b[8:], uint32(created.Nanosecond()))
	return cat(prefixIdxCre, b[:], id)
}

// createdOf decodes the time in an idx/created key's 12 bytes.
func createdOf(b []byte) time.Time {
	return time.Unix(int64(binary.BigEndian.Uint64(b[:8])^(1<<63)), int64(binary.BigEndian.Uint32(b[8:12])))
}

func blobPrefix(ns, key string) []byte  { return cat(prefixBlob, ns, "/", key, "/") }
func blobMetaKey(ns, key string) []byte { return cat(blobPrefix(ns, key), "meta") }
func blobTensorKey(ns, key, name string) []byte {
	return cat(blobPrefix(ns, key), "t/", name)
}

// prefixEnd returns the smallest key greater than every key with prefix p
// that is itself not prefixed by p, for "skip this subtree" seeks.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// validatePart checks one user-supplied key part. what names the part in the
// error ("run id", "metric name").
func validatePart(what, s string, slashOK bool) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > maxPartLen:
		return fmt.Errorf("%s %.40q... is longer than %d bytes", what, s, maxPartLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s %q contains a NUL byte", what, s)
	case !slashOK && strings.IndexByte(s, '/') >= 0:
		return fmt.Errorf("%s %q contains %q", what, s, "/")
	}
	return nil
}

func validateRunID(id string) error { return validatePart("run id", id, false) }

func validateStep(step int) error {
	if step < 0 {
		return fmt.Errorf("step %d is negative", step)
	}
	return nil
}

// keyKind classifies a stored key.
type keyKind int

const (
	kindUnknown keyKind = iota
	kindVersion
	kindMetric
	kindCkptMeta
	kindCkptTensor
	kindCollect
	kindEvent
	kindRunOther // under run/<id>/ but matching no layout
	kindIdxName
	kindIdxTag
	kindBlobMeta
	kindBlobTensor
	kindIntentCkpt
	kindRec       // rec/<id>
	kindProgress  // prog/<id>
	kindIdxStatus // idx/status/<status>/<id>
	kindCkptChunk
	kindBlobChunk
	kindIntentBlob
	kindV1RunMeta // run/<id>/meta of format version 1
	kindSummary   // sum/<id>
	kindIdxCreated
)

// parsedKey is a key split into its parts; which fields are set depends on kind.
type parsedKey struct {
	kind      keyKind
	run       string // run id (run/... keys and index entries)
	name      string // metric, tensor, collected item, run name or tag
	step      uint64 // metric/checkpoint/collect step, or event seq
	chunk     int    // chunk number
	collector string
	ns, bkey  string // blob namespace and key
}

// parseKey never fails; keys matching no layout come back as kindUnknown or
// kindRunOther.
func parseKey(k []byte) parsedKey {
	s := string(k)
	switch {
	case s == keyVersion:
		return parsedKey{kind: kindVersion}
	case strings.HasPrefix(s, prefixRec):
		if id := s[len(prefixRec):]; validateRunID(id) == nil {
			return parsedKey{kind: kindRec, run: id}
		}
		return parsedKey{kind: kindUnknown}
	case strings.HasPrefix(s, prefixSum):
		if id := s[len(prefixSum):]; validateRunID(id) == nil {
			return parsedKey{kind: kindSummary, run: id}
		}
		return parsedKey{kind: kindUnknown}
	case strings.HasPrefix(s, prefixProg):
		if id := s[len(prefixProg):]; validateRunID(id) == nil {
			return parsedKey{kind: kindProgress, run: id}
		}
		return parsedKey{kind: kindUnknown}
	case strings.HasPrefix(s, prefixIdxCre):
		rest := k[len(prefixIdxCre):]
		if len(rest) <= 12 || validateRunID(string(rest[12:])) != nil {
			return parsedKey{kind: kindUnknown}
		}
		return parsedKey{kind: kindIdxCreated, run: string(rest[12:])}
	case strings.HasPrefix(s, prefixIdxSt):
		rest := s[len(prefixIdxSt):]
		i := strings.IndexByte(rest, '/')
		if i <= 0 || i == len(rest)-1 || strings.IndexByte(rest[i+1:], '/') >= 0 {
			return parsedKey{kind: kindUnknown}
		}
		return parsedKey{kind: kindIdxStatus, name: rest[:i], run: rest[i+1:]}
	case strings.HasPrefix(s, prefixRun):
		return parseRunKey(s[len(prefixRun):])
	case strings.HasPrefix(s, prefixIdxNam), strings.HasPrefix(s, prefixIdxTag):
		kind, rest := kindIdxName, s[len(prefixIdxNam):]
		if strings.HasPrefix(s, prefixIdxTag) {
			kind, rest = kindIdxTag, s[len(prefixIdxTag):]
		}
		i := strings.LastIndexByte(rest, '/')
		if i <= 0 || i == len(rest)-1 {
			return parsedKey{kind: kindUnknown}
		}
		return parsedKey{kind: kind, name: rest[:i], run: rest[i+1:]}
	case strings.HasPrefix(s, prefixIntent):
		return parseIntentKey(s[len(prefixIntent):])
	case strings.HasPrefix(s, prefixBlob):
		parts := strings.SplitN(s[len(prefixBlob):], "/", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
			return parsedKey{kind: kindUnknown}
		}
		p := parsedKey{ns: parts[0], bkey: parts[1]}
		switch {
		case parts[2] == "meta":
			p.kind = kindBlobMeta
		case strings.HasPrefix(parts[2], "t/") && len(parts[2]) > 2:
			p.kind, p.name = kindBlobTensor, parts[2][2:]
		case strings.HasPrefix(parts[2], "x/"):
			if name, n, ok := parseChunkTail(parts[2][2:]); ok {
				p.kind, p.name, p.chunk = kindBlobChunk, name, n
			} else {
				p.kind = kindUnknown
			}
		default:
			p.kind = kindUnknown
		}
		return p
	}
	return parsedKey{kind: kindUnknown}
}

// parseRunKey parses what follows "run/".
func parseRunKey(s string) parsedKey {
	i := strings.IndexByte(s, '/')
	if i <= 0 {
		return parsedKey{kind: kindUnknown}
	}
	p := parsedKey{kind: kindRunOther, run: s[:i]}
	rest := s[i+1:]
	switch {
	case rest == "meta":
		p.kind = kindV1RunMeta
	case strings.HasPrefix(rest, "metric/"):
		r := rest[len("metric/"):]
		// <name>/<8 bytes>
		if len(r) >= 10 && r[len(r)-9] == '/' {
			p.kind, p.name = kindMetric, r[:len(r)-9]
			p.step = binary.BigEndian.Uint64([]byte(r[len(r)-8:]))
		}
	case strings.HasPrefix(rest, "ckpt/"):
		r := rest[len("ckpt/"):]
		// <8 bytes>/meta or <8 bytes>/t/<name>
		if len(r) > 9 && r[8] == '/' {
			p.step = binary.BigEndian.Uint64([]byte(r[:8]))
			switch tail := r[9:]; {
			case tail == "meta":
				p.kind = kindCkptMeta
			case strings.HasPrefix(tail, "t/") && len(tail) > 2:
				p.kind, p.name = kindCkptTensor, tail[2:]
			case strings.HasPrefix(tail, "x/"):
				if name, n, ok := parseChunkTail(tail[2:]); ok {
					p.kind, p.name, p.chunk = kindCkptChunk, name, n
				}
			}
		}
	case strings.HasPrefix(rest, "collect/"):
		r := rest[len("collect/"):]
		// <collector>/<8 bytes>/<name>
		j := strings.IndexByte(r, '/')
		if j > 0 && len(r) > j+10 && r[j+9] == '/' {
			p.kind, p.collector = kindCollect, r[:j]
			p.step = binary.BigEndian.Uint64([]byte(r[j+1 : j+9]))
			p.name = r[j+10:]
		}
	case strings.HasPrefix(rest, "event/"):
		r := rest[len("event/"):]
		if len(r) == 8 {
			p.kind, p.step = kindEvent, binary.BigEndian.Uint64([]byte(r))
		}
	}
	return p
}

// parseChunkTail parses "<name>/<4 bytes>".
func parseChunkTail(r string) (name string, n int, ok bool) {
	if len(r) < 6 || r[len(r)-5] != '/' {
		return "", 0, false
	}
	return r[:len(r)-5], int(binary.BigEndian.Uint32([]byte(r[len(r)-4:]))), true
}

// displayKey renders a key for people: binary steps become decimal, so
// errors can name the key ("run/20261125-094512-3f9a/ckpt/100/t/lora_A").
func displayKey(k []byte) string {
	p := parseKey(k)
	step := strconv.FormatUint(p.step, 10)
	switch p.kind {
	case kindMetric:
		return "run/" + p.run + "/metric/" + p.name + "/" + step
	case kindCkptMeta:
		return "run/" + p.run + "/ckpt/" + step + "/meta"
	case kindCkptTensor:
		return "run/" + p.run + "/ckpt/" + step + "/t/" + p.name
	case kindCollect:
		return "run/" + p.run + "/collect/" + p.collector + "/" + step + "/" + p.name
	case kindEvent:
		return "run/" + p.run + "/event/" + step
	case kindIntentCkpt:
		return "intent/ckpt/" + p.run + "/" + step
	case kindCkptChunk:
		return "run/" + p.run + "/ckpt/" + step + "/x/" + p.name + "/" + strconv.Itoa(p.chunk)
	case kindBlobChunk:
		return "blob/" + p.ns + "/" + p.bkey + "/x/" + p.name + "/" + strconv.Itoa(p.chunk)
	case kindIdxCreated:
		return prefixIdxCre + createdOf(k[len(prefixIdxCre):]).UTC().Format(time.RFC3339Nano) + "/" + p.run
	}
	if utf8.Valid(k) && strings.IndexFunc(string(k), func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return string(k)
	}
	return strconv.Quote(string(k))
}
