// lens ui: the single page. Plain ES module, no build step. Views are
// chosen by the URL hash (#/, #/run/ID, #/compare/ID,ID, #/sweeps); every
// view polls the server once a second. What the page fetched is kept in
// window.lens so tests can compare it with the store.

const lens = (window.lens = { view: "", data: {}, series: {}, timings: [], ready: false, polls: 0 });
const main = document.getElementById("main");
const POLL_MS = 1000;
let timer = null;
let generation = 0; // bumped on every navigation; stale fetches are dropped

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(5)) : typeof v === "object" ? JSON.stringify(v) : String(v));
// si writes an axis tick compactly: 1.5M, 250k, 0.003, 1e-7.
const si = (v) => {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  if (a >= 1e9) return +(v / 1e9).toPrecision(3) + "G";
  if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
  if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
  if (a !== 0 && a < 1e-3) return v.toExponential(1);
  return String(+v.toPrecision(4));
};
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "");

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  if (!r.ok) throw new Error((await r.text()).trim() || r.statusText);
  return r.json();
}

function setLive(ok) {
  document.getElementById("live").classList.toggle("stale", !ok);
}

function poll(fn) {
  clearTimeout(timer);
  const gen = generation;
  const tick = async () => {
    if (gen !== generation) return;
    try {
      await fn();
      setLive(true);
    } catch (e) {
      setLive(false);
    }
    lens.polls++;
    if (gen === generation) timer = setTimeout(tick, POLL_MS);
  };
  timer = setTimeout(tick, POLL_MS);
}

// ---------- charts (uPlot) ----------

const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#65a30d", "#4f46e5", "#a16207"];

function ema(values, w) {
  if (!w) return values;
  const out = new Array(values.length);
  let m = null;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !isFinite(v)) { out[i] = null; continue; }
    m = m === null ? v : w * m + (1 - w) * v;
    out[i] = m;
  }
  return out;
}

// A chart of one or more series that share an x axis (steps). spec:
// {title, series: [{label, steps, values}], log, fetch(from, to) optional}
class Chart {
  constructor(el, spec) {
    this.el = el;
    this.spec = spec;
    this.log = !!spec.log;
    this.smooth = 0;
    this.zoomed = null;
    el.classList.add("chart");
    el.innerHTML = `<div class="bar"><b>${esc(spec.title)}</b>
      <label><input type="checkbox" class="log"${this.log ? " checked" : ""}> log</label>
      <label>smooth <input type="range" class="smooth" min="0" max="0.99" step="0.01" value="0" style="width:70px"></label>
      <button class="reset" title="reset zoom (or double-click)">reset</button></div><div class="plot"></div>`;
    el.querySelector(".log").onchange = (e) => { this.log = e.target.checked; this.draw(); };
    el.querySelector(".smooth").oninput = (e) => { this.smooth = +e.target.value; this.draw(); };
    el.querySelector(".reset").onclick = () => this.unzoom();
    this.width = spec.width || 440;
    this.draw();
  }
  data() {
    const s = this.spec.series;
    // Align every series on the union of steps.
    const set = new Set();
    s.forEach((x) => x.steps.forEach((t) => set.add(t)));
    const xs = Float64Array.from(set).sort();
    const cols = [xs];
    for (const x of s) {
      const at = new Map();
      const sm = ema(x.values, this.smooth);
      x.steps.forEach((t, i) => at.set(t, sm[i]));
      cols.push(Array.from(xs, (t) => {
        const v = at.get(t);
        return v === undefined || v === null || (this.log && v <= 0) ? null : v;
      }));
    }
    return cols;
  }
  draw() {
    const t0 = performance.now();
    if (this.u) this.u.destroy();
    const plot = this.el.querySelector(".plot");
    const series = [{ label: "step" }];
    this.spec.series.forEach((s, i) => series.push({ label: s.label, stroke: s.color || palette[i % palette.length], width: 1.25, spanGaps: s.spanGaps ?? false, points: { show: s.steps.length < 60 } }));
    const self = this;
    this.u = new uPlot({
      width: this.width, height: this.spec.height || 220, series,
      scales: { x: { time: false, ...(this.zoomed ? { min: this.zoomed[0], max: this.zoomed[1], auto: false } : {}) }, y: { distr: this.log ? 3 : 1 } },
      axes: [{}, { size: 60, values: (u, vals) => vals.map(si) }],
      
      cursor: { drag: { x: true, y: false } },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ width: 0, height: 0 }, false);
          self.zoom(a, b);
        }],
        ready: [(u) => {
          u.over.ondblclick = () => self.unzoom();
          // Wheel zooms around the cursor; shift+wheel pans.
          u.over.addEventListener("wheel", (e) => {
            e.preventDefault();
            const min = u.scales.x.min, max = u.scales.x.max, range = max - min;
            if (e.shiftKey) {
              const d = 0.1 * range * Math.sign(e.deltaY || e.deltaX);
              self.zoom(min + d, max + d);
            } else {
              const x = u.posToVal(e.offsetX, "x"), f = e.deltaY < 0 ? 0.8 : 1.25;
              self.zoom(x - (x - min) * f, x + (max - x) * f);
            }
          }, { passive: false });
        }],
      },
    }, this.data(), plot);
    this.lastDraw = performance.now() - t0;
  }
  // zoom shows [a, b] at once and, after the wheel settles, refetches that
  // range so the server downsamples it at full detail.
  zoom(a, b) {
    this.zoomed = [a, b];
    this.u.setScale("x", { min: a, max: b });
    clearTimeout(this.zoomTimer);
    this.zoomTimer = setTimeout(async () => {
      if (this.spec.fetch) this.spec.series = await this.spec.fetch(a, b);
      this.fetchedRange = [a, b];
      this.draw();
    }, 150);
  }
  async unzoom() {
    clearTimeout(this.zoomTimer);
    this.zoomed = null;
    this.fetchedRange = null;
    if (this.spec.fetch) this.spec.series = await this.spec.fetch();
    this.draw();
  }
  update(series) {
    if (this.zoomed) return; // a zoomed chart keeps what the user looks at
    this.spec.series = series;
    this.draw();
  }
}

