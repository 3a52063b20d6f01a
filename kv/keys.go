package kv

// Key layout. Every key is a byte string; "/" separates parts, <step> and
// <seq> are 8-byte big-endian unsigned integers so that byte order is
// numeric order (step 256 sorts after step 2), and the common reads are
// prefix scans.
//
//	store/version                                  format version, decimal ASCII ("1")
//	run/<id>/meta                                  JSON RunMeta
//	run/<id>/metric/<name>/<step>                  float64, 8 bytes little-endian
//	run/<id>/ckpt/<step>/meta                      JSON CheckpointMeta (written last: a checkpoint exists only once it is there)
//	run/<id>/ckpt/<step>/t/<tensor name>           encoded tensor (see tensor.go)
//	run/<id>/collect/<collector>/<step>/<name>     1-byte kind tag + payload (encoded tensor, JSON, or raw bytes)
//	run/<id>/event/<seq>                           JSON Event
//	idx/name/<name>/<id>                           empty; secondary index of RunMeta.Name
//	idx/tag/<tag>/<id>                             empty; secondary index of RunMeta.Tags
//	blob/<namespace>/<key>/meta                    JSON blob record (written last, like a checkpoint meta)
//	blob/<namespace>/<key>/t/<tensor name>         encoded tensor
//	intent/ckpt/<id>/<step>                        empty; a checkpoint write or removal in progress (see intent.go)
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
	"unicode/utf8"
)

const (
	keyVersion   = "store/version"
	prefixRun    = "run/"
	prefixIdxNam = "idx/name/"
	prefixIdxTag = "idx/tag/"
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
func runMetaKey(id string) []byte   { return cat(prefixRun, id, "/meta") }
func metricPrefix(id string) []byte { return cat(prefixRun, id, "/metric/") }
func metricSeriesPrefix(id, name string) []byte {
	return cat(prefixRun, id, "/metric/", name, "/")
}
func metricKey(id, name string, step int) []byte {
	return cat(metricSeriesPrefix(id, name), be64(uint64(step)))
}
func ckptPrefix(id string) []byte { return cat(prefixRun, id, "/ckpt/") }
func ckptStepPrefix(id string, step uint64) []byte {
	return cat(ckptPrefix(id), be64(step), "/")
}
func ckptMetaKey(id string, step int) []byte {
	return cat(ckptStepPrefix(id, uint64(step)), "meta")
}
func ckptTensorKey(id string, step int, name string) []byte {
	return cat(ckptStepPrefix(id, uint64(step)), "t/", name)
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
	kindRunMeta
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
)

// parsedKey is a key split into its parts; which fields are set depends on kind.
type parsedKey struct {
	kind      keyKind
	run       string // run id (run/... keys and index entries)
	name      string // metric, tensor, collected item, run name or tag
	step      uint64 // metric/checkpoint/collect step, or event seq
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
		p.kind = kindRunMeta
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
	}
	if utf8.Valid(k) && strings.IndexFunc(string(k), func(r rune) bool { return r < 0x20 || r == 0x7f }) < 0 {
		return string(k)
	}
	return strconv.Quote(string(k))
}
