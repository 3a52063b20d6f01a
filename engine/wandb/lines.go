package wandb

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"lens/kv"
)

// line is one wandb-history.jsonl line: every metric of one step.
type line struct {
	step int
	text string
}

// Reserved history keys, as the SDK writes them.
const (
	keyStep      = "_step"
	keyRuntime   = "_runtime"
	keyTimestamp = "_timestamp"
)

// formatLine writes the history line of step: its metrics plus _step,
// _runtime (seconds since the run started) and _timestamp (Unix seconds),
// keys sorted. Non-finite values are written NaN, Infinity and -Infinity,
// the extended JSON W&B reads (its Go core's simplejsonext does the same).
func formatLine(step int, vals map[string]float64, runtime float64, ts time.Time) string {
	m := make(map[string]float64, len(vals)+3)
	maps.Copy(m, vals)
	m[keyStep] = float64(step)
	m[keyRuntime] = runtime
	m[keyTimestamp] = float64(ts.UnixMicro()) / 1e6
	return formatObject(m)
}

// formatObject writes a flat object of numbers as extended JSON.
func formatObject(m map[string]float64) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k) // a string always marshals
		b.Write(kb)
		b.WriteByte(':')
		b.WriteString(formatNumber(m[k]))
	}
	b.WriteByte('}')
	return b.String()
}

func formatNumber(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "Infinity"
	case math.IsInf(v, -1):
		return "-Infinity"
	}
	// As encoding/json writes numbers: shortest exact form, exponent only
	// for very small or large ones.
	if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
		s := strconv.FormatFloat(v, 'e', -1, 64)
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:] // e-07 -> e-7
		}
		return s
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// standardJSON turns W&B's extended JSON into standard JSON by quoting
// bare NaN, Infinity and -Infinity outside strings.
func standardJSON(s string) string {
	var b strings.Builder
	inStr, esc := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inStr {
			b.WriteByte(c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
			b.WriteByte(c)
			continue
		}
		matched := false
		for _, tok := range []string{"NaN", "Infinity", "-Infinity"} {
			if strings.HasPrefix(s[i:], tok) {
				b.WriteString(`"` + tok + `"`)
				i += len(tok) - 1
				matched = true
				break
			}
		}
		if !matched {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ParseLine reads a flat history line (or summary) of numbers, accepting
// NaN, Infinity and -Infinity; other values are skipped.
func ParseLine(s string) (map[string]float64, error) {
	var raw map[string]any
	if err := json.Unmarshal([]byte(standardJSON(s)), &raw); err != nil {
		return nil, fmt.Errorf("history line %.80q: %w", s, err)
	}
	out := make(map[string]float64, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case float64:
			out[k] = x
		case string:
			switch x {
			case "NaN":
				out[k] = math.NaN()
			case "Infinity":
				out[k] = math.Inf(1)
			case "-Infinity":
				out[k] = math.Inf(-1)
			}
		}
	}
	return out, nil
}

// lineStep is the _step of a history line.
func lineStep(s string) (int, bool) {
	m, err := ParseLine(s)
	if err != nil {
		return 0, false
	}
	v, ok := m[keyStep]
	if !ok || v != math.Trunc(v) || v < 0 {
		return 0, false
	}
	return int(v), true
}

// wandbConfig turns a run's config (the spec as JSON) into W&B's config
// form, one {"value": v} per top-level key.
func wandbConfig(cfg json.RawMessage) (map[string]any, error) {
	out := map[string]any{}
	if len(cfg) == 0 || string(cfg) == "null" {
		return out, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(cfg, &top); err != nil {
		return nil, fmt.Errorf("run config: %w", err)
	}
	for k, v := range top {
		out[k] = map[string]json.RawMessage{"value": v}
	}
	return out, nil
}

// infoOf is the W&B run of a lens run.
func infoOf(meta kv.RunMeta) (runInfo, error) {
	cfg, err := wandbConfig(meta.Config)
	if err != nil {
		return runInfo{}, fmt.Errorf("run %s: %w", meta.ID, err)
	}
	name := meta.Name
	if name == "" {
		name = meta.ID
	}
	return runInfo{ID: RunID(meta.ID), LensID: meta.ID, DisplayName: name, Config: cfg, Tags: meta.Tags}, nil
}

// summaryOf is the run's summary: the last value of every metric, with
// _step and _runtime of the last line.
type summary map[string]float64

func (s summary) add(step int, vals map[string]float64, runtime float64) {
	maps.Copy(s, vals)
	s[keyStep] = float64(step)
	s[keyRuntime] = runtime
}

// storeLines builds the history of run meta from the store: one line per
// step with every metric recorded at it. The store keeps no wall-clock
// time per step, so _runtime is the sum of step_time_s up to the step and
// _timestamp the run's creation time plus that.
func storeLines(st *kv.Store, meta kv.RunMeta) ([]line, summary, error) {
	names, err := st.MetricNames(meta.ID)
	if err != nil {
		return nil, nil, err
	}
	bySteps := map[int]map[string]float64{}
	for _, n := range names {
		pts, err := st.ReadMetric(meta.ID, n)
		if err != nil {
			return nil, nil, err
		}
		for _, p := range pts {
			if bySteps[p.Step] == nil {
				bySteps[p.Step] = map[string]float64{}
			}
			bySteps[p.Step][n] = p.Value
		}
	}
	sum := summary{}
	var out []line
	runtime := 0.0
	for _, step := range slices.Sorted(maps.Keys(bySteps)) {
		vals := bySteps[step]
		if d, ok := vals["step_time_s"]; ok && d > 0 && !math.IsInf(d, 0) {
			runtime += d
		}
		ts := meta.Created.Add(time.Duration(runtime * float64(time.Second)))
		out = append(out, line{step: step, text: formatLine(step, vals, runtime, ts)})
		sum.add(step, vals, runtime)
	}
	return out, sum, nil
}

// exitCode is the file stream's exit code of a finished lens run, and
// whether the run is finished at all.
func exitCode(status string) (int, bool) {
	switch status {
	case kv.StatusDone:
		return 0, true
	case kv.StatusRunning:
		return 0, false
	}
	return 1, true
}