// A heatmap on a canvas: h = {title, rows, cols, values[row][col]}.
function heatmap(el, h, opts = {}) {
  const rows = h.rows.length, cols = h.cols.length;
  const cell = Math.max(2, Math.min(18, Math.floor(520 / Math.max(cols, 1))));
  const ch = Math.max(6, Math.min(18, Math.floor(260 / Math.max(rows, 1))));
  const left = 120, top = 4, bottom = 22;
  let lo = opts.min ?? Infinity, hi = opts.max ?? -Infinity;
  if (opts.min === undefined) for (const r of h.values) for (const v of r) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!(hi > lo)) hi = lo + 1;
  const div = document.createElement("div");
  div.className = "heat";
  div.innerHTML = `<h3>${esc(h.title)}</h3><canvas></canvas><div class="muted hover">min ${fmt(lo)} · max ${fmt(hi)}</div>`;
  const c = div.querySelector("canvas");
  c.width = left + cols * cell + 4;
  c.height = top + rows * ch + bottom;
  const g = c.getContext("2d");
  g.font = "10px system-ui";
  g.fillStyle = "#374151";
  for (let i = 0; i < rows; i++) {
    g.fillText(String(h.rows[i]).slice(-20), 2, top + i * ch + ch / 2 + 3);
    for (let j = 0; j < cols; j++) {
      const v = h.values[i][j];
      g.fillStyle = v === null ? "#e5e7eb" : viridis((v - lo) / (hi - lo));
      g.fillRect(left + j * cell, top + i * ch, cell, ch);
    }
    g.fillStyle = "#374151";
  }
  const every = Math.max(1, Math.ceil(cols / 8));
  for (let j = 0; j < cols; j += every) g.fillText(h.cols[j], left + j * cell, top + rows * ch + 14);
  const hover = div.querySelector(".hover");
  c.onmousemove = (e) => {
    const j = Math.floor((e.offsetX - left) / cell), i = Math.floor((e.offsetY - top) / ch);
    if (i >= 0 && i < rows && j >= 0 && j < cols) hover.textContent = `${h.rows[i]} @ ${h.cols[j]}: ${fmt(h.values[i][j])}`;
  };
  el.appendChild(div);
  return div;
}

