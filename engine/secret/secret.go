// Package secret keeps credentials out of everything lens writes: the
// values of the environment variables that hold them (HF_TOKEN,
// WANDB_API_KEY) are replaced by a marker in run records, events, error
// messages and the CLI's output. Integrations read the variables
// themselves; nothing else ever needs the values.
package secret

import (
	"io"
	"os"
	"strings"
)

// Vars are the environment variables whose values are secrets.
var Vars = []string{"HF_TOKEN", "WANDB_API_KEY", "HUGGING_FACE_HUB_TOKEN"}

// minLen keeps short values (a test's "x") from redacting ordinary text.
const minLen = 8

// Redact replaces every secret value found in s by "[NAME redacted]".
func Redact(s string) string {
	for _, name := range Vars {
		v := os.Getenv(name)
		if len(v) >= minLen && strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, "["+name+" redacted]")
		}
	}
	return s
}

// Writer redacts what passes through it. A secret split across two Write
// calls is not caught; lens writes whole lines.
type Writer struct{ W io.Writer }

func (w Writer) Write(p []byte) (int, error) {
	r := Redact(string(p))
	if r == string(p) {
		return w.W.Write(p)
	}
	if _, err := io.WriteString(w.W, r); err != nil {
		return 0, err
	}
	return len(p), nil
}
