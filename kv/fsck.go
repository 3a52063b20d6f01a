package kv

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Problem is one inconsistency found by Fsck.
type Problem struct {
	Key     string `json:"key"` // the key, or key prefix, in readable form
	Message string `json:"message"`
}

// String formats the problem as "key: message".
func (p Problem) String() string { return p.Key + ": " + p.Message }

type stepID struct {
	owner string // run id, or "ns/key" for blobs
	step  uint64
}

// fsckState gathers what the walk saw, for the cross-checks at the end.
type fsckState struct {
	problems   []Problem
	version    bool
	runs       map[string]*RunMeta // nil value: record present but unreadable
	runKeys    map[string]int      // keys under run/<id>/ besides the record
	ckptMeta   map[stepID][]string
	ckptTensor map[stepID][]string
	blobMeta   map[string][]string
	blobTensor map[string][]string
	intents    map[stepID]bool        // checkpoint steps with a write in progress (intent.go)
	blobIntent map[string]bool        // blobs ("ns/key") with a write in progress
	names      []parsedKey            // idx/name entries
	tags       []parsedKey            // idx/tag entries
	statuses   []parsedKey            // idx/status entries
	progress   []string               // runs with a prog/ key
	summaries  map[string][]byte      // sum/<id> values that decode
	created    map[string][]time.Time // idx/created entries by run
	manifests  map[string]manifestAt  // chunked tensors by the display form of their t/ key
	chunks     map[string][]chunkSeen // chunks by the display form of their tensor's t/ key
}

type manifestAt struct {
	m     manifest
	owner string // "run/<id>/ckpt/<step>/" or "blob/<ns>/<key>/"
	ckpt  stepID
}

type chunkSeen struct {
	n     int
	len   int
	crc   uint32
	owner stepID // the checkpoint step it belongs to
	blob  string // or the blob ("ns/key")
}

