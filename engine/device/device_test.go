package device

import (
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	cases := []struct {
		want, got, note, err string
	}{
		{"", CPU, "", ""},
		{"cpu", CPU, "", ""},
		{"auto", CPU, "device auto: training on the CPU", ""},
		{"cuda", "", "", `device = "cuda": this lens was built without the CUDA backend`},
		{"gpu", "", "", `device = "gpu": want "auto", "cpu" or "cuda"`},
	}
	for _, c := range cases {
		got, note, err := Resolve(c.want)
		if got != c.got || !strings.HasPrefix(note, c.note) || (c.note == "" && note != "") {
			t.Errorf("Resolve(%q) = %q, %q", c.want, got, note)
		}
		if (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Resolve(%q) error %v, want %q", c.want, err, c.err)
		}
	}
}
