package secret

import (
	"bytes"
	"testing"
)

func TestRedact(t *testing.T) {
	t.Setenv("HF_TOKEN", "hf_abcdefghijkl")
	t.Setenv("WANDB_API_KEY", "short")
	cases := []struct{ in, want string }{
		{"token hf_abcdefghijkl in a message", "token [HF_TOKEN redacted] in a message"},
		{"hf_abcdefghijklhf_abcdefghijkl", "[HF_TOKEN redacted][HF_TOKEN redacted]"},
		{"no secret, and short values like short stay", "no secret, and short values like short stay"},
	}
	for _, c := range cases {
		if got := Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	var b bytes.Buffer
	n, err := Writer{&b}.Write([]byte("x=hf_abcdefghijkl\n"))
	if err != nil || n != 18 || b.String() != "x=[HF_TOKEN redacted]\n" {
		t.Fatalf("Writer: %d %v %q", n, err, b.String())
	}
}
