package secret

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	env := map[string]string{"HF_TOKEN": "hf_abc/def+ghijkl", "WANDB_API_KEY": "short"}
	r := FromEnv(func(k string) string { return env[k] }).With("W&B key", "wandbKEY123", BasicAuth("api", "wandbKEY123"))
	cases := []struct{ in, want string }{
		{"token hf_abc/def+ghijkl in a message", "token [HF_TOKEN redacted] in a message"},
		{"hf_abc/def+ghijklhf_abc/def+ghijkl", "[HF_TOKEN redacted][HF_TOKEN redacted]"},
		{"GET /x?t=hf_abc%2Fdef%2Bghijkl", "GET /x?t=[HF_TOKEN redacted]"},
		{"path /hf_abc%2Fdef+ghijkl/", "path /[HF_TOKEN redacted]/"},
		{"Authorization: Basic " + BasicAuth("api", "wandbKEY123"), "Authorization: Basic [W&B key redacted]"},
		{"no secret, and short values like short stay", "no secret, and short values like short stay"},
	}
	for _, c := range cases {
		if got := r.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	var nilR *Redactor
	if got := nilR.Redact("hf_abc/def+ghijkl"); got != "hf_abc/def+ghijkl" {
		t.Errorf("nil Redactor changed the text: %q", got)
	}
	var b bytes.Buffer
	n, err := r.Writer(&b).Write([]byte("x=hf_abc/def+ghijkl\n"))
	if err != nil || n != 20 || b.String() != "x=[HF_TOKEN redacted]\n" {
		t.Fatalf("Writer: %d %v %q", n, err, b.String())
	}
}

func TestRedactError(t *testing.T) {
	r := (*Redactor)(nil).With("key", "sEcReT-12345")
	plain := errors.New("no secret here")
	if r.Error(plain) != plain {
		t.Error("an error without a secret should pass through unchanged")
	}
	err := r.Error(fmt.Errorf("post https://x/?k=sEcReT-12345: %w", context.Canceled))
	if strings.Contains(err.Error(), "sEcReT") || !strings.Contains(err.Error(), "[key redacted]") {
		t.Errorf("Error = %q", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Error("the redacted error lost errors.Is(context.Canceled)")
	}
	if errors.Unwrap(err) != nil {
		t.Error("the redacted error unwraps to the original text")
	}
}

func TestTokenHidden(t *testing.T) {
	tok := Token("hf_verysecretvalue")
	type opts struct {
		Name  string
		Token Token
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "token", tok, "opts", opts{"n", tok})
	js, err := json.Marshal(opts{"n", tok})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%s %v %q %#v %+v %x", tok, tok, tok, opts{"n", tok}, opts{"n", tok}, tok), string(js), logged.String()} {
		if strings.Contains(s, "verysecret") || !strings.Contains(s, "[redacted]") {
			t.Errorf("token leaked or not marked: %s", s)
		}
	}
	if string(tok) != "hf_verysecretvalue" {
		t.Error("string(tok) must give the value")
	}
}
