package report

import (
	"math"
)

// Point is one mark of a Scatter. Label, when set, is written next to the
// point; points of the same Group share a colour and a legend entry.
type Point struct {
	X, Y         float64
	Label, Group string
}

// Scatter plots points, e.g. runs on a learning/forgetting frontier.
// Points with a NaN or infinite coordinate are left out.
type Scatter struct {
	Title, XLabel, YLabel string
	Points                []Point
}

// groups lists the distinct groups in order of first appearance.
func (c *Scatter) groups() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range c.Points {
		if !seen[p.Group] {
			seen[p.Group] = true
			out = append(out, p.Group)
		}
	}
	return out
}

// SVG renders the chart as a standalone <svg class="chart"> element with one
// <circle class="point" data-group="GROUP"> per valid point.
func (c *Scatter) SVG() string {
	xlo, xhi := math.Inf(1), math.Inf(-1)
	ylo, yhi := math.Inf(1), math.Inf(-1)
	valid := map[string]bool{}
	for _, p := range c.Points {
		if finite(p.X) && finite(p.Y) {
			xlo, xhi = math.Min(xlo, p.X), math.Max(xhi, p.X)
			ylo, yhi = math.Min(ylo, p.Y), math.Max(yhi, p.Y)
			valid[p.Group] = true
		}
	}
	groups := c.groups()
	index := map[string]int{}
	var entries []legendEntry
	for i, g := range groups {
		index[g] = i
		entries = append(entries, legendEntry{name: g, colour: colour(i), dot: true, empty: !valid[g]})
	}
	if len(groups) == 1 && groups[0] == "" {
		entries = nil
	}
	legendW := 0.0
	if len(entries) > 0 {
		legendW = legendWidth(entries)
	}

	var b svgw
	b.open("scatter", c.Title, chartW, chartH)
	if xlo > xhi {
		a, _, _ := xyLayout(c.Title, c.XLabel, c.YLabel, 0, 1, 0, 1, false, legendW)
		b.noData(a)
		b.axisLabels(a, c.XLabel, c.YLabel, chartH-10)
		return b.close()
	}
	// Pad 5% so that points at the extremes do not sit on the axes.
	px, py := (xhi-xlo)*0.05, (yhi-ylo)*0.05
	a, xt, yt := xyLayout(c.Title, c.XLabel, c.YLabel, xlo-px, xhi+px, ylo-py, yhi+py, false, legendW)
	b.yAxis(a, &yt)
	b.xAxis(a, &xt)
	b.axisLabels(a, c.XLabel, c.YLabel, chartH-10)
	b.WriteString(`<g class="points">`)
	for _, p := range c.Points {
		if !finite(p.X) || !finite(p.Y) {
			continue
		}
		x, y := a.px(&xt, p.X), a.py(&yt, p.Y)
		tip := "(" + fmtNum(p.X, 6) + ", " + fmtNum(p.Y, 6) + ")"
		if p.Label != "" {
			tip = p.Label + " " + tip
		}
		if p.Group != "" {
			tip = p.Group + ": " + tip
		}
		b.f("\n"+`<circle class="point" data-group="%s" cx="%s" cy="%s" r="4.5" fill="%s" fill-opacity="0.85" stroke="#fff" stroke-width="1"><title>%s</title></circle>`,
			esc(p.Group), num(x), num(y), colour(index[p.Group]), esc(tip))
		if p.Label != "" {
			l := clip(p.Label, labelMaxRunes)
			if x+7+textW(l, 10) <= a.x0+a.w {
				b.f(`<text class="point-label" x="%s" y="%s" font-size="10" fill="#333">%s</text>`, num(x+7), num(y-6), esc(l))
			} else { // keep labels near the right edge inside the plot
				b.f(`<text class="point-label" x="%s" y="%s" font-size="10" fill="#333" text-anchor="end">%s</text>`, num(x-7), num(y-6), esc(l))
			}
		}
	}
	b.WriteString("\n</g>\n")
	if len(entries) > 0 {
		b.legend(a.x0+a.w+16, a.y0+8, entries)
	}
	return b.close()
}
