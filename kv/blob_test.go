package kv

import (
	"errors"
	"testing"
)

func TestBlob(t *testing.T) {
	s := openTemp(t)
	key := BlobKey([]byte(`{"dim":64}`), []byte("data-hash"))
	if key != BlobKey([]byte(`{"dim":64}`), []byte("data-hash")) || key == BlobKey([]byte(`{"dim":64}data-hash`)) {
		t.Error("BlobKey is not a stable, length-delimited hash")
	}
	if ok, err := s.HasBlob("base-model", key); ok || err != nil {
		t.Errorf("HasBlob before put = %v, %v", ok, err)
	}
	if _, _, err := s.GetBlob("base-model", key); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetBlob before put: %v", err)
	}
	tensors := []Tensor{testTensor("model.embed_tokens.weight", 16, 8), testTensor("model.norm.weight", 8)}
	if err := s.PutBlob("base-model", key, tensors, []byte(`{"steps":100}`)); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, Options{})
	if ok, err := s.HasBlob("base-model", key); !ok || err != nil {
		t.Errorf("HasBlob after put = %v, %v", ok, err)
	}
	got, meta, err := s.GetBlob("base-model", key)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTensors(got, tensors) || string(meta) != `{"steps":100}` {
		t.Errorf("GetBlob = %d tensors, meta %q", len(got), meta)
	}
	// Read a tensor at a time, the same tensors.
	names, meta, err := s.BlobInfo("base-model", key)
	if err != nil || len(names) != 2 || names[0] != tensors[0].Name || string(meta) != `{"steps":100}` {
		t.Errorf("BlobInfo = %v, %q, %v", names, meta, err)
	}
	for i, name := range names {
		one, err := s.BlobTensor("base-model", key, name)
		if err != nil || !sameTensors([]Tensor{one}, tensors[i:i+1]) {
			t.Errorf("BlobTensor %s: %v", name, err)
		}
	}
	if _, err := s.BlobTensor("base-model", key, "absent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("BlobTensor of a tensor not in the blob: %v", err)
	}
	if _, err := s.BlobTensor("base-model", BlobKey([]byte("other")), names[0]); !errors.Is(err, ErrNotFound) {
		t.Errorf("BlobTensor of a blob not there: %v", err)
	}
	if _, _, err := s.BlobInfo("base-model", BlobKey([]byte("other"))); !errors.Is(err, ErrNotFound) {
		t.Errorf("BlobInfo of a blob not there: %v", err)
	}
	// Replacing keeps only the new tensors.
	if err := s.PutBlob("base-model", key, tensors[1:], nil); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.GetBlob("base-model", key); !sameTensors(got, tensors[1:]) {
		t.Errorf("after replace: %+v", got)
	}
	if err := s.DeleteBlob("base-model", key); err != nil {
		t.Fatal(err)
	}
	if n := len(rawDump(t, s, blobPrefix("base-model", key))); n != 0 {
		t.Errorf("%d keys left", n)
	}
	if err := s.PutBlob("a/b", "k", nil, nil); err == nil {
		t.Error("slash in namespace accepted")
	}
}
