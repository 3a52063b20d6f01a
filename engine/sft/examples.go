// Package sft prepares supervised fine-tuning data: datasets of examples
// read from JSONL, Parquet or memory in three shapes (plain text,
// prompt/completion, chat messages), tokenized with Hugging Face's loss
// masking (labels ignored on prompt and non-assistant tokens), truncated
// to a maximum length, split into training and held-out examples, and
// served as right-padded batches whose position survives a resumed run.
package sft

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// Shape is what an example holds.
type Shape string

// The recognised shapes, named as TRL names its dataset types.
const (
	ShapeText       Shape = "text"              // {"text"}: every token trains
	ShapeCompletion Shape = "prompt_completion" // {"prompt", "completion"}
	ShapeMessages   Shape = "messages"          // {"messages": [{"role", "content"}, ...]}
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Example is one normalized example; which fields matter depends on the
// dataset's Shape. Where locates it for error messages ("train.jsonl line
// 3", "parquet row 7", "example 2") and is not stored.
type Example struct {
	Text       string    `json:"text,omitempty"`
	Prompt     string    `json:"prompt,omitempty"`
	Completion string    `json:"completion,omitempty"`
	Messages   []Message `json:"messages,omitempty"`
	Where      string    `json:"-"`
}

// Dataset is a list of examples of one shape.
type Dataset struct {
	Name     string
	Shape    Shape
	Examples []Example
}

// Fields maps the shapes' fields to a source's column names; an empty
// name keeps the default ("text", "prompt", "completion", "messages").
// Naming a field picks its shape: Messages, then Prompt or Completion,
// then Text; with none named the shape is read off the first row.
type Fields struct {
	Text       string `json:"text,omitempty"`
	Prompt     string `json:"prompt,omitempty"`
	Completion string `json:"completion,omitempty"`
	Messages   string `json:"messages,omitempty"`
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// shapeOf picks the shape from the named fields, else from the keys of
// the first row.
func (f Fields) shapeOf(first map[string]any, where string) (Shape, error) {
	switch {
	case f.Messages != "":
		return ShapeMessages, nil
	case f.Prompt != "" || f.Completion != "":
		return ShapeCompletion, nil
	case f.Text != "":
		return ShapeText, nil
	}
	has := func(k string) bool { _, ok := first[k]; return ok }
	switch {
	case has("messages"):
		return ShapeMessages, nil
	case has("prompt") && has("completion"):
		return ShapeCompletion, nil
	case has("text"):
		return ShapeText, nil
	}
	return "", fmt.Errorf("%s: none of the fields text, prompt+completion or messages (it has %s); name yours with text=, prompt=/completion= or messages=", where, keysOf(first))
}

// columns are the source columns a shape reads.
func (f Fields) columns(s Shape) []string {
	switch s {
	case ShapeMessages:
		return []string{or(f.Messages, "messages")}
	case ShapeCompletion:
		return []string{or(f.Prompt, "prompt"), or(f.Completion, "completion")}
	}
	return []string{or(f.Text, "text")}
}

func keysOf(m map[string]any) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, fmt.Sprintf("%q", k))
	}
	sort.Strings(ks)
	if len(ks) == 0 {
		return "no fields"
	}
	return strings.Join(ks, ", ")
}

