package kv

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestImportRun(t *testing.T) {
	shard := openTemp(t)
	m := RunMeta{ID: shard.NewRunID(), Name: "trial-3", Tags: []string{"sweep"}, Status: StatusDone}
	if err := shard.CreateRun(m); err != nil {
		t.Fatal(err)
	}
	for step := range 50 {
		shard.AddMetric(m.ID, "loss", step, float64(step))
	}
	if err := shard.SaveCheckpoint(m.ID, CheckpointMeta{Step: 49}, []Tensor{testTensor("w", 5, 5)}); err != nil {
		t.Fatal(err)
	}
	shard.AddEvent(m.ID, Event{Kind: "info", Message: "done"})
	shard = reopen(t, shard, Options{ReadOnly: true})

	ws, err := Open(filepath.Join(t.TempDir(), "ws"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.ImportRun(shard, m.ID); err != nil {
		t.Fatal(err)
	}
	got, err := ws.FindRun("trial-3")
	if err != nil || got.ID != m.ID || got.Status != StatusDone {
		t.Errorf("FindRun after import = %+v, %v", got, err)
	}
	if pts, _ := ws.ReadMetric(m.ID, "loss"); len(pts) != 50 {
		t.Errorf("%d points imported", len(pts))
	}
	if _, ts, err := ws.LoadCheckpoint(m.ID, 49); err != nil || !sameTensors(ts, []Tensor{testTensor("w", 5, 5)}) {
		t.Errorf("checkpoint: %v", err)
	}
	if runs, _ := ws.RunsByTag("sweep"); len(runs) != 1 {
		t.Errorf("tag index: %v", runs)
	}
	if err := ws.ImportRun(shard, m.ID); !errors.Is(err, ErrExists) {
		t.Errorf("second import: %v", err)
	}
	if err := ws.ImportRun(shard, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	if p, err := ws.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck: %v %v", p, err)
	}
}
