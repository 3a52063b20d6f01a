package report

import (
	"bytes"
	"encoding/xml"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.html and testdata/example.png")

func ptr(v float64) *float64 { return &v }

// sampleDocument is a small report with one item of every kind; its HTML is
// the golden file and the browser test renders it.
func sampleDocument() *Document {
	var steps, r4, r16 []float64
	for i := 0; i <= 60; i++ {
		s := float64(i * 10)
		steps = append(steps, s)
		r4 = append(r4, 1.6+4*math.Exp(-s/150)+0.08*math.Sin(s/13))
		r16 = append(r16, 1.3+4.3*math.Exp(-s/90))
	}
	r16[30] = math.NaN() // a gap
	evalSteps := []float64{0, 200, 400, 600}
	return &Document{
		Title:    "LoRA r=4 vs r=16 on gocode",
		Subtitle: "base: opticks-tiny · 600 steps · lr 2e-3",
		Sections: []Section{
			{
				Title: "Loss",
				Text:  "Training loss per step and held-out loss every 200 steps.\n\nThe dashed line is the loss of a uniform guess over 256 bytes.",
				Items: []any{
					&LineChart{
						Title: "Training loss", XLabel: "step", YLabel: "loss (nats/byte)",
						Series: []Series{
							{Name: "r=4", X: steps, Y: r4},
							{Name: "r=16", X: steps, Y: r16},
							{Name: "eval r=16", X: evalSteps, Y: []float64{5.6, 1.9, 1.5, 1.4}},
							{Name: "diverged", Y: []float64{math.NaN(), math.Inf(1)}},
						},
						Baseline: ptr(math.Log(256)),
					},
					&LineChart{
						Title: "Gradient norm", XLabel: "step", YLabel: "‖g‖", LogY: true,
						Series: []Series{{Name: "r=16", X: evalSteps, Y: []float64{120, 3.5, 0.9, 0.05}}},
					},
					"Both ranks beat the baseline within 50 steps.",
				},
			},
			{
				Title: "Where the update went",
				Items: []any{
					&BarChart{
						Title: "‖ΔW‖ by module", XLabel: "module", YLabel: "Frobenius norm",
						Labels: []string{"q_proj", "k_proj", "v_proj", "o_proj"},
						Values: []float64{0.42, 0.11, 0.57, -0.05},
					},
					&Heatmap{
						Title: "Relative update by layer", XLabel: "module", YLabel: "layer",
						XTicks: []string{"q", "k", "v", "o"}, YTicks: []string{"L0", "L1", "L2"},
						Values: [][]float64{{0.1, 0.02, 0.3, 0.05}, {0.2, math.NaN(), 0.25, 0.04}, {0.15, 0.01, 0.4, 0}},
						Min:    0, Max: 0.4,
					},
					&Scatter{
						Title: "Learning vs forgetting", XLabel: "Δ loss on opticks (forgetting)", YLabel: "Δ loss on gocode (learning)",
						Points: []Point{
							{X: 0.05, Y: 2.1, Label: "r4 lr1e-3", Group: "r=4"},
							{X: 0.12, Y: 2.6, Label: "r4 lr2e-3", Group: "r=4"},
							{X: 0.09, Y: 2.5, Label: "r16 lr1e-3", Group: "r=16"},
							{X: 0.21, Y: 2.9, Label: "r16 lr2e-3", Group: "r=16"},
						},
					},
					&Table{
						Title:  "Summary",
						Header: []string{"run", "rank", "final loss", "Δ opticks"},
						Rows: [][]string{
							{"a1b2", "4", "1.62", "+3.1%"},
							{"c3d4", "16", "1.31", "+5.9%"},
						},
					},
				},
			},
		},
	}
}

// node is a parsed XML element.
type node struct {
	name string
	attr map[string]string
	text string // character data directly inside
	kids []*node
}

// parseXML parses data strictly as XML (the report is written so that it is
// both HTML5 and well-formed XML) and returns the root element.
func parseXML(t *testing.T, data string) *node {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(data))
	dec.Strict = true
	root := &node{name: "#document"}
	stack := []*node{root}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "not well-formed XML")
		top := stack[len(stack)-1]
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{name: tok.Name.Local, attr: map[string]string{}}
			for _, a := range tok.Attr {
				n.attr[a.Name.Local] = a.Value
			}
			top.kids = append(top.kids, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			top.text += string(tok)
		}
	}
	require.Len(t, stack, 1, "unclosed elements")
	require.NotEmpty(t, root.kids)
	return root.kids[0]
}

// find returns the elements under n (n included) that satisfy ok.
func (n *node) find(ok func(*node) bool) []*node {
	var out []*node
	if ok(n) {
		out = append(out, n)
	}
	for _, k := range n.kids {
		out = append(out, k.find(ok)...)
	}
	return out
}

