// Weave Router dashboard: plain JS, no build step. Reads /v1/analytics/* for the chosen window and
// re-renders every few seconds. Each figure carries its raw value in data-value (tests read those).
"use strict";

const PALETTE = ["#6c8cff", "#3ecf8e", "#f5a524", "#f0566a", "#b07cff", "#36c5d8", "#e28743", "#9bd13a", "#d86cc4", "#a0a8bd"];
const NS = "http://www.w3.org/2000/svg";
const qs = new URLSearchParams(location.search);
const state = { window: qs.get("since") || "24h", until: qs.get("until"), timer: null, loads: 0, colors: {} };

function colorOf(name) {
  if (!(name in state.colors)) state.colors[name] = PALETTE[Object.keys(state.colors).length % PALETTE.length];
  return state.colors[name];
}

const fmt = {
  usd: (v) => v == null ? "–" : "$" + (Math.abs(v) >= 100 ? v.toFixed(2) : Math.abs(v) >= 1 ? v.toFixed(3) : v.toFixed(4)),
  pct: (v) => v == null ? "–" : (v * 100).toFixed(1) + "%",
  int: (v) => v == null ? "–" : Number(v).toLocaleString("en-US"),
  ms: (v) => v == null ? "–" : v < 10 ? v.toFixed(3) : v.toFixed(1),
  num: (v, d = 2) => v == null ? "–" : Number(v).toFixed(d),
  time: (s) => s ? new Date(s).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "–",
  datetime: (s) => s ? new Date(s).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "–",
};

function setFigure(id, value, kind) {
  const el = document.getElementById(id);
  if (!el) return;
  el.textContent = fmt[kind](value);
  el.dataset.value = value == null ? "" : String(value);
}

function cell(tr, text, field, value, cls) {
  const td = document.createElement("td");
  if (text instanceof Node) td.appendChild(text); else td.textContent = text;
  if (field) td.dataset.field = field;
  if (value !== undefined) td.dataset.value = value == null ? "" : String(value);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function rateBar(v) {
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = v == null ? "0" : Math.round(v * 100) + "%";
  fill.style.background = v == null ? "transparent" : v >= 0.75 ? "var(--good)" : v >= 0.5 ? "var(--warn)" : "var(--bad)";
  const label = document.createElement("b");
  label.textContent = fmt.pct(v);
  bar.append(fill, label);
  return bar;
}

function fillTable(id, rows, keyField, render) {
  const tbody = document.querySelector(`#${id} tbody`);
  tbody.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    if (keyField) tr.dataset.key = String(r[keyField]);
    render(tr, r);
    tbody.appendChild(tr);
  }
  document.getElementById(id).dataset.rows = String(rows.length);
}

async function get(view, extra = {}) {
  const params = new URLSearchParams({ since: state.window, ...(state.until ? { until: state.until } : {}), ...extra });
  const res = await fetch(`/v1/analytics/${view}?${params}`, { cache: "no-store" });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
  return body;
}

