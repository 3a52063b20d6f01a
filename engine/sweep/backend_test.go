package sweep

import "testing"

func TestCheckBackend(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{{BackendInline, true}, {BackendLocal, true}, {BackendSlurm, true}, {"", false}, {"cloud", false}, {"Local", false}}
	for _, c := range cases {
		err := CheckBackend(c.name)
		if (err == nil) != c.ok {
			t.Errorf("CheckBackend(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if err != nil && err.Error() != `backend "`+c.name+`": want inline, local or slurm` {
			t.Errorf("CheckBackend(%q) message %q", c.name, err)
		}
	}
}
