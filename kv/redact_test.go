package kv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The store redacts only what Options.Redact says, in every text it keeps,
// and reads nothing from the environment: a secret in HF_TOKEN is stored as
// given when no redactor is passed.
func TestRedactOption(t *testing.T) {
	const secret = "hf_planted0123456789"
	t.Setenv("HF_TOKEN", secret) // must not matter to the store
	redact := func(s string) string { return strings.ReplaceAll(s, secret, "[X]") }
	cases := []struct {
		name   string
		redact func(string) string
		want   string
	}{
		{"with redactor", redact, "[X]"},
		{"without", nil, secret},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), ".lens")
			s, err := Open(dir, Options{Redact: c.redact, Command: "lens run x.star -- token=" + secret})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cfg, _ := json.Marshal(map[string]string{"token": secret})
			m := RunMeta{ID: s.NewRunID(), Name: "r", Args: map[string]string{"token": secret}, Config: cfg}
			if err := s.CreateRun(m); err != nil {
				t.Fatal(err)
			}
			if err := s.UpdateRun(m.ID, func(m *RunMeta) error { m.Reason = "failed with " + secret; return nil }); err != nil {
				t.Fatal(err)
			}
			if err := s.AddEvent(m.ID, Event{Kind: "info", Message: "saw " + secret}); err != nil {
				t.Fatal(err)
			}
			got, err := s.GetRun(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			evs, err := s.Events(m.ID)
			if err != nil || len(evs) != 1 {
				t.Fatalf("events %v %v", evs, err)
			}
			holder, err := os.ReadFile(filepath.Join(dir, holderFile))
			if err != nil {
				t.Fatal(err)
			}
			texts := map[string]string{"args": got.Args["token"], "config": string(got.Config), "reason": got.Reason,
				"event": evs[0].Message, "holder": string(holder)}
			for what, text := range texts {
				if !strings.Contains(text, c.want) || (c.redact != nil && strings.Contains(text, secret)) {
					t.Errorf("%s = %q, want it to hold %q", what, text, c.want)
				}
			}
		})
	}
}