function renderSummary(s, fb) {
  setFigure("kpi-requests", s.requests, "int");
  setFigure("kpi-sessions", s.sessions, "int");
  setFigure("kpi-cost", s.cost_usd, "usd");
  setFigure("kpi-baseline", s.baseline_cost_usd, "usd");
  setFigure("kpi-saved", s.saved_usd, "usd");
  setFigure("kpi-saved-pct", s.saved_pct, "pct");
  setFigure("kpi-success", s.success_rate, "pct");
  setFigure("kpi-outcome-sessions", s.outcome_sessions, "int");
  setFigure("kpi-outcomes", s.outcomes, "int");
  setFigure("kpi-overhead-p50", s.overhead_ms_p50, "ms");
  setFigure("kpi-overhead-p99", s.overhead_ms_p99, "ms");
  setFigure("kpi-fallbacks", s.fallbacks, "int");
  setFigure("kpi-errors", s.errors, "int");
  setFigure("kpi-breaker", fb.breaker_events, "int");
  if (s.frontier_model) document.getElementById("kpi-frontier").textContent = s.frontier_model;

  const total = s.requests || 0;
  fillTable("models-table", s.models, "model", (tr, m) => {
    const name = document.createElement("span");
    name.innerHTML = `<i style="display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:6px;background:${colorOf(m.model)}"></i>`;
    name.append(m.model);
    cell(tr, name, "model", m.model);
    cell(tr, fmt.int(m.requests), "requests", m.requests, "num");
    const share = total ? m.requests / total : null;
    cell(tr, fmt.pct(share), "share", share, "num");
    cell(tr, fmt.usd(m.cost_usd), "cost_usd", m.cost_usd, "num");
    cell(tr, fmt.usd(m.baseline_cost_usd), "baseline_cost_usd", m.baseline_cost_usd, "num");
    cell(tr, fmt.usd(m.saved_usd), "saved_usd", m.saved_usd, "num");
    cell(tr, rateBar(m.success_rate), "success_rate", m.success_rate);
    cell(tr, fmt.ms(m.overhead_ms_p50), "overhead_ms_p50", m.overhead_ms_p50, "num");
    cell(tr, fmt.ms(m.overhead_ms_p99), "overhead_ms_p99", m.overhead_ms_p99, "num");
    cell(tr, `${fmt.int(m.input_tokens)} / ${fmt.int(m.output_tokens)}`, "tokens", `${m.input_tokens}/${m.output_tokens}`, "num");
  });
  fillTable("tiers-table", s.tiers || [], "tier", (tr, t) => {
    cell(tr, t.tier, "tier", t.tier);
    cell(tr, fmt.int(t.requests), "requests", t.requests, "num");
    cell(tr, fmt.pct(t.share), "share", t.share, "num");
    cell(tr, fmt.usd(t.cost_usd), "cost_usd", t.cost_usd, "num");
    cell(tr, (t.models || []).join(", "), "models", (t.models || []).join(","));
  });
}

function renderBreakdown(id, key, rows) {
  fillTable(id, rows, key, (tr, r) => {
    cell(tr, r[key] === "" ? "(none)" : r[key], key, r[key]);
    cell(tr, fmt.int(r.requests), "requests", r.requests, "num");
    cell(tr, fmt.usd(r.cost_usd), "cost_usd", r.cost_usd, "num");
    cell(tr, fmt.usd(r.saved_usd), "saved_usd", r.saved_usd, "num");
    cell(tr, fmt.int(r.outcome_sessions), "outcome_sessions", r.outcome_sessions, "num");
    cell(tr, rateBar(r.success_rate), "success_rate", r.success_rate);
  });
}

function renderOverhead(o) {
  fillTable("overhead-table", o.by_dialect, "client_dialect", (tr, r) => {
    cell(tr, r.client_dialect, "client_dialect", r.client_dialect);
    cell(tr, fmt.int(r.requests), "requests", r.requests, "num");
    for (const f of ["overhead_ms_p50", "overhead_ms_p90", "overhead_ms_p99", "latency_ms_p50", "latency_ms_p99", "ttft_ms_p50"]) {
      cell(tr, fmt.ms(r[f]), f, r[f], "num");
    }
  });
}

function renderErrors(fb) {
  const rows = fb.errors_by.length ? fb.errors_by : [];
  fillTable("errors-table", rows, null, (tr, r) => {
    cell(tr, r.provider, "provider", r.provider);
    cell(tr, String(r.status), "status", r.status, "num");
    cell(tr, r.message || "–", "message", r.message, "reason");
    cell(tr, fmt.int(r.count), "count", r.count, "num");
  });
  const t = document.getElementById("errors-table");
  t.dataset.fallbacks = String(fb.fallbacks);
  t.dataset.fallbackRate = fb.fallback_rate == null ? "" : String(fb.fallback_rate);
}