func (n *node) allText() string {
	s := n.text
	for _, k := range n.kids {
		s += k.allText()
	}
	return s
}

func byClass(name, class string) func(*node) bool {
	return func(n *node) bool {
		return n.name == name && strings.Contains(" "+n.attr["class"]+" ", " "+class+" ")
	}
}

func TestGolden(t *testing.T) {
	got, err := sampleDocument().HTML()
	require.NoError(t, err)
	path := filepath.Join("testdata", "golden.html")
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./engine/report -run TestGolden -update to create it")
	if !bytes.Equal(got, want) {
		t.Errorf("HTML differs from %s (rerun with -update if the change is intended)", path)
	}
}

func TestDocumentStructure(t *testing.T) {
	data, err := sampleDocument().HTML()
	require.NoError(t, err)
	s := string(data)
	assert.True(t, strings.HasPrefix(s, "<!DOCTYPE html>\n<html lang=\"en\">"))
	for _, banned := range []string{"<script", "<link", "src=", "href=", "@import", "url("} {
		assert.NotContains(t, s, banned, "report must be self-contained")
	}
	root := parseXML(t, s)
	assert.Equal(t, "html", root.name)
	assert.Len(t, root.find(func(n *node) bool { return n.name == "style" }), 1)

	charts := root.find(byClass("svg", "chart"))
	var titles []string
	for _, c := range charts {
		titles = append(titles, c.attr["data-title"])
	}
	assert.Equal(t, []string{"Training loss", "Gradient norm", "‖ΔW‖ by module", "Relative update by layer", "Learning vs forgetting"}, titles)

	tests := []struct {
		chart  string
		series []string
	}{
		// "diverged" has no valid point, so it gets no path.
		{"Training loss", []string{"r=4", "r=16", "eval r=16"}},
		{"Gradient norm", []string{"r=16"}},
	}
	for _, tt := range tests {
		t.Run(tt.chart, func(t *testing.T) {
			var svg *node
			for _, c := range charts {
				if c.attr["data-title"] == tt.chart {
					svg = c
				}
			}
			require.NotNil(t, svg)
			var names []string
			for _, p := range svg.find(byClass("path", "series")) {
				names = append(names, p.attr["data-series"])
				assert.NotEmpty(t, p.attr["d"])
				assert.True(t, strings.HasPrefix(p.attr["d"], "M"))
			}
			assert.Equal(t, tt.series, names)
		})
	}
	assert.Len(t, root.find(byClass("rect", "cell")), 12)
	assert.Len(t, root.find(byClass("rect", "bar")), 4)
	assert.Len(t, root.find(byClass("circle", "point")), 4)
	assert.Len(t, root.find(byClass("line", "baseline")), 1)
	tables := root.find(byClass("table", "table"))
	require.Len(t, tables, 1)
	assert.Equal(t, "Summary", tables[0].attr["data-title"])
	assert.Len(t, tables[0].find(byClass("td", "num")), 6)
	legend := strings.Join(mapText(root.find(byClass("g", "legend"))), "|")
	assert.Contains(t, legend, "diverged (no data)")
}

func mapText(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.allText())
	}
	return out
}

