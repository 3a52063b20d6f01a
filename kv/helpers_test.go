package kv

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// openTemp opens a writable store in a fresh temporary directory and closes
// it when the test ends.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), ".lens"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// reopen closes s and opens its directory again with opts.
func reopen(t *testing.T, s *Store, opts Options) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(s.Dir(), opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func newRun(t *testing.T, s *Store, name string) RunMeta {
	t.Helper()
	m := RunMeta{ID: s.NewRunID(), Name: name, Script: "quickstart.star", Seed: 1}
	if err := s.CreateRun(m); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	got, err := s.GetRun(m.ID)
	if err != nil {
		t.Fatalf("GetRun: %v", err)
	}
	return got
}

// deadPID returns a pid with no process behind it.
func deadPID(t *testing.T) int {
	t.Helper()
	for pid := 4_000_000; pid > 1_000; pid -= 7919 {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return pid
		}
	}
	t.Fatal("no free pid found")
	return 0
}

// rawSet writes a key behind the API's back, to simulate damage.
func rawSet(t *testing.T, s *Store, key, val []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, val) }); err != nil {
		t.Fatal(err)
	}
}

func rawDelete(t *testing.T, s *Store, key []byte) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(key) }); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, s *Store, key []byte) []byte {
	t.Helper()
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		v, err = getValue(txn, key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawDump returns every key and value under prefix, keys in readable form.
func rawDump(t *testing.T, s *Store, prefix []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := s.db.View(func(txn *badger.Txn) error {
		return scan(txn, prefix, func(k, v []byte) error {
			out[displayKey(k)] = bytes.Clone(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTensors(a, b []Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || !slices.Equal(a[i].Shape, b[i].Shape) || len(a[i].Data) != len(b[i].Data) {
			return false
		}
		for j := range a[i].Data {
			if math.Float32bits(a[i].Data[j]) != math.Float32bits(b[i].Data[j]) {
				return false
			}
		}
	}
	return true
}

func testTensor(name string, shape ...int) Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = float32(i)*0.5 - 3
	}
	return Tensor{Name: name, Shape: shape, Data: data}
}

func isRoot() bool { return os.Geteuid() == 0 }

// smallChunks makes tensors over n encoded bytes go in chunks for the rest
// of the test, so chunking is tested without large tensors.
func smallChunks(t *testing.T, n int) {
	old := chunkBytes
	chunkBytes = n
	t.Cleanup(func() { chunkBytes = old })
}
