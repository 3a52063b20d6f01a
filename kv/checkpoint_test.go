package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckpointRoundTrip(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "c")
	tensors := []Tensor{testTensor("lora_B", 8, 2), testTensor("lora_A", 2, 8), testTensor("big", 300, 300)}
	for _, step := range []int{256, 2, 10} {
		meta := CheckpointMeta{Step: step, State: json.RawMessage(`{"opt_step":3}`), EvalLoss: map[string]float64{"val": 1.5, "diverged": math.Inf(1)}}
		if err := s.SaveCheckpoint(m.ID, meta, tensors); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.Checkpoints(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var steps []int
	for _, c := range list {
		steps = append(steps, c.Step)
	}
	if len(steps) != 3 || steps[0] != 2 || steps[1] != 10 || steps[2] != 256 {
		t.Errorf("steps %v, want [2 10 256]", steps)
	}
	latest, err := s.LatestCheckpoint(m.ID)
	if err != nil || latest.Step != 256 {
		t.Errorf("LatestCheckpoint = %d, %v", latest.Step, err)
	}
	meta, got, err := s.LoadCheckpoint(m.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !sameTensors(got, tensors) {
		t.Error("tensors differ")
	}
	if string(meta.State) != `{"opt_step":3}` || meta.EvalLoss["val"] != 1.5 || !math.IsInf(meta.EvalLoss["diverged"], 1) ||
		strings.Join(meta.Tensors, ",") != "lora_B,lora_A,big" || meta.Time.IsZero() {
		t.Errorf("meta = %+v", meta)
	}

	// Saving a step again replaces it, leaving no tensor of the old one.
	if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 10}, tensors[:1]); err != nil {
		t.Fatal(err)
	}
	if _, got, err := s.LoadCheckpoint(m.ID, 10); err != nil || !sameTensors(got, tensors[:1]) {
		t.Errorf("replaced checkpoint: %d tensors, %v", len(got), err)
	}
	if n := len(rawDump(t, s, ckptStepPrefix(m.ID, 10))); n != 2 {
		t.Errorf("step 10 has %d keys, want meta + 1 tensor", n)
	}

	if err := s.DeleteCheckpoint(m.ID, 2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LoadCheckpoint(m.ID, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted checkpoint: %v", err)
	}
	if err := s.DeleteCheckpoint(m.ID, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if n := len(rawDump(t, s, ckptStepPrefix(m.ID, 2))); n != 0 {
		t.Errorf("%d keys left of the deleted checkpoint", n)
	}
}

func TestSaveCheckpointRejects(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "c")
	tests := []struct {
		name    string
		run     string
		meta    CheckpointMeta
		tensors []Tensor
		want    string
	}{
		{"unknown run", "nope", CheckpointMeta{}, nil, "not found"},
		{"negative step", m.ID, CheckpointMeta{Step: -1}, nil, "negative"},
		{"duplicate tensor", m.ID, CheckpointMeta{}, []Tensor{testTensor("a", 1), testTensor("a", 1)}, "given twice"},
		{"bad shape", m.ID, CheckpointMeta{}, []Tensor{{Name: "a", Shape: []int{2}}}, "needs 2 values"},
		{"no name", m.ID, CheckpointMeta{}, []Tensor{testTensor("", 1)}, "tensor name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.SaveCheckpoint(tt.run, tt.meta, tt.tensors)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SaveCheckpoint = %v, want %q", err, tt.want)
			}
		})
	}
	if list, _ := s.Checkpoints(m.ID); len(list) != 0 {
		t.Errorf("rejected saves left checkpoints: %v", list)
	}
}

// Behaviour 7: tensors without a meta (a save cut short) are not a checkpoint.
func TestCheckpointWithoutMetaIsInvisible(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "c")
	if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 1}, []Tensor{testTensor("w", 2)}); err != nil {
		t.Fatal(err)
	}
	b, _ := encodeTensor(testTensor("w", 2))
	rawSet(t, s, ckptTensorKey(m.ID, 5, "w"), b) // the save of step 5 died before its meta
	list, err := s.Checkpoints(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Step != 1 {
		t.Errorf("Checkpoints = %+v, want only step 1", list)
	}
	if _, _, err := s.LoadCheckpoint(m.ID, 5); !errors.Is(err, ErrNotFound) {
		t.Errorf("LoadCheckpoint of the incomplete step: %v", err)
	}
	problems, _ := s.Fsck()
	if len(problems) != 1 || !strings.Contains(problems[0].Message, "incomplete checkpoint") {
		t.Errorf("Fsck = %v", problems)
	}
	// Saving that step again takes over cleanly.
	if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 5}, []Tensor{testTensor("v", 3)}); err != nil {
		t.Fatal(err)
	}
	if problems, _ := s.Fsck(); len(problems) != 0 {
		t.Errorf("Fsck after re-save = %v", problems)
	}
}

// Behaviour 4: damaged tensor values fail to load with an error naming the key.
func TestCheckpointCorruptTensor(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "c")
	if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 300}, []Tensor{testTensor("w", 4, 4)}); err != nil {
		t.Fatal(err)
	}
	key := ckptTensorKey(m.ID, 300, "w")
	good := rawGet(t, s, key)
	damage := map[string][]byte{
		"flipped byte": func() []byte { b := bytes.Clone(good); b[len(b)-5] ^= 1; return b }(),
		"truncated":    good[:len(good)-3],
		"header only":  good[:10],
	}
	wantKey := "run/" + m.ID + "/ckpt/300/t/w"
	for name, bad := range damage {
		t.Run(name, func(t *testing.T) {
			rawSet(t, s, key, bad)
			_, _, err := s.LoadCheckpoint(m.ID, 300)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), wantKey) {
				t.Errorf("LoadCheckpoint = %v, want ErrCorrupt naming %s", err, wantKey)
			}
			problems, err := s.Fsck()
			if err != nil || len(problems) != 1 || problems[0].Key != wantKey {
				t.Errorf("Fsck = %v, %v", problems, err)
			}
		})
	}
	rawSet(t, s, key, good)
	if _, _, err := s.LoadCheckpoint(m.ID, 300); err != nil {
		t.Errorf("restored value: %v", err)
	}
}

// TestLargeCheckpoints saves checkpoints too large for one transaction in
// two ways, large tensors (stored in the value log) and many small ones
// (stored in the LSM tree, over Badger's transaction size), and checks
// they load back whole and leave Fsck clean.
func TestLargeCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		name     string
		n, elems int
	}{
		{"large tensors", 5, 4 << 20},     // 5 × 16 MiB
		{"many small tensors", 20000, 64}, // 20000 × 256 B
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTemp(t)
			m := newRun(t, s, "big")
			var ts []Tensor
			for i := range tc.n {
				x := testTensor(fmt.Sprintf("t%05d", i), tc.elems)
				x.Data[0] = float32(i)
				ts = append(ts, x)
			}
			require.NoError(t, s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 3}, ts))
			_, got, err := s.LoadCheckpoint(m.ID, 3)
			require.NoError(t, err)
			require.Len(t, got, tc.n)
			for i, x := range got {
				require.Equal(t, float32(i), x.Data[0], x.Name)
				require.Equal(t, ts[i].Data[tc.elems-1], x.Data[tc.elems-1])
			}
			problems, err := s.Fsck()
			require.NoError(t, err)
			require.Empty(t, problems)
		})
	}
}
