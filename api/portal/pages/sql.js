// The SQL console: run read-only SQL over the lake's views (POST /api/v1/sql, "as of" honoured), see the answer
// as a table or a chart, download it as CSV or Parquet, and save, share and reuse queries (the saved-queries table).
import uPlot from "/portal/vendor/uplot.js";
import { PALETTE } from "../charts.js";
import { api, ApiError, asOf, asOfNote, csrfHeaders, fmtNum, hashQuery, html, setHashQuery, showError, sql } from "../lib.js";

const MAX_ROWS = 10_000;
const PARQUET = "application/vnd.apache.parquet";
const SHOWN_ROWS = 1_000;
const DEFAULT_SQL = "SELECT experiment_id, count(*) AS runs, max(updated_at) AS last_activity\nFROM runs\nGROUP BY experiment_id\nORDER BY runs DESC";

/** One CSV field (RFC 4180): quoted when it holds a comma, quote or line break. */
function csvField(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(answer) {
  return [answer.columns, ...answer.rows].map((row) => row.map(csvField).join(",")).join("\r\n") + "\r\n";
}

export async function renderSql(view) {
  const query = hashQuery();
  view.innerHTML = html`
    <h1>SQL</h1>
    ${asOfNote()}
    <p class="muted">One read-only SELECT over the lake's views (<code>runs</code>, <code>params</code>, <code>metrics</code>,
      <code>latest_metrics</code>, <code>model_versions</code>, <code>activity</code>, <code>comments</code>, …;
      <code>runs_wide('experiment')</code> puts params and metrics side by side). Ctrl+Enter runs it.</p>
    <div class="grid2 sql-layout">
      <form id="sql-form">
        <label for="sql-text" class="sr-only">SQL</label>
        <textarea id="sql-text" class="sql-editor" spellcheck="false" aria-label="SQL">${query.get("sql") || DEFAULT_SQL}</textarea>
        <div class="toolbar">
          <button type="submit" class="primary">Run</button>
          <button type="button" id="download-csv" disabled>Download CSV</button>
          <button type="button" id="download-parquet" disabled>Download Parquet</button>
          <label><input type="checkbox" id="as-chart"> Chart</label>
          <span class="muted" id="sql-status" aria-live="polite"></span>
        </div>
      </form>
      <section class="panel" aria-labelledby="h-saved"><h2 id="h-saved">Saved queries</h2>
        <ul id="saved-list" class="plain-list"></ul>
        <form id="save-form" class="toolbar">
          <label for="save-name">Name</label><input id="save-name" required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}" size="18">
          <label for="save-description">Description</label><input id="save-description" size="24">
          <button type="submit">Save</button>
        </form>
        <div id="save-status" aria-live="polite"></div>
      </section>
    </div>
    <div id="chart-controls" class="toolbar" hidden>
      <label for="chart-x">X</label><select id="chart-x"></select>
      <label for="chart-y">Y</label><select id="chart-y"></select>
    </div>
    <div class="chart" id="sql-chart" hidden></div>
    <div id="sql-result" class="result"></div>`.text;

  const text = view.querySelector("#sql-text");
  const status = view.querySelector("#sql-status");
  const result = view.querySelector("#sql-result");
  const download = view.querySelector("#download-csv");
  const downloadParquet = view.querySelector("#download-parquet");
  const chartBox = view.querySelector("#sql-chart");
  const chartControls = view.querySelector("#chart-controls");
  let answer = null;
  let plot = null;
  let latest = 0; // the run whose answer the page shows: an earlier run that answers later is dropped

  function drawTable() {
    const rows = answer.rows.slice(0, SHOWN_ROWS);
    result.innerHTML = html`<table class="plain" id="sql-table"><thead><tr>${answer.columns.map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
      <tbody>${rows.map((row) => html`<tr>${row.map((v) => (typeof v === "number" ? html`<td class="num">${fmtNum(v)}</td>` : html`<td>${v === null ? "" : typeof v === "object" ? JSON.stringify(v) : v}</td>`))}</tr>`)}</tbody></table>`.text;
  }

  function numericColumns() {
    return answer.columns.filter((c, i) => answer.rows.some((r) => typeof r[i] === "number" || (typeof r[i] === "string" && !Number.isNaN(Date.parse(r[i])) && /\d{4}-\d{2}-\d{2}/.test(r[i]))));
  }

  function drawChart() {
    plot?.destroy();
    plot = null;
    const on = view.querySelector("#as-chart").checked && answer;
    chartBox.hidden = !on;
    chartControls.hidden = !on;
    if (!on) return;
    const xi = answer.columns.indexOf(view.querySelector("#chart-x").value);
    const yi = answer.columns.indexOf(view.querySelector("#chart-y").value);
    const value = (v) => (typeof v === "number" ? v : typeof v === "string" && /\d{4}-\d{2}-\d{2}/.test(v) ? Date.parse(v) / 1000 : null);
    const pairs = answer.rows.map((r) => [value(r[xi]), value(r[yi])]).filter(([x, y]) => x !== null && y !== null).sort((a, b) => a[0] - b[0]);
    chartBox.dataset.points = String(pairs.length);
    const isTime = answer.rows.some((r) => typeof r[xi] === "string");
    plot = new uPlot(
      {
        mode: 2,
        width: Math.max(300, chartBox.clientWidth || 800),
        height: 300,
        legend: { show: false },
        scales: { x: { time: isTime }, y: {} },
        axes: [{ label: answer.columns[xi] }, { label: answer.columns[yi], size: 60, values: (u, t) => t.map(fmtNum) }],
        series: [{}, { stroke: PALETTE[0], fill: PALETTE[0], paths: uPlot.paths.points(), points: { show: true, size: 6 }, facets: [{ scale: "x", auto: true }, { scale: "y", auto: true }] }],
      },
      [null, [pairs.map((p) => p[0]), pairs.map((p) => p[1])]],
      chartBox,
    );
  }

  async function run() {
    const mine = ++latest;
    const asked = text.value;
    const when = asOf();
    const params = new URLSearchParams({ sql: asked });
    setHashQuery(params);
    status.textContent = "Running…";
    result.innerHTML = "";
    download.disabled = true;
    downloadParquet.disabled = true;
    const started = performance.now();
    try {
      const reply = await sql(asked, { maxRows: MAX_ROWS, asOf: when });
      if (mine !== latest) return;
      answer = { ...reply, sql: asked, asOf: when }; // what the downloads ask again
      const ms = Math.round(performance.now() - started);
      status.textContent = `${answer.rows.length.toLocaleString("en-US")} row${answer.rows.length === 1 ? "" : "s"} in ${ms} ms` +
        (answer.truncated ? ` (cut at ${MAX_ROWS.toLocaleString("en-US")}: add a LIMIT or narrow the WHERE)` : "") +
        (answer.rows.length > SHOWN_ROWS ? `; the first ${SHOWN_ROWS.toLocaleString("en-US")} shown, all in the CSV` : "");
      download.disabled = false;
      downloadParquet.disabled = false;
      const numeric = numericColumns();
      const options = (selected) => answer.columns.map((c) => html`<option ${c === selected ? "selected" : ""}>${c}</option>`).join("");
      view.querySelector("#chart-x").innerHTML = options(numeric[0] || answer.columns[0]);
      view.querySelector("#chart-y").innerHTML = options(numeric[1] || numeric[0] || answer.columns[0]);
      drawTable();
      drawChart();
    } catch (error) {
      if (mine !== latest) return;
      answer = null;
      status.textContent = "";
      showError(result, error);
    }
  }

  view.querySelector("#sql-form").addEventListener("submit", (e) => {
    e.preventDefault();
    run();
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  function save(blob, name) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }
  download.addEventListener("click", () => save(new Blob([toCsv(answer)], { type: "text/csv" }), "lakeops-query.csv"));
  // Parquet keeps the column types (timestamps, integers, lists) that CSV flattens: the server runs the shown
  // query again and answers the file (Accept: application/vnd.apache.parquet on POST /api/v1/sql), up to the
  // server's row limit rather than the page's.
  downloadParquet.addEventListener("click", async () => {
    const at = latest; // a query run meanwhile owns the status line and the buttons
    const { sql: shown, asOf: when } = answer;
    downloadParquet.disabled = true;
    status.textContent = "Preparing Parquet…";
    try {
      const response = await fetch("/api/v1/sql", {
        method: "POST",
        headers: { "content-type": "application/json", accept: PARQUET, ...csrfHeaders("POST") },
        body: JSON.stringify({ sql: shown, as_of: when ?? undefined }),
      });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new ApiError(response.status, body?.error?.message || `${response.status} ${response.statusText}`, body);
      }
      save(await response.blob(), "lakeops-query.parquet");
      if (at !== latest) return;
      const cut = response.headers.get("x-lakeops-truncated") === "true";
      status.textContent = cut ? "Parquet downloaded, cut at the server's row limit (sql.max_rows)" : "Parquet downloaded";
    } catch (error) {
      if (at === latest) showError(status, error);
    } finally {
      if (at === latest) downloadParquet.disabled = false;
    }
  });
  view.querySelector("#as-chart").addEventListener("change", drawChart);
  chartControls.addEventListener("change", drawChart);

  // -- saved queries ---------------------------------------------------------------------------------------------
  const savedList = view.querySelector("#saved-list");
  const saveStatus = view.querySelector("#save-status");
  let savedNames = new Set();
  let savedLatest = 0; // the list shown is the one asked for last (a save reloads it while the first load may run)
  async function loadSaved() {
    const mine = ++savedLatest;
    try {
      const { saved_queries: saved } = await api("/api/v1/saved-queries");
      if (mine !== savedLatest) return;
      savedNames = new Set(saved.map((q) => q.name));
      savedList.innerHTML = saved.length
        ? saved
            .map(
              (q) => html`<li><button type="button" class="link load-query" data-name="${q.name}">${q.name}</button>
                <span class="muted">${q.description || ""} (${q.author || ""})</span></li>`.text,
            )
            .join("")
        : `<li class="muted">None yet.</li>`;
      savedList.querySelectorAll(".load-query").forEach((button) =>
        button.addEventListener("click", () => {
          const q = saved.find((s) => s.name === button.dataset.name);
          text.value = q.sql;
          view.querySelector("#save-name").value = q.name;
          view.querySelector("#save-description").value = q.description || "";
          run();
        }),
      );
    } catch (error) {
      if (mine === savedLatest) showError(savedList, error);
    }
  }
  view.querySelector("#save-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = view.querySelector("#save-name").value.trim();
    const body = { sql: text.value, description: view.querySelector("#save-description").value || null, author: localStorage.getItem("lakeops.author") || null };
    saveStatus.innerHTML = "";
    try {
      if (savedNames.has(name)) await api(`/api/v1/saved-queries/${encodeURIComponent(name)}`, { method: "PUT", body });
      else await api("/api/v1/saved-queries", { method: "POST", body: { name, ...body } });
      saveStatus.innerHTML = html`<p class="ok" role="status">Saved as ${name}.</p>`.text;
      await loadSaved();
    } catch (error) {
      showError(saveStatus, error);
    }
  });
  await Promise.all([loadSaved(), run()]);
}
