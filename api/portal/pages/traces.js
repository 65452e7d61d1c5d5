// A run's GenAI traces (those whose metadata names the run, "mlflow.sourceRun"): each with its spans summary
// (how many, how many failed, of which types), its assessments, and on demand its spans as a tree with a
// waterfall of their timings and each span's inputs and outputs. Read with SQL over the `traces`, `spans` and
// `assessments` views through POST /api/v1/sql, so the "as of" time is honoured like on the SQL page.
import { asOf, fmtNum, fmtTime, html, records, showError, sql } from "../lib.js";

const LIMIT = 200;

const TRACES_SQL = `
SELECT t.trace_id, t.trace_name, t.state, t.request_time, t.execution_duration_ms, t.total_tokens,
       t.request_preview, t.response_preview,
       count(s.span_id) AS spans,
       count(s.span_id) FILTER (WHERE s.status_code = 'ERROR') AS error_spans,
       string_agg(DISTINCT s.span_type, ', ' ORDER BY s.span_type) AS span_types,
       (SELECT count(*) FROM assessments a WHERE a.trace_id = t.trace_id) AS assessments
FROM traces t LEFT JOIN spans s ON s.trace_id = t.trace_id
WHERE t.run_id = ?
GROUP BY ALL
ORDER BY t.request_time DESC
LIMIT ${LIMIT + 1}`;

const SPANS_SQL = `
SELECT span_id, parent_span_id, name, span_type, status_code, status_message, started_at, duration_ms,
       attributes_json ->> '$."mlflow.spanInputs"' AS inputs, attributes_json ->> '$."mlflow.spanOutputs"' AS outputs
FROM spans WHERE trace_id = ? ORDER BY started_at, span_id`;

const ASSESSMENTS_SQL = `
SELECT name, kind, value_json, source_type, source_id, is_valid, created_at
FROM assessments WHERE trace_id = ? ORDER BY created_at`;

/** The SQL console's address for a query (the "open in SQL" links). */
const sqlLink = (text) => `#/sql?${new URLSearchParams({ sql: text.trim() })}`;
const quoted = (value) => `'${String(value).replace(/'/g, "''")}'`;

export async function renderTraces(el, runId) {
  el.innerHTML = html`<h2 id="h-traces">Traces</h2><div id="traces-body"><p class="muted">Loading…</p></div>`.text;
  const body = el.querySelector("#traces-body");
  const when = asOf();
  let rows;
  try {
    rows = records(await sql(TRACES_SQL, { params: [runId], asOf: when }));
  } catch (error) {
    showError(body, error);
    return;
  }
  if (!rows.length) {
    body.innerHTML = html`<p class="muted">No trace names this run (traces recorded inside <code>mlflow.start_run()</code> do).</p>`.text;
    return;
  }
  const more = rows.length > LIMIT;
  rows = rows.slice(0, LIMIT);
  body.innerHTML = html`<p class="muted">${more ? `The newest ${LIMIT}` : rows.length} trace${rows.length === 1 ? "" : "s"};
      <a href="${sqlLink(`SELECT * FROM traces WHERE run_id = ${quoted(runId)} ORDER BY request_time DESC`)}">all in SQL</a>.</p>
    <div class="result"><table class="plain" id="traces"><thead><tr><th scope="col">Trace</th><th scope="col">State</th>
      <th scope="col">Started</th><th scope="col">Duration (ms)</th><th scope="col">Spans</th><th scope="col">Span types</th>
      <th scope="col">Tokens</th><th scope="col">Assessments</th><th scope="col">Request → response</th></tr></thead>
    <tbody>${rows.map(
      (t) => html`<tr data-trace-id="${t.trace_id}"><td><button type="button" class="link trace-toggle" aria-expanded="false"
          aria-controls="spans-${t.trace_id}">${t.trace_name || t.trace_id.slice(0, 12)}</button></td>
        <td><span class="badge ${t.state === "ERROR" ? "FAILED" : t.state === "OK" ? "FINISHED" : ""}">${t.state}</span></td>
        <td>${fmtTime(t.request_time)}</td><td class="num">${fmtNum(t.execution_duration_ms)}</td>
        <td class="num span-count">${t.spans}${t.error_spans ? html` <span class="error">(${t.error_spans} failed)</span>` : ""}</td>
        <td>${t.span_types || ""}</td><td class="num">${fmtNum(t.total_tokens)}</td><td class="num">${t.assessments}</td>
        <td class="preview">${t.request_preview || ""}${t.response_preview ? ` → ${t.response_preview}` : ""}</td></tr>
        <tr class="trace-detail" id="spans-${t.trace_id}" hidden><td colspan="9"></td></tr>`,
    )}</tbody></table></div>`.text;

  body.addEventListener("click", async (e) => {
    const button = e.target.closest(".trace-toggle");
    if (!button) return;
    const row = button.closest("tr");
    const detail = row.nextElementSibling;
    const open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", String(!open));
    detail.hidden = open;
    if (open || detail.dataset.loaded) return;
    detail.dataset.loaded = "1";
    const cell = detail.firstElementChild;
    cell.innerHTML = `<p class="muted">Loading spans…</p>`;
    try {
      const traceId = row.dataset.traceId;
      const [spans, assessments] = await Promise.all([
        sql(SPANS_SQL, { params: [traceId], asOf: when }).then(records),
        sql(ASSESSMENTS_SQL, { params: [traceId], asOf: when }).then(records),
      ]);
      cell.innerHTML = spanTree(spans) + assessmentList(assessments) +
        html`<p><a href="${sqlLink(`SELECT * FROM spans WHERE trace_id = ${quoted(traceId)} ORDER BY started_at`)}">These spans in SQL</a></p>`.text;
    } catch (error) {
      delete detail.dataset.loaded;
      showError(cell, error);
    }
  });
}

