package report

import (
	"fmt"
	"math"
)

// BarChart draws one bar per label, from zero (so negative values point
// down). NaN or infinite values get no bar.
type BarChart struct {
	Title, XLabel, YLabel string
	Labels                []string
	Values                []float64
}

const labelMaxRunes = 20

func (c *BarChart) validate() error {
	if len(c.Labels) != len(c.Values) {
		return fmt.Errorf("bar chart %q: %d labels and %d values", c.Title, len(c.Labels), len(c.Values))
	}
	return nil
}

func (c *BarChart) label(i int) string {
	if i < len(c.Labels) {
		return c.Labels[i]
	}
	return ""
}

// SVG renders the chart as a standalone <svg class="chart"> element with one
// <rect class="bar" data-label="LABEL"> per finite value.
func (c *BarChart) SVG() string {
	n := max(len(c.Values), len(c.Labels))
	lo, hi := 0.0, 0.0
	hasData := false
	maxLabel := 0.0
	for i := range n {
		maxLabel = math.Max(maxLabel, textW(clip(c.label(i), labelMaxRunes), fontSize))
		if i < len(c.Values) && finite(c.Values[i]) {
			lo, hi = math.Min(lo, c.Values[i]), math.Max(hi, c.Values[i])
			hasData = true
		}
	}

	top := 16.0
	if c.Title != "" {
		top = 40
	}
	rotated := n > 0 && maxLabel > (chartW-100)/float64(n)-6
	bottom := tickLen + 20
	if rotated {
		bottom = tickLen + 16 + maxLabel*0.71
	}
	if c.XLabel != "" {
		bottom += 20
	}
	plotH := chartH - top - bottom
	yt := linearTicks(lo, hi, int(plotH/45))
	left := tickLen + 14 + maxTextW(yt.labels)
	if c.YLabel != "" {
		left += 20
	}
	if need := maxLabel*0.71 + 8; rotated && need > left {
		left = need // keep the first rotated label on the canvas
	}
	a := area{left, top, chartW - left - 24, plotH}

	var b svgw
	b.open("bar", c.Title, chartW, chartH)
	if !hasData {
		b.noData(a)
		b.axisLabels(a, c.XLabel, c.YLabel, chartH-10)
		return b.close()
	}
	b.yAxis(a, &yt)
	b.axisLabels(a, c.XLabel, c.YLabel, chartH-10)
	slot := a.w / float64(n)
	zero := a.py(&yt, 0)
	// Value labels above the bars, only when every one of them fits.
	showValues := true
	for _, v := range c.Values {
		if finite(v) && textW(fmtNum(v, 3), 10) > slot {
			showValues = false
		}
	}
	b.WriteString(`<g class="bars">`)
	for i := range n {
		if i >= len(c.Values) || !finite(c.Values[i]) {
			continue
		}
		v := c.Values[i]
		y := a.py(&yt, v)
		x := a.x0 + float64(slot*(float64(i)+0.15))
		b.f("\n"+`<rect class="bar" data-label="%s" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%s: %s</title></rect>`,
			esc(c.label(i)), num(x), num(math.Min(y, zero)), num(slot*0.7), num(math.Abs(zero-y)), colour(0), esc(c.label(i)), fmtNum(v, 6))
		if s := fmtNum(v, 3); showValues {
			ty := y - 4
			if v < 0 {
				ty = y + 12
			}
			b.f(`<text class="bar-value" x="%s" y="%s" text-anchor="middle" font-size="10" fill="#333">%s</text>`, num(x+slot*0.35), num(ty), esc(s))
		}
	}
	b.WriteString("</g>\n")
	// Baseline at zero and category labels.
	b.f(`<line class="zero" x1="%s" x2="%s" y1="%s" y2="%s" stroke="#333"/>`+"\n", num(a.x0), num(a.x0+a.w), num(zero), num(zero))
	every := 1
	if rotated {
		every = int(math.Ceil(14 / slot))
	}
	b.WriteString(`<g class="x-ticks" fill="#444">`)
	ly := a.y0 + a.h + tickLen + 13
	for i := 0; i < n; i += every {
		x := a.x0 + float64(slot*(float64(i)+0.5))
		l := esc(clip(c.label(i), labelMaxRunes))
		if rotated {
			b.f(`<text x="%s" y="%s" text-anchor="end" transform="rotate(-45 %s %s)">%s</text>`, num(x+4), num(ly-4), num(x+4), num(ly-4), l)
		} else {
			b.f(`<text x="%s" y="%s" text-anchor="middle">%s</text>`, num(x), num(ly), l)
		}
	}
	b.WriteString("</g>\n")
	return b.close()
}
