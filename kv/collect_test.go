package kv

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestCollected(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "c")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutCollectedTensor(m.ID, "acts", 256, testTensor("layers.0/out", 2, 3)))
	must(s.PutCollectedJSON(m.ID, "acts", 2, "summary", map[string]float64{"mean": 0.5}))
	must(s.PutCollectedBytes(m.ID, "acts", 2, "raw", []byte{0, 1, 2}))
	must(s.PutCollected(m.ID, "grads", 1,
		Collected{Name: "a", Kind: KindTensor, Tensor: &Tensor{Shape: []int{1}, Data: []float32{7}}},
		Collected{Name: "b", Kind: KindJSON, Data: []byte(`[1,2]`)}))

	all, err := s.ReadCollected(m.ID, "acts")
	must(err)
	var got []string
	for _, c := range all {
		got = append(got, c.Name+"@"+c.Kind)
	}
	if want := []string{"raw@bytes", "summary@json", "layers.0/out@tensor"}; !slices.Equal(got, want) {
		t.Errorf("ReadCollected order %v, want %v", got, want)
	}
	if c := all[2]; c.Step != 256 || c.Collector != "acts" || c.Tensor == nil || !sameTensors([]Tensor{*c.Tensor}, []Tensor{testTensor("layers.0/out", 2, 3)}) {
		t.Errorf("tensor item = %+v", c)
	}
	if string(all[1].Data) != `{"mean":0.5}` || !slices.Equal(all[0].Data, []byte{0, 1, 2}) {
		t.Errorf("data items = %q %v", all[1].Data, all[0].Data)
	}

	step2, err := s.ReadCollectedStep(m.ID, "acts", 2)
	must(err)
	if len(step2) != 2 {
		t.Errorf("step 2 has %d items", len(step2))
	}
	c, err := s.GetCollected(m.ID, "grads", 1, "a")
	must(err)
	if c.Kind != KindTensor || c.Tensor.Name != "a" || c.Tensor.Data[0] != 7 {
		t.Errorf("GetCollected = %+v", c)
	}
	if _, err := s.GetCollected(m.ID, "grads", 1, "zz"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing item: %v", err)
	}
	cols, err := s.Collectors(m.ID)
	must(err)
	if !slices.Equal(cols, []string{"acts", "grads"}) {
		t.Errorf("Collectors = %v", cols)
	}
	steps, err := s.CollectedSteps(m.ID, "acts")
	must(err)
	if !slices.Equal(steps, []int{2, 256}) {
		t.Errorf("CollectedSteps = %v", steps)
	}

	// Damage: an unknown kind tag is reported with the key.
	rawSet(t, s, collectKey(m.ID, "acts", 2, "raw"), []byte("?x"))
	if _, err := s.ReadCollected(m.ID, "acts"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "collect/acts/2/raw") {
		t.Errorf("damaged value: %v", err)
	}
}

func TestPutCollectedRejects(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "c")
	tests := []struct {
		name, run, collector string
		item                 Collected
		want                 string
	}{
		{"unknown run", "nope", "c", Collected{Name: "a", Kind: KindBytes}, "not found"},
		{"slash in collector", m.ID, "a/b", Collected{Name: "a", Kind: KindBytes}, `contains "/"`},
		{"unknown kind", m.ID, "c", Collected{Name: "a", Kind: "pickle"}, "unknown kind"},
		{"bad json", m.ID, "c", Collected{Name: "a", Kind: KindJSON, Data: []byte("{")}, "not valid JSON"},
		{"tensor missing", m.ID, "c", Collected{Name: "a", Kind: KindTensor}, "without a tensor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.PutCollected(tt.run, tt.collector, 1, tt.item)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("PutCollected = %v, want %q", err, tt.want)
			}
		})
	}
}