function renderPolicies(rows) {
  fillTable("policy-table", rows, null, (tr, r) => {
    tr.dataset.key = `${r.policy}@${r.policy_version}`;
    cell(tr, r.policy, "policy", r.policy);
    cell(tr, "v" + r.policy_version, "policy_version", r.policy_version, "num");
    cell(tr, fmt.int(r.decisions), "decisions", r.decisions, "num");
    cell(tr, fmt.int(r.sessions), "sessions", r.sessions, "num");
    cell(tr, r.models.join(", "), "models", r.models.join(","), "reason");
    cell(tr, fmt.usd(r.cost_usd), "cost_usd", r.cost_usd, "num");
    cell(tr, fmt.usd(r.saved_usd), "saved_usd", r.saved_usd, "num");
    cell(tr, rateBar(r.success_rate), "success_rate", r.success_rate);
    cell(tr, fmt.datetime(r.first_seen), "first_seen", r.first_seen);
    cell(tr, fmt.datetime(r.last_seen), "last_seen", r.last_seen);
  });
}

function renderDecisions(rows) {
  fillTable("decisions-table", rows, "decision_id", (tr, r) => {
    cell(tr, fmt.time(r.ts), "ts", r.ts);
    cell(tr, r.session_id.length > 14 ? r.session_id.slice(0, 14) + "…" : r.session_id, "session_id", r.session_id);
    cell(tr, r.model, "model", r.model);
    cell(tr, r.route, "route", r.route);
    cell(tr, `${r.policy} v${r.policy_version}`, "policy", `${r.policy}@${r.policy_version}`);
    cell(tr, r.task_type || "–", "task_type", r.task_type);
    cell(tr, fmt.num(r.confidence), "confidence", r.confidence, "num");
    cell(tr, r.reason, "reason", r.reason, "reason");
    const pill = document.createElement("span");
    const s = r.session_success;
    pill.className = "pill" + (s == null ? "" : s >= 0.5 ? " ok" : " fail");
    pill.textContent = s == null ? "pending" : s >= 0.5 ? "passed" : "failed";
    cell(tr, pill, "session_success", s);
  });
}

// ---- charts (inline SVG) ----------------------------------------------------------------------

function svg(tag, attrs, parent) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function frame(containerId, maxY, times) {
  const box = document.getElementById(containerId);
  box.replaceChildren();
  const W = 640, H = 220, L = 52, R = 10, T = 10, B = 24;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" }, box);
  const y = (v) => T + (H - T - B) * (1 - v / (maxY || 1));
  for (let i = 0; i <= 4; i++) {
    const v = (maxY || 1) * i / 4;
    svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }, root);
    svg("text", { x: L - 6, y: y(v) + 3, "text-anchor": "end" }, root).textContent = v >= 10 ? v.toFixed(0) : v.toFixed(v >= 1 ? 1 : 3);
  }
  const n = Math.max(times.length, 1);
  const x = (i) => L + (W - L - R) * (n === 1 ? 0.5 : i / (n - 1));
  const step = Math.max(1, Math.ceil(n / 6));
  times.forEach((t, i) => {
    if (i % step !== 0) return;
    const anchor = n > 1 && i === 0 ? "start" : n > 1 && i === n - 1 ? "end" : "middle";
    svg("text", { x: x(i), y: H - 6, "text-anchor": anchor }, root).textContent = fmt.time(t);
  });
  return { root, x, y, W, L, R, n };
}

function legend(id, items) {
  const el = document.getElementById(id);
  el.replaceChildren();
  for (const [name, color] of items) {
    const s = document.createElement("span");
    s.innerHTML = `<i style="background:${color}"></i>`;
    s.append(name);
    el.appendChild(s);
  }
}

