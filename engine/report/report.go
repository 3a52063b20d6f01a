// Package report writes self-contained HTML reports of training runs: one
// file with inline CSS and inline SVG charts (line charts with optional log
// axis and baseline, bar charts, heatmaps, scatter plots) and tables, readable
// offline in any browser with no JavaScript and no external assets.
//
// A report is a Document of Sections, each holding a sequence of items:
//
//	doc := &report.Document{Title: "r16 on gocode", Sections: []report.Section{{
//		Title: "Loss",
//		Items: []any{
//			&report.LineChart{Title: "train loss", XLabel: "step", YLabel: "loss",
//				Series: []report.Series{{Name: "r=16", X: steps, Y: loss}}},
//			"Loss fell by a third.",
//		},
//	}}}
//	err := doc.WriteFile("report.html")
//
// All text is HTML-escaped. Every chart is an <svg class="chart"> with a
// data-title attribute; every line is a <path class="series"> with a
// data-series attribute (a Series with Dots only a <g class="markers">
// with the same attribute), so tests and browser checks can find them.
// Output is deterministic: the same Document always gives the same bytes.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Table is a captioned table of text cells. Cells that parse as numbers
// (optionally ending in "%") are right-aligned. Short rows are padded.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
}

// Section is a titled part of a Document: Text (paragraphs separated by
// blank lines) followed by Items in order. An item is a *LineChart,
// *BarChart, *Heatmap, *Scatter or *Table (or the same types by value), or a
// string, which becomes a paragraph.
type Section struct {
	Title, Text string
	Items       []any
}

// Document is a whole report.
type Document struct {
	Title, Subtitle string
	Sections        []Section
}

const css = `*{box-sizing:border-box}
body{margin:0;background:#f5f6f8;color:#1d2330;font:15px/1.5 "DejaVu Sans",system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px}
header h1{margin:0;font-size:26px}
header .subtitle{margin:4px 0 0;color:#5b6474}
section{background:#fff;border:1px solid #e1e4e9;border-radius:8px;padding:16px 20px;margin:20px 0}
section h2{margin:0 0 8px;font-size:19px}
section p{margin:8px 0;max-width:80ch}
.items{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.items>p{flex-basis:100%}
figure{margin:0;max-width:100%}
svg.chart{display:block;max-width:100%;height:auto;border:1px solid #eceef1;border-radius:4px}
.table-wrap{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:13px}
caption{text-align:left;font-weight:bold;padding:4px 0 6px}
th,td{padding:4px 12px;border-bottom:1px solid #e1e4e9;text-align:left;white-space:nowrap}
thead th{background:#f0f2f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
`

// HTML renders the document as one HTML5 page. It fails on an item of an
// unsupported type, a nil item, or a chart whose data do not line up (a
// series with len(X) != len(Y), a bar chart with len(Labels) != len(Values)).
func (d *Document) HTML() ([]byte, error) {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n")
	fmt.Fprintf(&b, "<title>%s</title>\n<style>\n%s</style>\n</head>\n<body>\n<main>\n", esc(d.Title), css)
	if d.Title != "" || d.Subtitle != "" {
		b.WriteString("<header>\n")
		if d.Title != "" {
			fmt.Fprintf(&b, "<h1>%s</h1>\n", esc(d.Title))
		}
		if d.Subtitle != "" {
			fmt.Fprintf(&b, "<p class=\"subtitle\">%s</p>\n", esc(d.Subtitle))
		}
		b.WriteString("</header>\n")
	}
	for si, s := range d.Sections {
		fmt.Fprintf(&b, "<section id=\"section-%d\">\n", si+1)
		if s.Title != "" {
			fmt.Fprintf(&b, "<h2>%s</h2>\n", esc(s.Title))
		}
		paragraphs(&b, s.Text)
		if len(s.Items) > 0 {
			b.WriteString("<div class=\"items\">\n")
			for ii, it := range s.Items {
				if err := item(&b, it); err != nil {
					return nil, fmt.Errorf("report: section %d (%q) item %d: %w", si+1, s.Title, ii+1, err)
				}
			}
			b.WriteString("</div>\n")
		}
		b.WriteString("</section>\n")
	}
	b.WriteString("</main>\n</body>\n</html>\n")
	return []byte(b.String()), nil
}

// paragraphs writes text as <p> elements, one per blank-line-separated block.
func paragraphs(b *strings.Builder, text string) {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	for _, p := range strings.Split(text, "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			fmt.Fprintf(b, "<p>%s</p>\n", esc(p))
		}
	}
}

type validator interface{ validate() error }

func item(b *strings.Builder, it any) error {
	var svg interface{ SVG() string }
	switch v := it.(type) {
	case string:
		paragraphs(b, v)
		return nil
	case *Table:
		if v == nil {
			return fmt.Errorf("nil *Table")
		}
		b.WriteString(v.HTML())
		return nil
	case Table:
		b.WriteString(v.HTML())
		return nil
	case *LineChart:
		if v == nil {
			return fmt.Errorf("nil *LineChart")
		}
		svg = v
	case LineChart:
		svg = &v
	case *BarChart:
		if v == nil {
			return fmt.Errorf("nil *BarChart")
		}
		svg = v
	case BarChart:
		svg = &v
	case *Heatmap:
		if v == nil {
			return fmt.Errorf("nil *Heatmap")
		}
		svg = v
	case Heatmap:
		svg = &v
	case *Scatter:
		if v == nil {
			return fmt.Errorf("nil *Scatter")
		}
		svg = v
	case Scatter:
		svg = &v
	default:
		return fmt.Errorf("unsupported item type %T", it)
	}
	if c, ok := svg.(validator); ok {
		if err := c.validate(); err != nil {
			return err
		}
	}
	b.WriteString("<figure>\n")
	b.WriteString(svg.SVG())
	b.WriteString("\n</figure>\n")
	return nil
}

// HTML renders the table as a <table class="table" data-title="TITLE">
// element (inside a scrolling wrapper) with the title as its caption.
func (t *Table) HTML() string {
	cols := len(t.Header)
	for _, r := range t.Rows {
		cols = max(cols, len(r))
	}
	cell := func(row []string, i int) string {
		if i < len(row) {
			return row[i]
		}
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<div class=\"table-wrap\"><table class=\"table\" data-title=\"%s\">\n", esc(t.Title))
	if t.Title != "" {
		fmt.Fprintf(&b, "<caption>%s</caption>\n", esc(t.Title))
	}
	if len(t.Header) > 0 {
		b.WriteString("<thead><tr>")
		for i := range cols {
			fmt.Fprintf(&b, "<th>%s</th>", esc(cell(t.Header, i)))
		}
		b.WriteString("</tr></thead>\n")
	}
	b.WriteString("<tbody>\n")
	for _, r := range t.Rows {
		b.WriteString("<tr>")
		for i := range cols {
			c := cell(r, i)
			if numeric(c) {
				fmt.Fprintf(&b, "<td class=\"num\">%s</td>", esc(c))
			} else {
				fmt.Fprintf(&b, "<td>%s</td>", esc(c))
			}
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</tbody>\n</table></div>\n")
	return b.String()
}

func numeric(s string) bool {
	s = strings.TrimSuffix(strings.TrimSpace(s), "%")
	_, err := strconv.ParseFloat(s, 64)
	return s != "" && err == nil
}

// WriteFile renders the document and writes it to path atomically: the
// bytes go to a temporary file in the same directory, which is synced and
// then renamed over path, so readers see the old report or the new one,
// never half of one. The file is created with mode 0644.
func (d *Document) WriteFile(path string) (err error) {
	data, err := d.HTML()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
