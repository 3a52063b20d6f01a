package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Series is one line of a LineChart. A nil X plots Y against 0, 1, 2, ….
// Points whose X or Y is NaN or ±Inf (or Y ≤ 0 on a log axis) are left out
// and break the line there. Dots draws the points alone, without a line
// (a few measurements, such as eval losses at the start and the end, with
// nothing measured between them to join).
type Series struct {
	Name string
	X, Y []float64
	Dots bool
}

// LineChart plots series against a numeric x axis, with an optional log y
// axis and an optional dashed horizontal Baseline (e.g. the loss of a
// uniform guess).
type LineChart struct {
	Title, XLabel, YLabel string
	Series                []Series
	LogY                  bool
	Baseline              *float64
}

// markerLimit is the most valid points a series may have and still get a dot
// at every point (so short curves such as eval loss read as measurements).
const markerLimit = 30

type pt struct{ x, y float64 }

func (s *Series) at(i int) pt {
	if s.X == nil {
		return pt{float64(i), s.Y[i]}
	}
	return pt{s.X[i], s.Y[i]}
}

func (s *Series) len() int {
	if s.X == nil {
		return len(s.Y)
	}
	return min(len(s.X), len(s.Y))
}

// runs splits the valid points of s into unbroken stretches.
func (s *Series) runs(logY bool) [][]pt {
	var out [][]pt
	var cur []pt
	for i := range s.len() {
		p := s.at(i)
		if !finite(p.x) || !finite(p.y) || (logY && p.y <= 0) {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, p)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func (c *LineChart) validate() error {
	for _, s := range c.Series {
		if s.X != nil && len(s.X) != len(s.Y) {
			return fmt.Errorf("line chart %q: series %q has %d x values and %d y values", c.Title, s.Name, len(s.X), len(s.Y))
		}
	}
	return nil
}

func (c *LineChart) baseline() (float64, bool) {
	if c.Baseline == nil {
		return 0, false
	}
	v := *c.Baseline
	return v, finite(v) && (!c.LogY || v > 0)
}

// SVG renders the chart as a standalone <svg class="chart"> element with one
// <path class="series" data-series="NAME"> per series that has data.
func (c *LineChart) SVG() string {
	runs := make([][][]pt, len(c.Series))
	xlo, xhi := math.Inf(1), math.Inf(-1)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for i := range c.Series {
		runs[i] = c.Series[i].runs(c.LogY)
		for _, r := range runs[i] {
			for _, p := range r {
				xlo, xhi = math.Min(xlo, p.x), math.Max(xhi, p.x)
				ylo, yhi = math.Min(ylo, p.y), math.Max(yhi, p.y)
			}
		}
	}
	hasData := xlo <= xhi
	var entries []legendEntry
	if len(c.Series) > 1 {
		for i, s := range c.Series {
			entries = append(entries, legendEntry{name: s.Name, colour: colour(i), dash: dash(i), empty: len(runs[i]) == 0})
		}
	}
	legendW := 0.0
	if len(entries) > 0 {
		legendW = legendWidth(entries)
	}

	var b svgw
	b.open("line", c.Title, chartW, chartH)
	if !hasData {
		a, _, _ := xyLayout(c.Title, c.XLabel, c.YLabel, 0, 1, 0, 1, false, legendW)
		b.noData(a)
		b.axisLabels(a, c.XLabel, c.YLabel, chartH-10)
		if len(entries) > 0 {
			b.legend(a.x0+a.w+16, a.y0+8, entries)
		}
		return b.close()
	}
	base, hasBase := c.baseline()
	if hasBase {
		ylo, yhi = math.Min(ylo, base), math.Max(yhi, base)
	}
	a, xt, yt := xyLayout(c.Title, c.XLabel, c.YLabel, xlo, xhi, ylo, yhi, c.LogY, legendW)
	b.yAxis(a, &yt)
	b.xAxis(a, &xt)
	b.axisLabels(a, c.XLabel, c.YLabel, chartH-10)
	if hasBase {
		y := num(a.py(&yt, base))
		b.f(`<line class="baseline" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"><title>baseline %s</title></line>`+"\n",
			num(a.x0), num(a.x0+a.w), y, y, fmtNum(base, 6))
		b.f(`<text class="baseline-label" x="%s" y="%s" text-anchor="end" fill="#555">baseline %s</text>`+"\n",
			num(a.x0+a.w-4), num(a.py(&yt, base)-5), esc(fmtNum(base, 4)))
	}
	for i, s := range c.Series {
		if len(runs[i]) == 0 {
			continue
		}
		var d strings.Builder
		var dots []pt
		n := 0
		for _, r := range runs[i] {
			n += len(r)
		}
		for _, r := range runs[i] {
			px := make([]pt, len(r))
			for j, p := range r {
				px[j] = pt{a.px(&xt, p.x), a.py(&yt, p.y)}
			}
			if n <= markerLimit || s.Dots {
				dots = append(dots, px...)
			}
			px = decimate(px)
			for j, p := range px {
				cmd := "L"
				if j == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&d, "%s%s %s", cmd, num(p.x), num(p.y))
			}
			if len(px) == 1 {
				d.WriteString("h0") // a lone point: a round cap makes it a dot
			}
		}
		if !s.Dots {
			b.f(`<path class="series" data-series="%s" d="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"%s><title>%s</title></path>`+"\n",
				esc(s.Name), d.String(), colour(i), dashAttr(dash(i)), esc(s.Name))
		}
		if len(dots) > 0 {
			r := "2.5"
			if s.Dots {
				r = "4" // the only mark of the series: large enough to see
			}
			b.f(`<g class="markers" data-series="%s" fill="%s">`, esc(s.Name), colour(i))
			for _, p := range dots {
				b.f(`<circle cx="%s" cy="%s" r="%s"/>`, num(p.x), num(p.y), r)
			}
			b.WriteString("</g>\n")
		}
	}
	if len(entries) > 0 {
		b.legend(a.x0+a.w+16, a.y0+8, entries)
	}
	return b.close()
}

// decimate thins a run of pixel positions without changing what is drawn:
// of consecutive points in the same pixel column it keeps the first, the
// lowest, the highest and the last (the M4 scheme), so a 100k-step loss
// curve costs a few thousand path commands and keeps its spikes.
func decimate(px []pt) []pt {
	if len(px) <= 4 {
		return px
	}
	out := make([]pt, 0, len(px))
	for i := 0; i < len(px); {
		col := math.Floor(px[i].x)
		lo, hi, j := i, i, i
		for ; j < len(px) && math.Floor(px[j].x) == col; j++ {
			if px[j].y < px[lo].y {
				lo = j
			}
			if px[j].y > px[hi].y {
				hi = j
			}
		}
		keep := []int{i, lo, hi, j - 1}
		slices.Sort(keep)
		for _, idx := range slices.Compact(keep) {
			out = append(out, px[idx])
		}
		i = j
	}
	return out
}
