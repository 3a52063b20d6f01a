package train

import (
	"encoding/json"
	"testing"
)

// The NaN handling's defaults live in Defaults/WithDefaults only: a zero
// field gets them, a set one is kept, and a record written without them
// (older runs) reads back to the same values.
func TestNaNDefaults(t *testing.T) {
	cases := []struct {
		name string
		in   Config
		want Config
	}{
		{"zero", Config{}, Config{NaNPolicy: NaNSkip, LRBackoff: 0.5, MaxBadSteps: 5}},
		{"set", Config{NaNPolicy: NaNRollback, LRBackoff: 0.25, MaxBadSteps: 2}, Config{NaNPolicy: NaNRollback, LRBackoff: 0.25, MaxBadSteps: 2}},
	}
	for _, c := range cases {
		got := c.in.WithDefaults()
		if got.NaNPolicy != c.want.NaNPolicy || got.LRBackoff != c.want.LRBackoff || got.MaxBadSteps != c.want.MaxBadSteps {
			t.Errorf("%s: WithDefaults = %q %g %d, want %q %g %d", c.name, got.NaNPolicy, got.LRBackoff, got.MaxBadSteps,
				c.want.NaNPolicy, c.want.LRBackoff, c.want.MaxBadSteps)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	var old Config
	if err := json.Unmarshal([]byte(`{"steps": 10, "nan_policy": "rollback"}`), &old); err != nil {
		t.Fatal(err)
	}
	if d := old.WithDefaults(); d.NaNPolicy != NaNRollback || d.LRBackoff != 0.5 || d.MaxBadSteps != 5 {
		t.Errorf("old record: %+v", d)
	}
	if err := (Config{NaNPolicy: "retry"}).WithDefaults().Validate(); err == nil {
		t.Error("an unknown nan_policy validated")
	}
}
