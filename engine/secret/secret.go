// Package secret keeps credentials out of everything lens writes. A Token
// formats as "[redacted]" wherever it is printed, logged or marshalled; a
// Redactor replaces the secrets it was given by a marker naming them in
// run records, events, error messages and the CLI's output.
//
// The package reads no environment: cmd/lens reads the variables named in
// Vars once and builds the Redactor (FromEnv) and the integrations' tokens
// from them; the store (kv) and the integrations get them as values.
package secret

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
)

// Vars are the environment variables whose values are secrets.
var Vars = []string{"HF_TOKEN", "WANDB_API_KEY", "HUGGING_FACE_HUB_TOKEN"}

// MinLen is the shortest value a Redactor replaces: shorter ones (a test's
// "x") would redact ordinary text, and no real credential is that short.
const MinLen = 8

const hidden = "[redacted]"

// Token is a credential. It formats as "[redacted]" everywhere (fmt, slog,
// JSON) so that printing a struct that holds one can never leak it; the
// value is string(t), for the one place that sends it.
type Token string

// String hides the token.
func (Token) String() string { return hidden }

// GoString hides the token from %#v.
func (Token) GoString() string { return `"` + hidden + `"` }

// Format hides the token from every fmt verb.
func (Token) Format(f fmt.State, _ rune) { fmt.Fprint(f, hidden) }

// LogValue hides the token from slog.
func (Token) LogValue() slog.Value { return slog.StringValue(hidden) }

// MarshalJSON hides the token from encoding/json.
func (Token) MarshalJSON() ([]byte, error) { return []byte(`"` + hidden + `"`), nil }

// BasicAuth is the value of an HTTP basic-auth header for user and t
// without "Basic ", the form in which a server or proxy may echo it.
func BasicAuth(user string, t Token) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + string(t)))
}

// Redactor replaces known secrets, in every form it was given, by
// "[NAME redacted]". It is immutable (With returns a new one), so one can
// be shared by goroutines; a nil *Redactor redacts nothing.
type Redactor struct {
	rules []rule
}

type rule struct{ form, marker string }

// With returns a Redactor that also replaces t, its URL-escaped forms and
// the extra forms given (e.g. BasicAuth), by "[name redacted]". A token
// shorter than MinLen is ignored.
func (r *Redactor) With(name string, t Token, forms ...string) *Redactor {
	out := &Redactor{}
	if r != nil {
		out.rules = append(out.rules, r.rules...)
	}
	if len(t) < MinLen {
		return out
	}
	marker := "[" + name + " redacted]"
	for _, f := range append([]string{string(t), url.QueryEscape(string(t)), url.PathEscape(string(t))}, forms...) {
		dup := false
		for _, x := range out.rules {
			dup = dup || x.form == f
		}
		if !dup && len(f) >= MinLen {
			out.rules = append(out.rules, rule{f, marker})
		}
	}
	return out
}

// FromEnv is the Redactor of the Vars, their values read through getenv
// (cmd/lens passes os.Getenv).
func FromEnv(getenv func(string) string) *Redactor {
	var r *Redactor
	for _, name := range Vars {
		r = r.With(name, Token(getenv(name)))
	}
	return r
}

// Redact replaces every secret found in s.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	for _, x := range r.rules {
		if strings.Contains(s, x.form) {
			s = strings.ReplaceAll(s, x.form, x.marker)
		}
	}
	return s
}

// Error returns err with its message redacted. When the message held a
// secret the result does not unwrap to err (whose text holds it) but still
// matches errors.Is for whatever err matches, e.g. context.Canceled.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := r.Redact(msg); red != msg {
		return redactedError{msg: red, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string        { return e.msg }
func (e redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// Writer redacts what passes through it to w. A secret split across two
// Write calls is not caught; lens writes whole lines.
func (r *Redactor) Writer(w io.Writer) io.Writer { return Writer{W: w, R: r} }

// Writer redacts what passes through it.
type Writer struct {
	W io.Writer
	R *Redactor
}

func (w Writer) Write(p []byte) (int, error) {
	red := w.R.Redact(string(p))
	if red == string(p) {
		return w.W.Write(p)
	}
	if _, err := io.WriteString(w.W, red); err != nil {
		return 0, err
	}
	return len(p), nil
}