/** The spans as a tree (children under their parent, in start order) with a waterfall bar of each one's time. */
function spanTree(spans) {
  if (!spans.length) return `<p class="muted">No span recorded.</p>`;
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const s of spans) {
    const parent = s.parent_span_id && ids.has(s.parent_span_id) ? s.parent_span_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(s);
  }
  const start = (s) => Date.parse(s.started_at);
  const t0 = Math.min(...spans.map(start));
  const t1 = Math.max(...spans.map((s) => start(s) + (s.duration_ms || 0)));
  const total = Math.max(1e-3, t1 - t0);
  const ordered = [];
  const walk = (parent, depth) => {
    for (const s of children.get(parent) || []) {
      ordered.push([s, depth]);
      walk(s.span_id, depth + 1);
    }
  };
  walk(null, 0);
  const io = (label, value) => (value ? html`<div><strong>${label}</strong><pre>${value}</pre></div>` : "");
  return html`<table class="plain spans" data-spans="${spans.length}"><thead><tr><th scope="col">Span</th><th scope="col">Type</th>
      <th scope="col">Status</th><th scope="col">Duration (ms)</th><th scope="col">Timeline</th></tr></thead>
    <tbody>${ordered.map(([s, depth]) => {
      const left = ((start(s) - t0) / total) * 100;
      const width = Math.max(0.5, ((s.duration_ms || 0) / total) * 100);
      return html`<tr data-span="${s.name}" data-depth="${depth}"><td style="padding-left:${10 + depth * 18}px">
          ${s.inputs || s.outputs
            ? html`<details><summary>${s.name}</summary>${io("Inputs", s.inputs)}${io("Outputs", s.outputs)}</details>`
            : s.name}</td>
        <td>${s.span_type || ""}</td>
        <td>${s.status_code === "ERROR" ? html`<span class="error">ERROR</span> ${s.status_message || ""}` : s.status_code}</td>
        <td class="num">${fmtNum(s.duration_ms)}</td>
        <td class="waterfall"><span style="margin-left:${left.toFixed(2)}%;width:${width.toFixed(2)}%" class="${s.status_code === "ERROR" ? "bad" : ""}"></span></td></tr>`;
    })}</tbody></table>`.text;
}

function assessmentList(assessments) {
  if (!assessments.length) return "";
  return html`<h3>Assessments</h3><ul class="plain-list assessments">${assessments.map(
    (a) => html`<li>${a.kind} <strong>${a.name}</strong> = <code>${a.value_json}</code>
      <span class="muted">by ${a.source_id || a.source_type || "?"}, ${fmtTime(a.created_at)}${a.is_valid ? "" : " (overridden)"}</span></li>`,
  )}</ul>`.text;
}