function viridis(t) {
  t = Math.max(0, Math.min(1, t));
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const x = t * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const c = stops[i].map((a, k) => Math.round(a + f * (stops[i + 1][k] - a)));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// ---------- runs table ----------

const runsState = { q: "", where: "", sort: "created", desc: true, columns: [], selected: new Set() };

async function viewRuns() {
  lens.view = "runs";
  const t0 = performance.now();
  main.innerHTML = `<div class="controls">
    <input type="text" id="q" placeholder="filter: name, id, status, tag" value="${esc(runsState.q)}">
    <input type="text" id="where" placeholder='where: final_loss < 2 and config.r == 16' value="${esc(runsState.where)}">
    <select id="addcol"><option value="">+ config column</option></select>
    <button id="compare-btn" disabled>compare selected</button>
    <span id="count" class="muted"></span> <span id="where-err" class="err"></span></div>
    <div class="scroll"><table id="runs"><thead></thead><tbody></tbody></table></div>`;
  const q = document.getElementById("q"), where = document.getElementById("where");
  q.oninput = () => { runsState.q = q.value; renderRuns(); };
  where.onkeydown = (e) => { if (e.key === "Enter") { runsState.where = where.value.trim(); loadRuns().catch(() => {}); } };
  document.getElementById("addcol").onchange = (e) => {
    const c = e.target.value;
    if (c && !runsState.columns.includes(c)) runsState.columns.push(c);
    loadRuns().catch(() => {});
  };
  document.getElementById("compare-btn").onclick = () => { location.hash = "#/compare/" + [...runsState.selected].join(","); };
  await loadRuns();
  // at: ms since navigation started, i.e. until the table is interactive.
  lens.timings.push({ what: "runs", ms: performance.now() - t0, at: performance.now(), start: t0, fetchMs: lens.runsFetchMs, renderMs: lens.runsRenderMs, rows: lens.data.runs?.runs.length });
  lens.ready = true;
  poll(loadRuns);
}

async function loadRuns() {
  const p = new URLSearchParams();
  if (runsState.where) p.set("where", runsState.where);
  if (runsState.columns.length) p.set("columns", runsState.columns.join(","));
  const err = document.getElementById("where-err");
  try {
    const t0 = performance.now();
    lens.data.runs = await api("/api/runs?" + p);
    lens.runsFetchMs = performance.now() - t0;
    if (err) err.textContent = "";
  } catch (e) {
    if (err && runsState.where) err.textContent = e.message;
    throw e;
  }
  const sel = document.getElementById("addcol");
  if (sel && sel.options.length === 1) for (const k of lens.data.runs.config_keys) sel.add(new Option(k, k));
  const t1 = performance.now();
  renderRuns();
  lens.runsRenderMs = performance.now() - t1;
}

function runValue(r, key) {
  if (key.startsWith("config.")) return r.config?.[key.slice(7)];
  if (key === "tags") return r.tags.join(",");
  return r[key];
}

function renderRuns() {
  const page = lens.data.runs;
  const table = document.getElementById("runs");
  if (!page || !table) return;
  const cols = [["", "sel"], ["name", "name"], ["id", "id"], ["status", "status"], ["steps", "steps"], ["final loss", "final_loss"], ["tags", "tags"], ["created", "created"],
    ...runsState.columns.map((c) => [c, "config." + c])];
  table.tHead.innerHTML = "<tr>" + cols.map(([label, key]) => key === "sel" ? "<th></th>" :
    `<th data-key="${esc(key)}" class="${runsState.sort === key ? "sorted" + (runsState.desc ? " desc" : "") : ""}">${esc(label)}${key.startsWith("config.") ? ` <span class="rm" data-remove="${esc(label)}" title="remove column">×</span>` : ""}</th>`).join("") + "</tr>";
  table.tHead.onclick = (e) => {
    const rm = e.target.dataset?.remove;
    if (rm) {
      runsState.columns = runsState.columns.filter((c) => c !== rm);
      loadRuns().catch(() => {});
      return;
    }
    const k = e.target.dataset?.key;
    if (!k) return;
    runsState.desc = runsState.sort === k ? !runsState.desc : false;
    runsState.sort = k;
    renderRuns();
  };
  const q = runsState.q.toLowerCase();
  let rows = page.runs.filter((r) => !q || [r.name, r.id, r.status, ...r.tags].some((s) => s.toLowerCase().includes(q)));
  const k = runsState.sort, d = runsState.desc ? -1 : 1;
  rows.sort((a, b) => {
    const x = runValue(a, k), y = runValue(b, k);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1; // missing values last either way
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * d;
  });
  table.tBodies[0].innerHTML = rows.map((r) => `<tr data-id="${esc(r.id)}">
    <td><input type="checkbox" data-sel="${esc(r.id)}"${runsState.selected.has(r.id) ? " checked" : ""}></td>
    <td><a href="#/run/${esc(r.id)}">${esc(r.name || "(unnamed)")}</a></td><td class="muted">${esc(r.id)}</td>
    <td class="status-${esc(r.status)}">${esc(r.status)}</td><td class="num">${r.steps}${r.planned ? "/" + r.planned : ""}</td><td class="num">${fmt(r.final_loss)}</td>
    <td>${r.tags.map((t) => `<span class="tag">${esc(t)}</span>`).join("")}</td><td>${esc(fmtTime(r.created))}</td>
    ${runsState.columns.map((c) => `<td class="num">${esc(fmt(r.config?.[c]))}</td>`).join("")}</tr>`).join("");
  table.tBodies[0].onchange = (e) => {
    const id = e.target.dataset?.sel;
    if (!id) return;
    e.target.checked ? runsState.selected.add(id) : runsState.selected.delete(id);
    document.getElementById("compare-btn").disabled = runsState.selected.size < 2;
  };
  document.getElementById("compare-btn").disabled = runsState.selected.size < 2;
  document.getElementById("count").textContent = `${rows.length} of ${page.total} runs`;
  lens.shown = rows.map((r) => r.id);
}

// ---------- run page ----------

async function fetchSeries(id, name, from, to, width = 600) {
  const p = new URLSearchParams({ name, width: String(width) });
  if (from !== undefined) { p.set("from", String(Math.floor(from))); p.set("to", String(Math.ceil(to))); }
  const t0 = performance.now();
  const s = await api(`/api/run/${encodeURIComponent(id)}/metric?${p}`);
  s.fetchMs = performance.now() - t0;
  if (from === undefined) lens.series[name] = s;
  return s;
}

async function viewRun(id) {
  lens.view = "run";
  lens.series = {};
  const gen = generation;
  const run = await api(`/api/run/${encodeURIComponent(id)}`);
  if (gen !== generation) return;
  lens.data.run = run;
  const cfg = Object.entries(run.flat_config).sort(([a], [b]) => a.localeCompare(b));
  main.innerHTML = `<h1>${esc(run.name || run.id)} <span class="status-${esc(run.status)}" id="run-status">${esc(run.status)}</span></h1>
    <div class="muted" id="run-head"></div>
    <div class="grid2"><div><h2>config</h2><table class="kv">${cfg.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(fmt(v))}</td></tr>`).join("")}
      <tr><td>seed</td><td>${run.seed}</td></tr><tr><td>script</td><td>${esc(run.script)}</td></tr></table></div>
    <div><h2>metrics</h2><div id="f-metrics"></div><div class="charts" id="metrics"></div></div></div>
    <h2>checkpoints</h2><div id="f-checkpoints"></div><div id="ckpts"></div>
    <h2>events</h2><div id="events"></div>
    <h2>collectors</h2><div id="collect" class="muted">loading…</div>`;
  renderRunHead(run);
  renderCkpts(run);
  renderEvents(run);
  // Train metrics one chart each; eval sets overlaid in one.
  const charts = (lens.charts = {});
  const order = ["loss", "lr", "grad_norm"];
  const rank = (n) => (order.includes(n) ? order.indexOf(n) : order.length);
  const names = run.metrics.filter((n) => !n.startsWith("eval/")).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const evals = run.metrics.filter((n) => n.startsWith("eval/"));
  const box = document.getElementById("metrics");
  const t0 = performance.now();
  const els = names.map((n) => {
    const el = document.createElement("div");
    el.dataset.metric = n;
    box.appendChild(el);
    return el;
  });
  await Promise.all(names.map(async (n, i) => {
    const s = await fetchSeries(id, n);
    if (gen !== generation) return;
    const el = els[i];
    const c0 = performance.now();
    charts[n] = new Chart(el, { title: n, series: [{ label: n, steps: s.steps, values: s.values }],
      fetch: async (a, b) => { const z = await fetchSeries(id, n, a, b); return [{ label: n, steps: z.steps, values: z.values }]; } });
    lens.timings.push({ what: "chart", name: n, points: s.total, drawn: s.steps.length, fetchMs: s.fetchMs, drawMs: performance.now() - c0 });
  }));
  if (evals.length && gen === generation) {
    const ss = await Promise.all(evals.map((n) => fetchSeries(id, n)));
    const el = document.createElement("div");
    el.dataset.metric = "eval";
    box.prepend(el);
    const evalSeries = () => evals.map((n, i) => ({ label: n, steps: lens.series[n].steps, values: lens.series[n].values, spanGaps: true }));
    charts["eval"] = new Chart(el, { title: "eval sets", series: evalSeries(),
      fetch: async (a, b) => Promise.all(evals.map(async (n) => { const z = await fetchSeries(id, n, a, b); return { label: n, steps: z.steps, values: z.values, spanGaps: true }; })) });
    charts["eval"].refresh = evalSeries;
  }
  lens.timings.push({ what: "run", ms: performance.now() - t0 });
  lens.ready = true;
  loadCollect(id, gen);
  loadFindings(id, gen);
  poll(async () => {
    // One request per tick: the record and, while the run trains, every series.
    const live = lens.data.run.status === "running";
    const q = live ? `?width=600&series=${encodeURIComponent(lens.data.run.metrics.join(","))}` : "";
    const r = await api(`/api/run/${encodeURIComponent(id)}${q}`);
    if (gen !== generation) return;
    const wasRunning = lens.data.run.status === "running";
    lens.data.run = r;
    renderRunHead(r);
    if (!wasRunning && r.status !== "running") return;
    renderCkpts(r);
    renderEvents(r);
    for (const [n, s] of Object.entries(r.series || {})) {
      lens.series[n] = s;
      if (charts[n]) charts[n].update([{ label: n, steps: s.steps, values: s.values }]);
    }
    if (charts.eval) charts.eval.update(charts.eval.refresh());
    if (wasRunning && r.status !== "running") { loadCollect(id, gen); loadFindings(id, gen); }
  });
}

function renderRunHead(r) {
  const el = document.getElementById("run-head");
  if (!el) return;
  document.getElementById("run-status").textContent = r.status;
  document.getElementById("run-status").className = "status-" + r.status;
  el.innerHTML = `id ${esc(r.id)} · <span id="run-steps">${r.steps}${r.planned ? "/" + r.planned : ""}</span> steps · final loss ${fmt(r.final_loss)} · created ${esc(fmtTime(r.created))}
    ${r.reason ? " · " + esc(r.reason) : ""} ${r.tags.map((t) => `<span class="tag">${esc(t)}</span>`).join("")}`;
}

function renderCkpts(r) {
  const sets = [...new Set(r.checkpoints.flatMap((c) => Object.keys(c.eval_loss)))].sort();
  document.getElementById("ckpts").innerHTML = r.checkpoints.length === 0 ? `<p class="muted">none</p>` :
    `<table id="ckpt-table"><tr><th>step</th><th>time</th>${sets.map((s) => `<th>eval/${esc(s)}</th>`).join("")}<th></th></tr>` +
    r.checkpoints.map((c) => `<tr data-step="${c.step}"${c.best ? ' class="best"' : ""}><td class="num">${c.step}</td><td>${esc(fmtTime(c.time))}</td>
      ${sets.map((s) => `<td class="num">${fmt(c.eval_loss[s])}</td>`).join("")}<td>${c.best ? "★ best" : ""}</td></tr>`).join("") + "</table>";
}

function renderEvents(r) {
  document.getElementById("events").innerHTML = r.events.length === 0 ? `<p class="muted">none</p>` :
    `<table><tr><th>step</th><th>kind</th><th>message</th><th>time</th></tr>` +
    r.events.map((e) => `<tr><td class="num">${e.step}</td><td>${esc(e.kind)}</td><td>${esc(e.message)}</td><td>${esc(fmtTime(e.time))}</td></tr>`).join("") + "</table>";
}

async function loadCollect(id, gen) {
  const panels = await api(`/api/run/${encodeURIComponent(id)}/collect`).catch((e) => ({ error: e.message }));
  if (gen !== generation) return;
  lens.data.collect = panels;
  const box = document.getElementById("collect");
  if (panels.error) { box.textContent = panels.error; return; }
  box.className = "";
  box.innerHTML = panels.length ? "" : `<p class="muted">no collector records (lens.train(collect=[...]))</p>`;
  for (const p of panels) {
    const sec = document.createElement("section");
    sec.dataset.collector = p.collector;
    sec.innerHTML = `<h3>${esc(p.collector)} <span class="muted">(${p.records} records)</span></h3><div id="f-${esc(p.collector)}"></div>${p.note ? `<p class="muted">${esc(p.note)}</p>` : ""}`;
    box.appendChild(sec);
    const charts = document.createElement("div");
    charts.className = "charts";
    sec.appendChild(charts);
    for (const l of p.lines || []) {
      const el = document.createElement("div");
      charts.appendChild(el);
      new Chart(el, { title: l.title, log: l.log, width: 460, height: 180, series: l.names.map((n, i) => ({ label: n.replace(/^model\.layers\./, "L"), steps: l.steps, values: l.values[i], spanGaps: true })) });
    }
    const hm = document.createElement("div");
    sec.appendChild(hm);
    for (const h of p.heatmaps || []) heatmap(hm, h);
  }
  if (lens.data.findings) renderFindings(lens.data.findings);
}

async function loadFindings(id, gen) {
  const f = await api(`/api/run/${encodeURIComponent(id)}/findings`).catch(() => null);
  if (gen !== generation || !f) return;
  lens.data.findings = f;
  renderFindings(f);
}

function renderFindings(list) {
  for (const f of list) {
    const el = document.getElementById("f-" + f.panel);
    if (!el || (!f.findings?.length && !f.error)) continue;
    el.innerHTML = `<div class="findings"><b>${esc(f.analyzer)}</b><ul>${(f.findings || []).map((x) => `<li>${esc(x)}</li>`).join("")}</ul></div>`;
  }
}

// ---------- compare ----------

async function viewCompare(ids, metric = "loss", module = "") {
  lens.view = "compare";
  const gen = generation;
  const p = new URLSearchParams({ ids: ids.join(","), metric, width: "800" });
  if (module) p.set("module", module);
  const c = await api("/api/compare?" + p);
  if (gen !== generation) return;
  lens.data.compare = c;
  const metrics = new Set(["loss"]);
  const firstRun = await api(`/api/run/${encodeURIComponent(ids[0])}`);
  firstRun.metrics.forEach((m) => metrics.add(m));
  main.innerHTML = `<h1>compare ${c.runs.length} runs</h1>
    <div class="controls">metric <select id="cmp-metric">${[...metrics].map((m) => `<option${m === metric ? " selected" : ""}>${esc(m)}</option>`).join("")}</select></div>
    <div id="cmp-chart"></div>
    <h2>config diff</h2><table id="diff"><tr><th>field</th>${c.runs.map((r) => `<th>${esc(r.name || r.id)}</th>`).join("")}</tr>
    ${c.diff.map((d) => `<tr><td>${esc(d.field)}</td>${d.values.map((v) => `<td>${esc(fmt(v))}</td>`).join("")}</tr>`).join("")}</table>
    ${c.diff.length ? "" : `<p class="muted">identical configs</p>`}
    <h2>subspace similarity φ(i, j)</h2><div id="phi"></div>`;
  document.getElementById("cmp-metric").onchange = (e) => viewCompare(ids, e.target.value, module);
  const names = new Map(c.runs.map((r) => [r.id, r.name || r.id]));
  const chart = new Chart(document.getElementById("cmp-chart"), { title: metric, width: 820, height: 300,
    series: c.series.map((s) => ({ label: `${names.get(s.run)} (${s.run})`, steps: s.steps, values: s.values })) });
  lens.charts = { compare: chart };
  const phi = document.getElementById("phi");
  if (c.phi) {
    const sel = document.createElement("div");
    sel.innerHTML = `module <select id="phi-module">${c.phi.modules.map((m) => `<option${m === c.phi.module ? " selected" : ""}>${esc(m)}</option>`).join("")}</select>
      <span class="muted"> rows: ${esc(names.get(c.runs[0].id))}, columns: ${esc(names.get(c.runs[1].id))}; the random baseline is E[φ] = max(i, j)/in for unrelated subspaces</span>`;
    phi.appendChild(sel);
    sel.querySelector("select").onchange = (e) => viewCompare(ids, metric, e.target.value);
    const lab = (n) => Array.from({ length: n }, (_, i) => String(i + 1));
    heatmap(phi, { title: "φ(i, j)", rows: lab(c.phi.grid.length), cols: lab(c.phi.grid[0].length), values: c.phi.grid }, { min: 0, max: 1 });
    heatmap(phi, { title: "random baseline", rows: lab(c.phi.baseline.length), cols: lab(c.phi.baseline[0].length), values: c.phi.baseline }, { min: 0, max: 1 });
  } else {
    phi.innerHTML = `<p class="muted">${esc(c.phi_note || "needs two LoRA runs with checkpoints")}</p>`;
  }
  lens.ready = true;
  poll(async () => {
    if (!c.runs.some((r) => r.status === "running")) return;
    const n = await api("/api/compare?" + p);
    if (gen !== generation) return;
    lens.data.compare = n;
    chart.update(n.series.map((s) => ({ label: `${names.get(s.run)} (${s.run})`, steps: s.steps, values: s.values })));
  });
}

// ---------- sweeps ----------

async function viewSweeps() {
  lens.view = "sweeps";
  const render = async () => {
    const list = await api("/api/sweeps");
    lens.data.sweeps = list;
    main.innerHTML = `<h1>sweeps</h1>` + (list.length ? "" : `<p class="muted">no sweeps in this store (sweeps run with backend="local" or "slurm" keep their state in STORE/sweeps/)</p>`) +
      list.map((s) => `<section data-sweep="${esc(s.name)}"><h2>${esc(s.name)} <span class="muted">${esc(s.backend)}</span></h2>
      ${s.error ? `<p class="err">${esc(s.error)}</p>` : ""}
      <p>${Object.entries(s.counts || {}).map(([k, v]) => `${v} ${esc(k)}`).join(", ")}${s.best ? ` · best so far <b>${esc(s.best.name)}</b> ${fmt(s.best.best)}` : ""}
      ${s.halving ? ` · successive halving: ${s.halving.rungs} rungs, η=${s.halving.eta}, milestones ${esc(s.halving.milestones.join(", "))}, metric ${esc(s.halving.metric)}` : ""}</p>
      <table><tr><th>trial</th><th>name</th><th>state</th><th>step</th><th>best</th>${s.halving ? "<th>rungs</th>" : ""}<th>attempts</th><th>note</th></tr>
      ${s.trials.map((t) => `<tr${s.best && s.best.id === t.id ? ' class="best"' : ""}><td>${esc(t.id)}</td><td>${t.run_id ? `<a href="#/run/${esc(t.run_id)}">${esc(t.name)}</a>` : esc(t.name)}</td>
        <td class="status-${esc(t.state)}">${esc(t.state)}</td><td class="num">${t.step}${t.steps ? "/" + t.steps : ""}</td><td class="num">${fmt(t.best)}</td>
        ${s.halving ? `<td>${esc((t.rungs || []).map(fmt).join(" → "))}</td>` : ""}<td class="num">${t.attempts}</td><td>${esc(t.error || "")}</td></tr>`).join("")}</table></section>`).join("");
  };
  await render();
  lens.ready = true;
  poll(render);
}

// ---------- routing ----------

async function route() {
  generation++;
  clearTimeout(timer);
  lens.ready = false;
  lens.data = {};
  const h = location.hash.replace(/^#/, "") || "/";
  try {
    let m;
    if ((m = h.match(/^\/run\/([^/]+)$/))) await viewRun(decodeURIComponent(m[1]));
    else if ((m = h.match(/^\/compare\/([^/]+)$/))) await viewCompare(decodeURIComponent(m[1]).split(","));
    else if (h === "/sweeps") await viewSweeps();
    else await viewRuns();
  } catch (e) {
    main.innerHTML = `<p class="err">${esc(e.message)}</p>`;
    lens.error = e.message;
  }
}

window.addEventListener("hashchange", route);
route();