// str reads a string field; Parquet's untyped byte arrays count as text.
func str(row map[string]any, key, where string) (string, error) {
	v, ok := row[key]
	if !ok || v == nil {
		return "", fmt.Errorf("%s: missing field %q (it has %s)", where, key, keysOf(row))
	}
	switch v := v.(type) {
	case string:
		return v, nil
	case []byte:
		return string(v), nil
	}
	return "", fmt.Errorf("%s: field %q: want a string, got %s", where, key, jsonType(v))
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64, float32, int, int32, int64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// normalize turns one row into an example of shape s.
func (f Fields) normalize(s Shape, row map[string]any, where string) (Example, error) {
	ex := Example{Where: where}
	var err error
	switch s {
	case ShapeText:
		ex.Text, err = str(row, or(f.Text, "text"), where)
	case ShapeCompletion:
		if ex.Prompt, err = str(row, or(f.Prompt, "prompt"), where); err == nil {
			ex.Completion, err = str(row, or(f.Completion, "completion"), where)
		}
	case ShapeMessages:
		key := or(f.Messages, "messages")
		v, ok := row[key]
		if !ok || v == nil {
			return ex, fmt.Errorf("%s: missing field %q (it has %s)", where, key, keysOf(row))
		}
		list, ok := v.([]any)
		if !ok {
			return ex, fmt.Errorf("%s: field %q: want a list of {role, content}, got %s", where, key, jsonType(v))
		}
		if len(list) == 0 {
			return ex, fmt.Errorf("%s: field %q: no messages", where, key)
		}
		for i, m := range list {
			mm, ok := m.(map[string]any)
			if !ok {
				return ex, fmt.Errorf("%s: field %q: message %d: want an object with role and content, got %s", where, key, i, jsonType(m))
			}
			at := fmt.Sprintf("%s: field %q: message %d", where, key, i)
			var msg Message
			if msg.Role, err = str(mm, "role", at); err != nil {
				return ex, err
			}
			if msg.Content, err = str(mm, "content", at); err != nil {
				return ex, err
			}
			ex.Messages = append(ex.Messages, msg)
		}
	default:
		return ex, fmt.Errorf("unknown example shape %q", s)
	}
	return ex, err
}

// FromRows normalizes rows (e.g. built in a script) into a dataset; rows
// are named "<name> example i" (from 0) in errors.
func FromRows(name string, rows []map[string]any, f Fields) (Dataset, error) {
	where := make([]string, len(rows))
	for i := range rows {
		where[i] = fmt.Sprintf("%s example %d", name, i)
	}
	return Normalize(name, rows, where, f)
}

// Normalize is FromRows with each row's location given (where[i], e.g.
// the file line a reshaped row came from).
func Normalize(name string, rows []map[string]any, where []string, f Fields) (Dataset, error) {
	if len(rows) == 0 {
		return Dataset{}, fmt.Errorf("dataset %s: no examples", name)
	}
	if len(where) != len(rows) {
		return Dataset{}, fmt.Errorf("dataset %s: %d rows but %d locations", name, len(rows), len(where))
	}
	s, err := f.shapeOf(rows[0], where[0])
	if err != nil {
		return Dataset{}, err
	}
	d := Dataset{Name: name, Shape: s}
	for i, r := range rows {
		ex, err := f.normalize(s, r, where[i])
		if err != nil {
			return Dataset{}, err
		}
		d.Examples = append(d.Examples, ex)
	}
	return d, nil
}

// maxLine is the longest JSONL line read (bufio.Reader grows to it).
const maxLine = 64 << 20

// ReadJSONL reads one JSON object per line; blank lines are skipped. A
// line that is not a JSON object is an error naming the file and line.
func ReadJSONL(path string, f Fields) (Dataset, error) {
	d := Dataset{Name: filepath.Base(path)}
	err := eachJSONL(path, func(row map[string]any, where string) error {
		if d.Shape == "" {
			var err error
			if d.Shape, err = f.shapeOf(row, where); err != nil {
				return err
			}
		}
		ex, err := f.normalize(d.Shape, row, where)
		d.Examples = append(d.Examples, ex)
		return err
	})
	if err != nil {
		return Dataset{}, err
	}
	return d, nil
}

// eachJSONL calls fn with each line's object and where it is.
func eachJSONL(path string, fn func(row map[string]any, where string) error) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	defer fh.Close()
	r := bufio.NewReaderSize(fh, 1<<16)
	rows := 0
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("dataset %s line %d: %w", path, line, err)
		}
		if len(b) > maxLine {
			return fmt.Errorf("dataset %s line %d: longer than %d bytes", path, line, maxLine)
		}
		if t := bytes.TrimSpace(b); len(t) > 0 {
			where := fmt.Sprintf("%s line %d", path, line)
			var row map[string]any
			dec := json.NewDecoder(bytes.NewReader(t))
			dec.UseNumber()
			if jerr := dec.Decode(&row); jerr != nil || row == nil || dec.More() {
				if jerr == nil {
					jerr = errors.New("want one JSON object")
				}
				return fmt.Errorf("%s: invalid JSON: %v", where, jerr)
			}
			if ferr := fn(row, where); ferr != nil {
				return ferr
			}
			rows++
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if rows == 0 {
		return fmt.Errorf("dataset %s: no examples", path)
	}
	return nil
}

