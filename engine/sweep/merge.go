package sweep

import (
	"errors"
	"fmt"
	"log/slog"

	"lens/engine/runs"
	"lens/kv"
)

// Merged is one run merged from a shard.
type Merged struct {
	Run     kv.RunMeta // the shard's copy
	Outcome kv.MergeOutcome
}

// MergeShard merges every run of the store shard in shardDir into dst.
// The shard is opened read-only, so its writer must have exited. Every run
// is checked before any is merged: a shard of another store format version
// (the error wraps *kv.VersionError) or with a corrupt value (wraps
// kv.ErrCorrupt) merges nothing. Each run is merged atomically and
// idempotently (kv.Store.MergeRun); a base model the runs reference by blob
// is copied along when dst lacks it.
func MergeShard(dst *kv.Store, shardDir string, log *slog.Logger) ([]Merged, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := kv.Open(shardDir, kv.Options{ReadOnly: true, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", shardDir, err)
	}
	defer src.Close()
	list, err := src.ListRuns()
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", shardDir, err)
	}
	for _, m := range list {
		if err := src.CheckRun(m.ID); err != nil {
			return nil, fmt.Errorf("shard %s: nothing merged: %w", shardDir, err)
		}
	}
	var out []Merged
	for _, m := range list {
		if err := copyBase(dst, src, m); err != nil {
			return out, fmt.Errorf("shard %s: run %s: %w", shardDir, m.ID, err)
		}
		o, err := dst.MergeRun(src, m.ID)
		if err != nil {
			return out, fmt.Errorf("shard %s: %w", shardDir, err)
		}
		out = append(out, Merged{Run: m, Outcome: o})
	}
	return out, nil
}

// copyBase copies the base model blob run m references from src to dst
// when dst lacks it, so the merged run can be reopened (weights, export).
func copyBase(dst, src *kv.Store, m kv.RunMeta) error {
	spec, err := runs.SpecOf(m)
	if err != nil {
		return err
	}
	hash := spec.Base.Blob
	if hash == "" {
		return nil
	}
	if ok, err := dst.HasBlob(baseNS, hash); err != nil || ok {
		return err
	}
	ts, meta, err := src.GetBlob(baseNS, hash)
	if errors.Is(err, kv.ErrNotFound) {
		return nil // a rung snapshot: the workspace already has its base
	}
	if err != nil {
		return fmt.Errorf("base model %s: %w", hash, err)
	}
	return dst.PutBlob(baseNS, hash, ts, meta)
}
