package chat

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tr, fa := true, false
	tests := []struct {
		name     string
		json     string
		template string
		special  map[string]string
		addBOS   *bool
		addEOS   *bool
		maxLen   int64
		err      string
	}{
		{name: "strings", json: `{"chat_template": "{{ bos_token }}", "bos_token": "<s>", "eos_token": "</s>", "pad_token": null, "add_bos_token": true, "add_eos_token": false, "model_max_length": 4096}`,
			template: "{{ bos_token }}", special: map[string]string{"bos_token": "<s>", "eos_token": "</s>"}, addBOS: &tr, addEOS: &fa, maxLen: 4096},
		{name: "added token objects", json: `{"bos_token": {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>", "lstrip": false}, "unk_token": {"content": "<unk>"}}`,
			special: map[string]string{"bos_token": "<｜begin▁of▁sentence｜>", "unk_token": "<unk>"}},
		{name: "named templates", json: `{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}`, template: "D"},
		{name: "no default template", json: `{"chat_template": [{"name": "tool_use", "template": "T"}]}`, err: `chat_template: the list of templates has no "default"`},
		{name: "no-limit placeholder", json: `{"model_max_length": 1000000000000000019884624838656}`, maxLen: 0},
		{name: "float max length", json: `{"model_max_length": 1e30}`, maxLen: 0},
		{name: "bad max length", json: `{"model_max_length": 12.5}`, err: "model_max_length: want an integer"},
		{name: "bad add_bos_token", json: `{"add_bos_token": "yes"}`, err: "add_bos_token: want true, false or null"},
		{name: "bad eos_token", json: `{"eos_token": 7}`, err: "eos_token: want a string or an AddedToken"},
		{name: "bad template", json: `{"chat_template": 3}`, err: "chat_template: want a string or a list"},
		{name: "not json", json: `{"chat_template": `, err: "tokenizer config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.json))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ChatTemplate != tc.template {
				t.Errorf("template %q, want %q", c.ChatTemplate, tc.template)
			}
			if len(c.Special) != len(tc.special) {
				t.Errorf("special %v, want %v", c.Special, tc.special)
			}
			for k, v := range tc.special {
				if c.Special[k] != v {
					t.Errorf("%s = %q, want %q", k, c.Special[k], v)
				}
			}
			if !sameBool(c.AddBOS, tc.addBOS) || !sameBool(c.AddEOS, tc.addEOS) {
				t.Errorf("add_bos/eos %v %v, want %v %v", c.AddBOS, c.AddEOS, tc.addBOS, tc.addEOS)
			}
			if c.ModelMaxLength != tc.maxLen {
				t.Errorf("model_max_length %d, want %d", c.ModelMaxLength, tc.maxLen)
			}
		})
	}
}

func sameBool(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A template with a syntax error is reported with the file it came from.
func TestSyntaxErrorNamesFile(t *testing.T) {
	dir := writeDir(t, map[string]string{"tokenizer_config.json": `{"chat_template": "{% for m in messages %}{{ m.content }}"}`})
	_, err := Load(dir)
	want := filepath.Join(dir, "tokenizer_config.json")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error naming %s", err, want)
	}
	dir = writeDir(t, map[string]string{
		"tokenizer_config.json": `{"chat_template": "ok"}`,
		"chat_template.jinja":   "{% if messages %}unclosed",
	})
	_, err = Load(dir)
	want = filepath.Join(dir, "chat_template.jinja")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error naming %s", err, want)
	}
}

// chat_template.jinja wins over the config's chat_template, as in
// transformers; raise_exception's message comes back typed; reserved
// names cannot be passed as extras; extras reach the template.
func TestTemplateDir(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"tokenizer_config.json": `{"chat_template": "from config", "eos_token": {"content": "</s>"}, "additional_special_tokens": ["<a>", {"content": "<b>"}]}`,
		"chat_template.jinja": "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role: ' + m.content) }}{% endif %}" +
			"{{ m.role }}: {{ m.content | tojson }}{{ eos_token }}\n{% endfor %}{{ additional_special_tokens | join(',') }}{% if flag %}!{% endif %}",
	})
	tpl, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpl.Render([]Message{{"user", `<a href="x">&</a>`}}, Options{Extra: map[string]any{"flag": true}})
	if err != nil {
		t.Fatal(err)
	}
	// tojson leaves HTML characters alone, as transformers' does.
	if want := `user: "<a href=\"x\">&</a>"</s>` + "\n<a>,<b>!"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	_, err = tpl.Render([]Message{{"system", "be brief"}}, Options{})
	var re *RaiseError
	if !errors.As(err, &re) || re.Message != "no system role: be brief" {
		t.Errorf("got %v, want the template's raise_exception message", err)
	}
	if _, err := tpl.Render(nil, Options{Extra: map[string]any{"messages": nil}}); err == nil || !strings.Contains(err.Error(), `"messages"`) {
		t.Errorf("got %v, want an error naming messages", err)
	}
}

// strftime_now formats the current local time with C's directives, as
// transformers' does (Llama 3.1's full template dates its system prompt).
func TestStrftimeNow(t *testing.T) {
	tpl, err := NewTemplate(&Config{ChatTemplate: "{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %b %Y') }}"})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	got, err := tpl.Render(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	for _, now := range []time.Time{before, after} {
		if got == now.Format("2006-01-02")+"|"+now.Format("02 Jan 2006") {
			return
		}
	}
	t.Errorf("got %q, want today as %s", got, before.Format("2006-01-02|02 Jan 2006"))
}

func TestNoTemplate(t *testing.T) {
	dir := writeDir(t, map[string]string{"tokenizer_config.json": `{"bos_token": "<s>"}`})
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "no chat_template") {
		t.Fatalf("got %v, want a missing-template error", err)
	}
}