func (f *fsckState) add(key, format string, args ...any) {
	f.problems = append(f.problems, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

// Fsck reads every key of the store, decodes every record, tensor, metric
// and event, verifies checksums and cross-references (index entries, the
// tensors a checkpoint lists, keys of runs with no record) and reports what
// is wrong. It changes nothing. The error is for failures to read at all.
func (s *Store) Fsck() ([]Problem, error) {
	if err := s.Flush(); err != nil {
		return nil, err
	}
	f := &fsckState{
		runs:       map[string]*RunMeta{},
		runKeys:    map[string]int{},
		ckptMeta:   map[stepID][]string{},
		ckptTensor: map[stepID][]string{},
		blobMeta:   map[string][]string{},
		blobTensor: map[string][]string{},
		intents:    map[stepID]bool{},
	}
	f.init()
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.KeyCopy(nil)
			err := item.Value(func(v []byte) error {
				f.check(k, v)
				return nil
			})
			if err != nil {
				f.add(displayKey(k), "cannot read value: %v", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fsck %s: %w", s.dir, err)
	}
	f.crossCheck()
	return f.problems, nil
}

func (f *fsckState) init() {
	f.blobIntent = map[string]bool{}
	f.manifests = map[string]manifestAt{}
	f.chunks = map[string][]chunkSeen{}
	if f.intents == nil {
		f.intents = map[stepID]bool{}
	}
}

// tensorKeyOf is the display form of the t/ key that a tensor or chunk key
// belongs to.
func tensorKeyOf(p parsedKey) string {
	if p.kind == kindBlobTensor || p.kind == kindBlobChunk {
		return "blob/" + p.ns + "/" + p.bkey + "/t/" + p.name
	}
	return "run/" + p.run + "/ckpt/" + strconv.FormatUint(p.step, 10) + "/t/" + p.name
}

// checkTensor decodes a tensor value, or the manifest of a chunked one.
func (f *fsckState) checkTensor(p parsedKey, k, v []byte) {
	if !isManifest(v) {
		if _, err := decodeTensorAt(k, v, p.name); err != nil {
			f.add(displayKey(k), "%v", err)
		}
		return
	}
	m, err := decodeManifest(v)
	if err != nil {
		f.add(displayKey(k), "%v", err)
		return
	}
	at := manifestAt{m: m, ckpt: stepID{p.run, p.step}}
	if p.kind == kindBlobTensor {
		at.owner = "blob/" + p.ns + "/" + p.bkey
	}
	f.manifests[tensorKeyOf(p)] = at
}

// checkChunks compares every manifest with the chunks stored for it.
func (f *fsckState) checkChunks(skip func(manifestAt) bool) {
	for _, tk := range slices.Sorted(maps.Keys(f.manifests)) {
		at := f.manifests[tk]
		if skip(at) {
			continue
		}
		seen := map[int]chunkSeen{}
		for _, c := range f.chunks[tk] {
			seen[c.n] = c
		}
		for i, crc := range at.m.crcs {
			c, ok := seen[i]
			ck := strings.Replace(tk, "/t/", "/x/", 1) + "/" + strconv.Itoa(i)
			switch {
			case !ok:
				f.add(ck, "chunk %d of %d is missing", i, len(at.m.crcs))
			case c.len != at.m.chunkLen(i):
				f.add(ck, "chunk is %d bytes, the manifest says %d", c.len, at.m.chunkLen(i))
			case c.crc != crc:
				f.add(ck, "chunk checksum mismatch (manifest %08x, computed %08x)", crc, c.crc)
			}
			delete(seen, i)
		}
		for n := range seen {
			f.add(strings.Replace(tk, "/t/", "/x/", 1)+"/"+strconv.Itoa(n), "chunk not listed in its manifest")
		}
	}
	for _, tk := range slices.Sorted(maps.Keys(f.chunks)) {
		if _, ok := f.manifests[tk]; !ok {
			c := f.chunks[tk]
			at := manifestAt{ckpt: c[0].owner, owner: c[0].blob}
			if !skip(at) {
				f.add(strings.Replace(tk, "/t/", "/x/", 1)+"/", "%d chunks with no manifest at %s", len(c), tk)
			}
		}
	}
}

// check decodes one key and value.
func (f *fsckState) check(k, v []byte) {
	p := parseKey(k)
	dk := displayKey(k)
	if p.run != "" && p.kind != kindIdxName && p.kind != kindIdxTag && p.kind != kindIdxStatus &&
		p.kind != kindRec && p.kind != kindProgress && p.kind != kindSummary && p.kind != kindIdxCreated {
		f.runKeys[p.run]++
	}
	switch p.kind {
	case kindVersion:
		f.version = true
		if n, err := strconv.Atoi(string(bytes.TrimSpace(v))); err != nil || n != FormatVersion {
			f.add(dk, "format version is %q, want %d", v, FormatVersion)
		}
	case kindRec:
		var m RunMeta
		if err := decodeJSON(k, v, &m); err != nil {
			f.add(dk, "%v", err)
			f.runs[p.run] = nil
			return
		}
		f.runs[p.run] = &m
		if m.ID != p.run {
			f.add(dk, "record has id %q", m.ID)
		}
		if !validStatus[m.Status] {
			f.add(dk, "unknown status %q", m.Status)
		}
	case kindMetric:
		if _, err := decodeBlock(k, v, int(p.step)); err != nil {
			f.add(dk, "%v", err)
		}
	case kindSummary:
		if _, err := decodeSummary(k, v); err != nil {
			f.add(dk, "%v", err)
			v = nil // reported; not compared with the record
		}
		if f.summaries == nil {
			f.summaries = map[string][]byte{}
		}
		f.summaries[p.run] = bytes.Clone(v)
	case kindIdxCreated:
		if len(v) != 0 {
			f.add(dk, "index entry has a %d-byte value, want none", len(v))
		}
		if f.created == nil {
			f.created = map[string][]time.Time{}
		}
		f.created[p.run] = append(f.created[p.run], createdOf(k[len(prefixIdxCre):]))
	case kindProgress:
		var pr Progress
		if err := decodeJSON(k, v, &pr); err != nil {
			f.add(dk, "%v", err)
		}
		f.progress = append(f.progress, p.run)
	case kindIdxStatus:
		if len(v) != 0 {
			f.add(dk, "index entry has a %d-byte value, want none", len(v))
		}
		f.statuses = append(f.statuses, p)
	case kindCkptChunk, kindBlobChunk:
		c := chunkSeen{n: p.chunk, len: len(v), crc: crc32.Checksum(v, castagnoli), owner: stepID{p.run, p.step}}
		if p.kind == kindBlobChunk {
			c.blob = p.ns + "/" + p.bkey
		}
		tk := tensorKeyOf(p)
		f.chunks[tk] = append(f.chunks[tk], c)
	case kindIntentBlob:
		if len(v) != 0 {
			f.add(dk, "intent has a %d-byte value, want none", len(v))
		}
		f.blobIntent[p.ns+"/"+p.bkey] = true
	case kindV1RunMeta:
		f.add(dk, "a format-1 run record: the store was not migrated")
	case kindCkptMeta:
		var m CheckpointMeta
		if err := decodeJSON(k, v, &m); err != nil {
			f.add(dk, "%v", err)
			m.Tensors = []string{}
		}
		f.ckptMeta[stepID{p.run, p.step}] = m.Tensors
	case kindCkptTensor:
		f.checkTensor(p, k, v)
		id := stepID{p.run, p.step}
		f.ckptTensor[id] = append(f.ckptTensor[id], p.name)
	case kindCollect:
		if _, err := decodeCollected(k, v, p.collector, p.step, p.name); err != nil {
			f.add(dk, "%v", err)
		}
	case kindEvent:
		var e Event
		if err := decodeJSON(k, v, &e); err != nil {
			f.add(dk, "%v", err)
		}
	case kindIdxName, kindIdxTag:
		if len(v) != 0 {
			f.add(dk, "index entry has a %d-byte value, want none", len(v))
		}
		if p.kind == kindIdxName {
			f.names = append(f.names, p)
		} else {
			f.tags = append(f.tags, p)
		}
	case kindBlobMeta:
		var r blobRecord
		if err := decodeJSON(k, v, &r); err != nil {
			f.add(dk, "%v", err)
			r.Tensors = []string{}
		}
		f.blobMeta[p.ns+"/"+p.bkey] = r.Tensors
	case kindBlobTensor:
		f.checkTensor(p, k, v)
		b := p.ns + "/" + p.bkey
		f.blobTensor[b] = append(f.blobTensor[b], p.name)
	case kindIntentCkpt:
		if len(v) != 0 {
			f.add(dk, "intent has a %d-byte value, want none", len(v))
		}
		f.intents[stepID{p.run, p.step}] = true
	case kindRunOther:
		f.add(dk, "key under run/%s/ matches no known layout", p.run)
	default:
		f.add(dk, "key matches no known layout")
	}
}

func (f *fsckState) crossCheck() {
	if !f.version {
		f.add(keyVersion, "missing")
	}
	for _, id := range slices.Sorted(maps.Keys(f.runKeys)) {
		if _, ok := f.runs[id]; !ok {
			f.add("run/"+id+"/", "%d keys belong to a run with no record (a delete cut short? DeleteRun finishes it)", f.runKeys[id])
		}
	}
	ckptKey := func(id stepID) string {
		return "run/" + id.owner + "/ckpt/" + strconv.FormatUint(id.step, 10) + "/"
	}
	for _, id := range sortedStepIDs(f.ckptTensor, f.ckptMeta) {
		listed, hasMeta := f.ckptMeta[id]
		stored := f.ckptTensor[id]
		if _, ok := f.runs[id.owner]; !ok {
			continue // reported as keys of a run with no record
		}
		if !hasMeta && f.intents[id] {
			continue // a write cut short; the next writable open removes it (intent.go)
		}
		if !hasMeta {
			f.add(ckptKey(id), "incomplete checkpoint: %d tensors and no meta (ignored; saving this step again replaces them)", len(stored))
			continue
		}
		f.compareTensors(ckptKey(id), listed, stored)
	}
	for _, b := range sortedKeys2(f.blobTensor, f.blobMeta) {
		listed, hasMeta := f.blobMeta[b]
		if !hasMeta && f.blobIntent[b] {
			continue // a write cut short; the next writable open removes it
		}
		if !hasMeta {
			f.add("blob/"+b+"/", "incomplete blob: %d tensors and no meta (ignored)", len(f.blobTensor[b]))
			continue
		}
		f.compareTensors("blob/"+b+"/", listed, f.blobTensor[b])
	}
	f.checkChunks(func(at manifestAt) bool {
		if at.owner != "" {
			_, hasMeta := f.blobMeta[at.owner]
			return !hasMeta // an incomplete blob is reported above
		}
		_, hasMeta := f.ckptMeta[at.ckpt]
		_, hasRun := f.runs[at.ckpt.owner]
		return !hasMeta || !hasRun // reported above
	})
	indexed := map[string]bool{}
	for _, e := range f.names {
		m, ok := f.runs[e.run]
		indexed["name\x00"+e.name+"\x00"+e.run] = true
		switch {
		case !ok:
			f.add(prefixIdxNam+e.name+"/"+e.run, "index entry for a run that does not exist")
		case m != nil && m.Name != e.name:
			f.add(prefixIdxNam+e.name+"/"+e.run, "index entry is stale: the run is named %q", m.Name)
		}
	}
	for _, e := range f.statuses {
		m, ok := f.runs[e.run]
		indexed["status\x00"+e.name+"\x00"+e.run] = true
		switch {
		case !ok:
			f.add(prefixIdxSt+e.name+"/"+e.run, "index entry for a run that does not exist")
		case m != nil && m.Status != e.name:
			f.add(prefixIdxSt+e.name+"/"+e.run, "index entry is stale: the run is %s", m.Status)
		}
	}
	for _, e := range f.tags {
		m, ok := f.runs[e.run]
		indexed["tag\x00"+e.name+"\x00"+e.run] = true
		switch {
		case !ok:
			f.add(prefixIdxTag+e.name+"/"+e.run, "index entry for a run that does not exist")
		case m != nil && !slices.Contains(m.Tags, e.name):
			f.add(prefixIdxTag+e.name+"/"+e.run, "index entry is stale: the run has no such tag")
		}
	}
	for _, id := range slices.Sorted(maps.Keys(f.runs)) {
		m := f.runs[id]
		if m == nil {
			continue
		}
		if m.Name != "" && !indexed["name\x00"+m.Name+"\x00"+id] {
			f.add("rec/"+id, "name %q is missing from the name index", m.Name)
		}
		for _, t := range m.Tags {
			if !indexed["tag\x00"+t+"\x00"+id] {
				f.add("rec/"+id, "tag %q is missing from the tag index", t)
			}
		}
		if !indexed["status\x00"+m.Status+"\x00"+id] {
			f.add("rec/"+id, "status %q is missing from the status index", m.Status)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(f.summaries)) {
		m, ok := f.runs[id]
		v := f.summaries[id]
		switch {
		case !ok:
			f.add(prefixSum+id, "summary of a run that does not exist")
		case m != nil && v != nil && !summaryMatches(*m, v):
			f.add(prefixSum+id, "summary is stale: it differs from the record (listing shows it; the next update of the run rewrites it)")
		}
	}
	for _, id := range slices.Sorted(maps.Keys(f.runs)) {
		if _, ok := f.summaries[id]; !ok && f.runs[id] != nil {
			f.add("rec/"+id, "the run has no summary at %s%s: listing does not show it", prefixSum, id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(f.created)) {
		m, ok := f.runs[id]
		for _, c := range f.created[id] {
			key := displayKey(idxCreatedKey(c, id))
			switch {
			case !ok:
				f.add(key, "index entry for a run that does not exist")
			case m != nil && !m.Created.Equal(c):
				f.add(key, "index entry is stale: the run was created %s", m.Created.UTC().Format(time.RFC3339Nano))
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(f.runs)) {
		if m := f.runs[id]; m != nil && !slices.ContainsFunc(f.created[id], m.Created.Equal) {
			f.add("rec/"+id, "the run is missing from the creation-order index: lens runs --json does not show it")
		}
	}
	for _, id := range f.progress {
		if m, ok := f.runs[id]; !ok {
			f.add(prefixProg+id, "progress of a run that does not exist")
		} else if m != nil && m.Status != StatusRunning {
			f.add(prefixProg+id, "progress of a run that is %s, not running", m.Status)
		}
	}
}

func (f *fsckState) compareTensors(key string, listed, stored []string) {
	for _, n := range listed {
		if !slices.Contains(stored, n) {
			f.add(key+"t/"+n, "listed in the meta but missing")
		}
	}
	for _, n := range stored {
		if !slices.Contains(listed, n) {
			f.add(key+"t/"+n, "stored but not listed in the meta")
		}
	}
}

func sortedKeys2(a, b map[string][]string) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

func sortedStepIDs(a, b map[stepID][]string) []stepID {
	seen := map[stepID]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	out := make([]stepID, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.SortFunc(out, func(x, y stepID) int {
		if x.owner != y.owner {
			if x.owner < y.owner {
				return -1
			}
			return 1
		}
		switch {
		case x.step < y.step:
			return -1
		case x.step > y.step:
			return 1
		}
		return 0
	})
	return out
}
