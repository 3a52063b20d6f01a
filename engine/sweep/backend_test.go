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

// SlurmJob reads the job's identity through the getenv it is given (the
// engine itself reads no environment).
func TestSlurmJob(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"SLURM_JOB_ID": "77"}, "77"},
		{map[string]string{"SLURM_JOB_ID": "78", "SLURM_ARRAY_JOB_ID": "70", "SLURM_ARRAY_TASK_ID": "3"}, "70_3"},
		{map[string]string{"SLURM_JOB_ID": "78", "SLURM_ARRAY_JOB_ID": "70"}, "78"},
	}
	for _, c := range cases {
		if got := SlurmJob(func(k string) string { return c.env[k] }); got != c.want {
			t.Errorf("SlurmJob(%v) = %q, want %q", c.env, got, c.want)
		}
	}
}
