package sft

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestReadJSONL(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		fields Fields
		shape  Shape
		want   []Example
	}{
		{"text", `{"text": "hello"}` + "\n\n" + `{"text": "world", "extra": 1}` + "\n", Fields{}, ShapeText,
			[]Example{{Text: "hello"}, {Text: "world"}}},
		{"prompt completion", `{"prompt": "2+2=", "completion": "4"}` + "\n" + `{"completion": "b", "prompt": "a"}`, Fields{}, ShapeCompletion,
			[]Example{{Prompt: "2+2=", Completion: "4"}, {Prompt: "a", Completion: "b"}}},
		{"remapped", `{"instruction": "say hi", "output": "hi", "text": "ignored"}`, Fields{Prompt: "instruction", Completion: "output"}, ShapeCompletion,
			[]Example{{Prompt: "say hi", Completion: "hi"}}},
		{"messages", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`, Fields{}, ShapeMessages,
			[]Example{{Messages: []Message{{"user", "hi"}, {"assistant", "hello"}}}}},
		{"messages win over text", `{"conv": [{"role": "user", "content": "x"}], "text": "t"}`, Fields{Messages: "conv"}, ShapeMessages,
			[]Example{{Messages: []Message{{"user", "x"}}}}},
		{"crlf and unicode", "{\"text\": \"caf\\u00e9 ☕\"}\r\n", Fields{}, ShapeText, []Example{{Text: "café ☕"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "d.jsonl", tc.body)
			d, err := Read(p, "", tc.fields)
			require.NoError(t, err)
			require.Equal(t, tc.shape, d.Shape)
			require.Equal(t, "d.jsonl", d.Name)
			for i := range d.Examples {
				require.Contains(t, d.Examples[i].Where, "d.jsonl line ")
				d.Examples[i].Where = ""
			}
			require.Equal(t, tc.want, d.Examples)
		})
	}
}

func TestReadJSONLErrors(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		fields Fields
		want   []string // substrings of the error
	}{
		{"malformed line", `{"text": "a"}` + "\n" + `{"text": "b"}` + "\n" + `{"text": "c"` + "\n", Fields{}, []string{"bad.jsonl line 3", "invalid JSON"}},
		{"not an object", `{"text": "a"}` + "\n" + `[1, 2]`, Fields{}, []string{"bad.jsonl line 2", "invalid JSON"}},
		{"two objects", `{"text": "a"} {"text": "b"}`, Fields{}, []string{"bad.jsonl line 1", "one JSON object"}},
		{"missing field", `{"prompt": "p", "completion": "c"}` + "\n" + `{"prompt": "p2"}`, Fields{}, []string{"bad.jsonl line 2", `missing field "completion"`, `"prompt"`}},
		{"missing remapped", `{"prompt": "p", "completion": "c"}`, Fields{Prompt: "instruction"}, []string{"bad.jsonl line 1", `missing field "instruction"`}},
		{"wrong type", `{"text": 3}`, Fields{}, []string{"bad.jsonl line 1", `field "text": want a string, got a number`}},
		{"message without role", `{"messages": [{"content": "x"}]}`, Fields{}, []string{"bad.jsonl line 1", "message 0", `missing field "role"`}},
		{"messages not a list", `{"messages": "hi"}`, Fields{}, []string{"line 1", "want a list"}},
		{"unknown shape", `{"question": "q", "answer": "a"}`, Fields{}, []string{"line 1", "none of the fields", `"answer", "question"`}},
		{"empty", "\n\n", Fields{}, []string{"bad.jsonl: no examples"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, "bad.jsonl", tc.body)
			_, err := ReadJSONL(p, tc.fields)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

type pqMsg struct {
	Role    string `parquet:"role"`
	Content string `parquet:"content"`
}

type pqChat struct {
	ID       int64   `parquet:"id"`
	Messages []pqMsg `parquet:"messages,list"`
}

type pqPC struct {
	Instruction string `parquet:"instruction"`
	Output      string `parquet:"output"`
	Score       float64
}

func writeParquet[T any](t *testing.T, name string, rows []T) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, parquet.Write(&buf, rows))
	return writeFile(t, name, buf.String())
}

func TestReadParquet(t *testing.T) {
	chat := writeParquet(t, "chat.parquet", []pqChat{
		{1, []pqMsg{{"system", "be brief"}, {"user", "hi"}, {"assistant", "hello"}}},
		{2, []pqMsg{{"user", "2+2?"}, {"assistant", "4"}, {"user", "and 3+3?"}, {"assistant", "6"}}},
	})
	d, err := Read(chat, "", Fields{})
	require.NoError(t, err)
	require.Equal(t, ShapeMessages, d.Shape)
	require.Len(t, d.Examples, 2)
	require.Equal(t, []Message{{"user", "2+2?"}, {"assistant", "4"}, {"user", "and 3+3?"}, {"assistant", "6"}}, d.Examples[1].Messages)
	require.Equal(t, chat+" row 1", d.Examples[1].Where)

	pc := writeParquet(t, "pc.parquet", []pqPC{{"add 1 and 1", "2", 0.5}, {"say hi", "hi", 1}})
	d, err = ReadParquet(pc, Fields{Prompt: "instruction", Completion: "output"})
	require.NoError(t, err)
	require.Equal(t, ShapeCompletion, d.Shape)
	require.Equal(t, "say hi", d.Examples[1].Prompt)
	require.Equal(t, "hi", d.Examples[1].Completion)

	// A file of another schema: the error names the file and the column.
	_, err = ReadParquet(chat, Fields{Prompt: "instruction", Completion: "output"})
	require.ErrorContains(t, err, chat)
	require.ErrorContains(t, err, `no column "instruction"`)
	require.ErrorContains(t, err, `"id", "messages"`)
	_, err = ReadParquet(pc, Fields{})
	require.ErrorContains(t, err, "pc.parquet")
	require.ErrorContains(t, err, "none of the fields text, prompt+completion or messages")

	_, err = ReadParquet(writeFile(t, "x.parquet", "not parquet"), Fields{})
	require.ErrorContains(t, err, "not a Parquet file")
	_, err = Read(writeFile(t, "x.csv", "a,b"), "", Fields{})
	require.ErrorContains(t, err, `unknown extension ".csv"`)
}

func TestFromRows(t *testing.T) {
	d, err := FromRows("examples", []map[string]any{{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}}, Fields{})
	require.NoError(t, err)
	require.Equal(t, ShapeCompletion, d.Shape)
	require.Equal(t, "examples example 1", d.Examples[1].Where)
	_, err = FromRows("examples", []map[string]any{{"prompt": "a", "completion": "b"}, {"prompt": "c"}}, Fields{})
	require.ErrorContains(t, err, `examples example 1: missing field "completion"`)
	_, err = FromRows("examples", nil, Fields{})
	require.ErrorContains(t, err, "no examples")
}

func TestSplit(t *testing.T) {
	var d Dataset
	d.Name, d.Shape = "d", ShapeText
	for i := range 40 {
		d.Examples = append(d.Examples, Example{Text: strings.Repeat("x", i+1)})
	}
	tr, ev, err := Split(d, 0.1)
	require.NoError(t, err)
	require.Len(t, ev.Examples, 4)
	require.Len(t, tr.Examples, 36)
	seen := map[string]int{}
	for _, ex := range append(append([]Example{}, tr.Examples...), ev.Examples...) {
		seen[ex.Text]++
	}
	require.Len(t, seen, 40, "the parts cover every example once")
	tr2, ev2, err := Split(d, 0.1)
	require.NoError(t, err)
	require.Equal(t, ev, ev2)
	require.Equal(t, tr, tr2)
	require.NotEqual(t, d.Examples[36:], ev.Examples, "held out by a permutation, not the tail")

	_, ev, err = Split(Dataset{Examples: d.Examples[:3]}, 0.05)
	require.NoError(t, err)
	require.Len(t, ev.Examples, 1, "at least one example is held out")
	_, _, err = Split(Dataset{Name: "one", Examples: d.Examples[:1]}, 0.05)
	require.ErrorContains(t, err, "too few")
}

func TestEachRow(t *testing.T) {
	pc := writeParquet(t, "pc.parquet", []pqPC{{"a", "b", 0.5}})
	js := writeFile(t, "r.jsonl", `{"x": 1}`+"\n\n"+`{"y": "z"}`+"\n")
	var got []string
	for _, p := range []string{pc, js} {
		require.NoError(t, EachRow(p, "", func(row map[string]any, where string) error {
			got = append(got, where+": "+keysOf(row))
			return nil
		}))
	}
	require.Equal(t, []string{pc + ` row 0: "Score", "instruction", "output"`, js + ` line 1: "x"`, js + ` line 3: "y"`}, got)
	d, err := Normalize("n", []map[string]any{{"text": "a"}, {"txt": "b"}}, []string{"f line 1", "f line 2"}, Fields{})
	require.ErrorContains(t, err, `f line 2: missing field "text"`)
	require.Empty(t, d.Examples)
}