// ReadParquet reads a Parquet file's rows (with
// github.com/parquet-go/parquet-go). The columns the shape needs are
// checked against the file's schema first, so a file of another schema
// fails naming the missing column; a messages column is a list of
// structs with role and content, as Hugging Face datasets write it.
func ReadParquet(path string, f Fields) (ds Dataset, err error) {
	pf, closeFile, err := openParquet(path)
	if err != nil {
		return Dataset{}, err
	}
	defer closeFile()
	defer func() {
		// The library panics on rows that do not fit its schema walk.
		if r := recover(); r != nil {
			err = fmt.Errorf("dataset %s: reading Parquet rows: %v", path, r)
		}
	}()
	cols := map[string]any{}
	for _, fl := range pf.Schema().Fields() {
		cols[fl.Name()] = true
	}
	s, err := f.shapeOf(cols, "dataset "+path)
	if err != nil {
		return Dataset{}, err
	}
	for _, c := range f.columns(s) {
		if _, ok := cols[c]; !ok {
			return Dataset{}, fmt.Errorf("dataset %s: no column %q for %s examples (columns: %s)", path, c, s, keysOf(cols))
		}
	}
	d := Dataset{Name: filepath.Base(path), Shape: s}
	err = eachParquetRow(pf, path, func(row map[string]any, where string) error {
		ex, err := f.normalize(s, row, where)
		d.Examples = append(d.Examples, ex)
		return err
	})
	if err != nil {
		return Dataset{}, err
	}
	return d, nil
}

// eachParquetRow calls fn with each row of pf as JSON would decode it.
func eachParquetRow(pf *parquet.File, path string, fn func(row map[string]any, where string) error) error {
	r := parquet.NewReader(pf)
	defer r.Close()
	n := 0
	for ; ; n++ {
		row := map[string]any{}
		if err := r.Read(&row); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("dataset %s row %d: %w", path, n, err)
		}
		if err := fn(row, fmt.Sprintf("%s row %d", path, n)); err != nil {
			return err
		}
	}
	if n == 0 {
		return fmt.Errorf("dataset %s: no examples", path)
	}
	return nil
}

// openParquet opens a Parquet file for reading.
func openParquet(path string) (*parquet.File, func() error, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("dataset: %w", err)
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, nil, fmt.Errorf("dataset: %w", err)
	}
	pf, err := parquet.OpenFile(fh, st.Size())
	if err != nil {
		fh.Close()
		return nil, nil, fmt.Errorf("dataset %s: not a Parquet file: %w", path, err)
	}
	return pf, fh.Close, nil
}

// FormatOf is the format of a dataset file: format itself when given,
// else by the extension (.jsonl/.json/.ndjson, .parquet/.pq).
func FormatOf(path, format string) (string, error) {
	if format == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".jsonl", ".json", ".ndjson":
			return "jsonl", nil
		case ".parquet", ".pq":
			return "parquet", nil
		}
		return "", fmt.Errorf("dataset %s: unknown extension %q; give the format (jsonl or parquet)", path, filepath.Ext(path))
	}
	if format != "jsonl" && format != "parquet" {
		return "", fmt.Errorf("dataset %s: format %q: want jsonl or parquet", path, format)
	}
	return format, nil
}

// EachRow calls fn with every row of a dataset file as it is, before any
// field mapping (for a caller that reshapes rows itself), and where the
// row is ("file line 3", "file row 2").
func EachRow(path, format string, fn func(row map[string]any, where string) error) (err error) {
	if format, err = FormatOf(path, format); err != nil {
		return err
	}
	if format == "jsonl" {
		return eachJSONL(path, fn)
	}
	pf, closeFile, err := openParquet(path)
	if err != nil {
		return err
	}
	defer closeFile()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dataset %s: reading Parquet rows: %v", path, r)
		}
	}()
	return eachParquetRow(pf, path, fn)
}

// Read reads a dataset file in format ("jsonl" or "parquet"; empty: by
// the extension).
func Read(path, format string, f Fields) (Dataset, error) {
	format, err := FormatOf(path, format)
	if err != nil {
		return Dataset{}, err
	}
	if format == "jsonl" {
		return ReadJSONL(path, f)
	}
	return ReadParquet(path, f)
}