function renderCostChart(ts) {
  let c = 0, b = 0;
  const cost = [], base = [];
  for (const p of ts.points) { c += p.cost_usd; b += p.baseline_cost_usd; cost.push(c); base.push(b); }
  const f = frame("chart-cost", Math.max(b, c) * 1.05, ts.points.map((p) => p.t));
  const line = (vals, color, fill) => {
    if (!vals.length) return;
    const pts = vals.map((v, i) => `${f.x(i)},${f.y(v)}`).join(" ");
    if (fill) svg("polygon", { points: `${f.x(0)},${f.y(0)} ${pts} ${f.x(vals.length - 1)},${f.y(0)}`, fill, opacity: 0.15 }, f.root);
    svg("polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2 }, f.root);
    // Dots too: a line through one bucket (a short demo in a long window) draws nothing.
    if (vals.length <= 60) vals.forEach((v, i) => svg("circle", { cx: f.x(i), cy: f.y(v), r: 4, fill: color }, f.root));
  };
  line(base, "#f5a524", "#f5a524");
  line(cost, "#6c8cff", "#6c8cff");
  document.getElementById("chart-cost").dataset.points = String(ts.points.length);
  legend("legend-cost", [["baseline (frontier default)", "#f5a524"], ["actual cost", "#6c8cff"], [`saved ${fmt.usd(b - c)}`, "#3ecf8e"]]);
}

function renderMixChart(ts) {
  const models = [...new Set(ts.points.flatMap((p) => Object.keys(p.models)))].sort();
  const maxY = Math.max(1, ...ts.points.map((p) => p.requests));
  const f = frame("chart-mix", maxY, ts.points.map((p) => p.t));
  const slot = (f.W - f.L - f.R) / Math.max(f.n, 1);
  const w = Math.max(2, slot * 0.7);
  const cx = (i) => f.L + slot * (i + 0.5);  // bars sit inside their slot, never half outside the plot
  ts.points.forEach((p, i) => {
    let acc = 0;
    for (const m of models) {
      const v = p.models[m] || 0;
      if (!v) continue;
      svg("rect", { x: cx(i) - w / 2, y: f.y(acc + v), width: w, height: f.y(acc) - f.y(acc + v), fill: colorOf(m) }, f.root)
        .appendChild(svg("title", {})).textContent = `${m}: ${v}`;
      acc += v;
    }
  });
  document.getElementById("chart-mix").dataset.models = models.join(",");
  legend("legend-mix", models.map((m) => [m, colorOf(m)]));
}

// ---- refresh loop -------------------------------------------------------------------------------

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [s, routes, tasks, ts, decisions, policies, overhead, fb] = await Promise.all([
      get("summary"), get("routes"), get("task_types"), get("timeseries"), get("decisions", { limit: 25 }),
      get("policy_versions"), get("overhead"), get("fallbacks", { limit: 20 }),
    ]);
    renderSummary(s, fb);
    renderBreakdown("routes-table", "route", routes);
    renderBreakdown("task-types-table", "task_type", tasks);
    renderCostChart(ts);
    renderMixChart(ts);
    renderDecisions(decisions);
    renderPolicies(policies);
    renderOverhead(overhead);
    renderErrors(fb);
    status.textContent = "live";
    status.dataset.state = "ok";
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.window = state.window;
    document.body.dataset.loaded = String(++state.loads);
  } catch (err) {
    status.textContent = "error: " + err.message;
    status.dataset.state = "error";
  }
}

function schedule() {
  clearInterval(state.timer);
  const seconds = Number(qs.get("refresh") || document.body.dataset.refreshS || 5);
  if (document.getElementById("auto-refresh").checked && seconds > 0) state.timer = setInterval(refresh, seconds * 1000);
}

const sel = document.getElementById("window");
if (![...sel.options].some((o) => o.value === state.window)) sel.add(new Option(state.window, state.window));
sel.value = state.window;
sel.addEventListener("change", () => { state.window = sel.value; refresh(); });
document.getElementById("auto-refresh").addEventListener("change", schedule);
refresh();
schedule();
