package kv

import (
	"encoding/binary"
	"fmt"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// Intents make the writes that cannot go in one transaction recoverable.
// A checkpoint too large for one Badger transaction, or the removal of one,
// takes several commits; before the first of them the store records
// intent/ckpt/<run id>/<step>, and the last one removes it. A process killed
// in between leaves the intent behind, and the next writable Open finishes
// the job: the step's tensors stay if its meta (the commit point) exists and
// are deleted if it does not. Intents are few and short-lived, so that scan
// costs nothing when the store was closed cleanly, however large it is.
// Fsck accepts a checkpoint's tensors without a meta while an intent covers
// them, because the next writable open removes them. Blobs work the same
// way under intent/blob/<namespace>/<key>, their meta being the commit
// point; a blob is always written in parts, since its tensors (a base
// model) are usually large.

const prefixIntent = "intent/"

func intentCkptPrefix() []byte { return []byte(prefixIntent + "ckpt/") }
func intentCkptKey(id string, step int) []byte {
	return cat(prefixIntent, "ckpt/", id, "/", be64(uint64(step)))
}

func intentBlobPrefix() []byte { return []byte(prefixIntent + "blob/") }
func intentBlobKey(ns, key string) []byte {
	return cat(prefixIntent, "blob/", ns, "/", key)
}

// parseIntentKey parses what follows "intent/".
func parseIntentKey(s string) parsedKey {
	if r, ok := strings.CutPrefix(s, "blob/"); ok {
		ns, key, ok := strings.Cut(r, "/")
		if !ok || ns == "" || key == "" || strings.IndexByte(key, '/') >= 0 {
			return parsedKey{kind: kindUnknown}
		}
		return parsedKey{kind: kindIntentBlob, ns: ns, bkey: key}
	}
	r, ok := strings.CutPrefix(s, "ckpt/")
	if !ok || len(r) < 10 || r[len(r)-9] != '/' {
		return parsedKey{kind: kindUnknown}
	}
	return parsedKey{kind: kindIntentCkpt, run: r[:len(r)-9], step: binary.BigEndian.Uint64([]byte(r[len(r)-8:]))}
}

// Fault points: the places inside multi-commit writes where a crash leaves
// an intent behind, and the commit points around them. Options.Fault is
// called at each, so a test can kill the process at an exact point.
const (
	FaultCheckpointBegin   = "checkpoint/begin"   // nothing of this checkpoint written yet
	FaultCheckpointTensors = "checkpoint/tensors" // a large checkpoint's tensors written, its meta not
	FaultCheckpointSaved   = "checkpoint/saved"   // the checkpoint committed (and, when it fitted, its rotation)
	FaultCheckpointDrop    = "checkpoint/drop"    // an old checkpoint's meta removed, its tensors not yet
	FaultBlobTensors       = "blob/tensors"       // a blob's tensors written, its meta not (step is 0)
)

func (s *Store) fault(point string, step int) {
	if s.onFault != nil {
		s.onFault(point, step)
	}
}

// finishIntents completes or rolls back the multi-commit writes that a
// crash cut short (see the comment at the top of this file).
func (s *Store) finishIntents() error {
	type pending struct {
		key  []byte
		run  string
		step int
	}
	var todo []pending
	err := s.view(func(txn *badger.Txn) error {
		return scanKeys(txn, intentCkptPrefix(), func(k []byte) error {
			p := parseKey(k)
			if p.kind != kindIntentCkpt {
				return fmt.Errorf("unreadable intent key %s", displayKey(k))
			}
			todo = append(todo, pending{append([]byte(nil), k...), p.run, int(p.step)})
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("open store %s: read intents: %w", s.dir, err)
	}
	if err := s.finishBlobIntents(); err != nil {
		return err
	}
	for _, p := range todo {
		var complete bool
		if err := s.view(func(txn *badger.Txn) error {
			var err error
			complete, err = exists(txn, ckptMetaKey(p.run, p.step))
			return err
		}); err != nil {
			return fmt.Errorf("open store %s: finish intent %s: %w", s.dir, displayKey(p.key), err)
		}
		if !complete {
			n, err := s.deletePrefix(ckptStepPrefix(p.run, uint64(p.step)))
			if err != nil {
				return fmt.Errorf("open store %s: finish intent %s: %w", s.dir, displayKey(p.key), err)
			}
			s.log.Info("removed the tensors of a checkpoint cut short by a crash", "run", p.run, "step", p.step, "tensors", n)
		}
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(p.key) }); err != nil {
			return fmt.Errorf("open store %s: finish intent %s: %w", s.dir, displayKey(p.key), err)
		}
	}
	return nil
}

// finishBlobIntents is finishIntents for blobs: a blob whose meta is there
// is complete; one without is removed.
func (s *Store) finishBlobIntents() error {
	var todo []parsedKey
	var keys [][]byte
	err := s.view(func(txn *badger.Txn) error {
		return scanKeys(txn, intentBlobPrefix(), func(k []byte) error {
			p := parseKey(k)
			if p.kind != kindIntentBlob {
				return fmt.Errorf("unreadable intent key %s", displayKey(k))
			}
			todo, keys = append(todo, p), append(keys, append([]byte(nil), k...))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("open store %s: read intents: %w", s.dir, err)
	}
	for i, p := range todo {
		var complete bool
		err := s.view(func(txn *badger.Txn) error {
			var err error
			complete, err = exists(txn, blobMetaKey(p.ns, p.bkey))
			return err
		})
		if err == nil && !complete {
			var n int
			n, err = s.deletePrefix(blobPrefix(p.ns, p.bkey))
			s.log.Info("removed the tensors of a blob cut short by a crash", "blob", p.ns+"/"+p.bkey, "keys", n)
		}
		if err == nil {
			err = s.db.Update(func(txn *badger.Txn) error { return txn.Delete(keys[i]) })
		}
		if err != nil {
			return fmt.Errorf("open store %s: finish intent %s: %w", s.dir, displayKey(keys[i]), err)
		}
	}
	return nil
}
