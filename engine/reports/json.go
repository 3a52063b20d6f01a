package reports

import (
	"encoding/json"
	"fmt"
	"math"

	"lens/engine/report"
)

// JSONDoc is a report as data, for `lens report --json`: the same
// sections and items as the text and HTML forms, each item tagged with its
// kind, charts with their numbers. NaN and ±Inf are null.
type JSONDoc struct {
	Title    string        `json:"title"`
	Subtitle string        `json:"subtitle,omitempty"`
	Sections []JSONSection `json:"sections"`
}

// JSONSection is one section of a JSONDoc.
type JSONSection struct {
	Title string     `json:"title"`
	Text  string     `json:"text,omitempty"`
	Items []JSONItem `json:"items"`
}

// JSONItem is one item: Kind is "text", "table", "line", "bar", "heatmap"
// or "scatter", and the fields of that kind are set.
type JSONItem struct {
	Kind   string       `json:"kind"`
	Title  string       `json:"title,omitempty"`
	Text   string       `json:"text,omitempty"`
	XLabel string       `json:"x_label,omitempty"`
	YLabel string       `json:"y_label,omitempty"`
	Header []string     `json:"header,omitempty"`
	Rows   [][]string   `json:"rows,omitempty"`
	Series []JSONSeries `json:"series,omitempty"`
	LogY   bool         `json:"log_y,omitempty"`
	Labels []string     `json:"labels,omitempty"`  // bar
	Values []*float64   `json:"values,omitempty"`  // bar
	Grid   [][]*float64 `json:"grid,omitempty"`    // heatmap: grid[row][col]
	XTicks []string     `json:"x_ticks,omitempty"` // heatmap
	YTicks []string     `json:"y_ticks,omitempty"` // heatmap
	Points []JSONPoint  `json:"points,omitempty"`  // scatter
}

// JSONSeries is one series of a line chart.
type JSONSeries struct {
	Name string     `json:"name"`
	X    []*float64 `json:"x,omitempty"`
	Y    []*float64 `json:"y"`
}

// JSONPoint is one point of a scatter plot.
type JSONPoint struct {
	X     *float64 `json:"x"`
	Y     *float64 `json:"y"`
	Label string   `json:"label,omitempty"`
	Group string   `json:"group,omitempty"`
}

func jnum(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func jnums(x []float64) []*float64 {
	if x == nil {
		return nil
	}
	out := make([]*float64, len(x))
	for i, v := range x {
		out[i] = jnum(v)
	}
	return out
}

// JSON converts a document to its JSON form; an item of a type the
// report package does not render is an error naming the section.
func JSON(doc *report.Document) (JSONDoc, error) {
	out := JSONDoc{Title: doc.Title, Subtitle: doc.Subtitle, Sections: []JSONSection{}}
	for _, s := range doc.Sections {
		js := JSONSection{Title: s.Title, Text: s.Text, Items: []JSONItem{}}
		for k, it := range s.Items {
			var j JSONItem
			switch it := it.(type) {
			case string:
				j = JSONItem{Kind: "text", Text: it}
			case *report.Table:
				j = JSONItem{Kind: "table", Title: it.Title, Header: it.Header, Rows: it.Rows}
			case *report.LineChart:
				j = JSONItem{Kind: "line", Title: it.Title, XLabel: it.XLabel, YLabel: it.YLabel, LogY: it.LogY}
				for _, se := range it.Series {
					j.Series = append(j.Series, JSONSeries{Name: se.Name, X: jnums(se.X), Y: jnums(se.Y)})
				}
			case *report.BarChart:
				j = JSONItem{Kind: "bar", Title: it.Title, XLabel: it.XLabel, YLabel: it.YLabel, Labels: it.Labels, Values: jnums(it.Values)}
			case *report.Heatmap:
				j = JSONItem{Kind: "heatmap", Title: it.Title, XLabel: it.XLabel, YLabel: it.YLabel, XTicks: it.XTicks, YTicks: it.YTicks}
				for _, row := range it.Values {
					j.Grid = append(j.Grid, jnums(row))
				}
			case *report.Scatter:
				j = JSONItem{Kind: "scatter", Title: it.Title, XLabel: it.XLabel, YLabel: it.YLabel}
				for _, p := range it.Points {
					j.Points = append(j.Points, JSONPoint{X: jnum(p.X), Y: jnum(p.Y), Label: p.Label, Group: p.Group})
				}
			default:
				return JSONDoc{}, fmt.Errorf("report section %q item %d: cannot write %T as JSON", s.Title, k+1, it)
			}
			js.Items = append(js.Items, j)
		}
		out.Sections = append(out.Sections, js)
	}
	return out, nil
}

// MarshalJSON is JSON(doc) encoded, indented.
func MarshalJSON(doc *report.Document) ([]byte, error) {
	j, err := JSON(doc)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(j, "", "  ")
}