func TestEscaping(t *testing.T) {
	const evil = `<script>alert("x&y")</script>`
	tests := []struct {
		name string
		doc  Document
	}{
		{"document title", Document{Title: evil}},
		{"subtitle", Document{Subtitle: evil}},
		{"section title", Document{Sections: []Section{{Title: evil}}}},
		{"section text", Document{Sections: []Section{{Text: evil}}}},
		{"paragraph item", Document{Sections: []Section{{Items: []any{evil}}}}},
		{"line chart title", Document{Sections: []Section{{Items: []any{&LineChart{Title: evil, Series: []Series{{Y: []float64{1, 2}}}}}}}}},
		{"line chart labels", Document{Sections: []Section{{Items: []any{&LineChart{XLabel: evil, YLabel: evil, Series: []Series{{Y: []float64{1, 2}}}}}}}}},
		{"series name", Document{Sections: []Section{{Items: []any{&LineChart{Series: []Series{{Name: evil, Y: []float64{1, 2}}, {Name: "b"}}}}}}}},
		{"bar labels", Document{Sections: []Section{{Items: []any{&BarChart{Title: evil, Labels: []string{evil}, Values: []float64{1}}}}}}},
		{"heatmap ticks", Document{Sections: []Section{{Items: []any{&Heatmap{Title: evil, XTicks: []string{evil}, YTicks: []string{evil}, Values: [][]float64{{1}}}}}}}},
		{"scatter labels", Document{Sections: []Section{{Items: []any{&Scatter{Title: evil, Points: []Point{{X: 1, Y: 1, Label: evil, Group: evil}}}}}}}},
		{"table", Document{Sections: []Section{{Items: []any{&Table{Title: evil, Header: []string{evil}, Rows: [][]string{{evil}}}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := tt.doc.HTML()
			require.NoError(t, err)
			s := string(data)
			assert.NotContains(t, s, "<script")
			assert.NotContains(t, s, `"x&y"`)
			assert.Contains(t, s, "&lt;script&gt;alert(&#34;x&amp;y&#34;)&lt;/script&gt;")
			root := parseXML(t, s) // still well-formed: nothing broke out of an attribute
			assert.Empty(t, root.find(func(n *node) bool { return n.name == "script" }))
			assert.Contains(t, root.allText()+attrs(root), evil, "text round-trips")
		})
	}
}

// attrs concatenates every attribute value in the tree.
func attrs(n *node) string {
	var b strings.Builder
	for _, v := range n.attr {
		b.WriteString(v)
	}
	for _, k := range n.kids {
		b.WriteString(attrs(k))
	}
	return b.String()
}

func TestEscControlCharacters(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"a\x00b\x1bc", "abc"},
		{"tab\tnewline\n", "tab\tnewline\n"},
		{"bad \xff utf8", "bad \uFFFD utf8"},
		{`'"<>&`, "&#39;&#34;&lt;&gt;&amp;"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, esc(tt.in), "%q", tt.in)
	}
}

func TestHTMLErrors(t *testing.T) {
	tests := []struct {
		name string
		item any
		want string
	}{
		{"unsupported type", 42, "unsupported item type int"},
		{"nil line chart", (*LineChart)(nil), "nil *LineChart"},
		{"nil table", (*Table)(nil), "nil *Table"},
		{"x/y mismatch", &LineChart{Title: "c", Series: []Series{{Name: "s", X: []float64{1, 2}, Y: []float64{1}}}}, `series "s" has 2 x values and 1 y values`},
		{"bar mismatch", &BarChart{Title: "b", Labels: []string{"a"}, Values: []float64{1, 2}}, "1 labels and 2 values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Document{Sections: []Section{{Title: "S", Items: []any{"ok", tt.item}}}}
			_, err := d.HTML()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), `section 1 ("S") item 2`)
		})
	}
}

func TestValueItems(t *testing.T) {
	byPtr, err := (&Document{Sections: []Section{{Items: []any{
		&LineChart{Title: "l", Series: []Series{{Y: []float64{1, 2}}}}, &BarChart{Title: "b"}, &Heatmap{Title: "h"}, &Scatter{Title: "s"}, &Table{Title: "t"},
	}}}}).HTML()
	require.NoError(t, err)
	byValue, err := (&Document{Sections: []Section{{Items: []any{
		LineChart{Title: "l", Series: []Series{{Y: []float64{1, 2}}}}, BarChart{Title: "b"}, Heatmap{Title: "h"}, Scatter{Title: "s"}, Table{Title: "t"},
	}}}}).HTML()
	require.NoError(t, err)
	assert.Equal(t, string(byPtr), string(byValue))
}

func TestTableHTML(t *testing.T) {
	tests := []struct {
		name  string
		table Table
		cells [][]string // rendered rows, header first when present
		nums  int
	}{
		{"plain", Table{Header: []string{"a", "b"}, Rows: [][]string{{"x", "1.5"}}}, [][]string{{"a", "b"}, {"x", "1.5"}}, 1},
		{"short row padded", Table{Header: []string{"a", "b", "c"}, Rows: [][]string{{"x"}}}, [][]string{{"a", "b", "c"}, {"x", "", ""}}, 0},
		{"long row widens header", Table{Header: []string{"a"}, Rows: [][]string{{"x", "-2e3", "7%"}}}, [][]string{{"a", "", ""}, {"x", "-2e3", "7%"}}, 2},
		{"no header", Table{Rows: [][]string{{"1", "two"}}}, [][]string{{"1", "two"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := parseXML(t, tt.table.HTML())
			var got [][]string
			for _, tr := range root.find(func(n *node) bool { return n.name == "tr" }) {
				got = append(got, mapText(tr.kids))
			}
			assert.Equal(t, tt.cells, got)
			assert.Len(t, root.find(byClass("td", "num")), tt.nums)
		})
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	require.NoError(t, os.WriteFile(path, []byte("old"), 0o600))
	d := sampleDocument()
	require.NoError(t, d.WriteFile(path))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	want, err := d.HTML()
	require.NoError(t, err)
	assert.Equal(t, want, got)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary files left behind")

	// Failures leave the old file alone and no debris.
	bad := &Document{Sections: []Section{{Items: []any{3.5}}}}
	assert.Error(t, bad.WriteFile(path))
	got, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Error(t, d.WriteFile(filepath.Join(dir, "missing", "r.html")))
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1)
}

func TestDeterministic(t *testing.T) {
	a, err := sampleDocument().HTML()
	require.NoError(t, err)
	b, err := sampleDocument().HTML()
	require.NoError(t, err)
	assert.Equal(t, a, b)
}
