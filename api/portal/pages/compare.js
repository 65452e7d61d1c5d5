// Compare runs: overlaid curves of one metric (x by step or time, log axis, smoothing) for up to hundreds of runs,
// parallel coordinates over params and latest metrics (brush an axis to keep a range), a diff of their params,
// and a scatter of a param against a metric's latest value. "As of" a past time the runs come from the search API's
// as_of (their params and latest metrics then) and each curve stops at the step its run had reached then.
import uPlot from "/portal/vendor/uplot.js";
import { MetricChart, PALETTE, ParallelCoordinates } from "../charts.js";
import { api, asOf, asOfNote, fmtNum, fmtTime, hashQuery, html, records, setHashQuery, showError, sql } from "../lib.js";

const CONCURRENCY = 8;
const PC_PARAMS = 8; // parallel-coordinates axes shown at first: the params that differ, then the metrics
const PC_METRICS = 6;

async function fetchRuns(ids) {
  const out = new Array(ids.length);
  let next = 0;
  async function worker() {
    while (next < ids.length) {
      const i = next++;
      out[i] = await api(`/api/v1/runs/${encodeURIComponent(ids[i])}`);
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, ids.length) }, worker));
  return out;
}

// Steps below every real step: the history of a run that had not logged the metric yet is empty.
const NO_STEP = Number.MIN_SAFE_INTEGER;

/** The runs as they stood at `when`, in the order of `ids`; those that did not exist yet are left out (and named). */
async function fetchRunsAsOf(ids, when) {
  const list = ids.map((id) => `'${id.replace(/'/g, "''")}'`).join(",");
  const found = records(await sql("SELECT run_id, experiment_id FROM runs WHERE list_contains(?::VARCHAR[], run_id)", { params: [ids], asOf: when }));
  const experiments = [...new Set(found.map((r) => r.experiment_id))];
  const byId = new Map();
  if (experiments.length) {
    let token = null;
    do {
      const page = await api("/api/v1/runs/search", {
        method: "POST",
        body: { experiment_ids: experiments, filter: `attributes.run_id IN (${list})`, view_type: "ALL", max_results: 1000, page_token: token, as_of: when },
      });
      for (const run of page.runs) byId.set(run.info.run_id, run);
      token = page.next_page_token;
    } while (token);
  }
  return { runs: ids.filter((id) => byId.has(id)).map((id) => byId.get(id)), missing: ids.filter((id) => !byId.has(id)) };
}

const colour = (i) => PALETTE[i % PALETTE.length];
const asNumber = (v) => (v === null || v === undefined || v === "" || Number.isNaN(Number(v)) ? null : Number(v));

export async function renderCompare(view) {
  const query = hashQuery();
  const ids = [...new Set((query.get("runs") || "").split(",").filter(Boolean))];
  if (!ids.length) {
    view.innerHTML = html`<h1>Compare runs</h1><p>Pick runs in an experiment's table and press <em>Compare</em>.
      <a href="#/">Experiments</a></p>`.text;
    return;
  }
  const when = asOf();
  const { runs, missing } = when ? await fetchRunsAsOf(ids, when) : { runs: await fetchRuns(ids), missing: [] };
  if (!runs.length) {
    view.innerHTML = html`<h1>Compare runs</h1>${asOfNote()}<p class="error" role="alert">None of these runs existed yet at
      ${fmtTime(when)}: pick a later time or Now.</p>`.text;
    return;
  }
  const label = (r) => r.info.run_name || r.info.run_id.slice(0, 8);
  const metricKeys = [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort();
  const paramKeys = [...new Set(runs.flatMap((r) => Object.keys(r.params)))].sort();
  const differing = paramKeys.filter((k) => new Set(runs.map((r) => r.params[k] ?? "\u0000")).size > 1);
  const same = paramKeys.filter((k) => !differing.includes(k));
  const state = {
    key: query.get("metric") && metricKeys.includes(query.get("metric")) ? query.get("metric") : metricKeys[0],
    xAxis: query.get("x") === "time" ? "time" : "step",
    log: query.get("log") === "1",
    smoothing: Number(query.get("smooth") || 0),
  };
  const firstExperiment = runs[0].info.experiment_id;

  view.innerHTML = html`
    <p class="crumbs"><a href="#/">Experiments</a> / <a href="#/experiments/${encodeURIComponent(firstExperiment)}">experiment ${firstExperiment}</a> / compare</p>
    <h1>Compare ${runs.length} runs</h1>
    ${asOfNote()}
    ${missing.length ? html`<p class="muted" id="compare-missing">${missing.length} of the runs did not exist yet then: ${missing.join(", ")}</p>` : ""}
    <section class="panel" aria-labelledby="h-curves"><h2 id="h-curves">Curves</h2>
      <form class="toolbar" id="curve-controls">
        <label for="metric">Metric</label>
        <select id="metric">${metricKeys.map((k) => html`<option value="${k}" ${k === state.key ? "selected" : ""}>${k}</option>`)}</select>
        <label for="xaxis">X axis</label>
        <select id="xaxis"><option value="step">step</option><option value="time" ${state.xAxis === "time" ? "selected" : ""}>time</option></select>
        <label><input type="checkbox" id="log" ${state.log ? "checked" : ""}> Log scale</label>
        <label for="smooth">Smoothing</label>
        <input id="smooth" type="range" min="0" max="0.99" step="0.01" value="${state.smoothing}">
        <output id="smooth-value" for="smooth">${state.smoothing}</output>
        <span class="muted chart-info" id="curve-info" aria-live="polite"></span>
      </form>
      <div class="chart" id="curves" role="img" aria-label="Curves of the chosen metric, one line per run"></div>
    </section>
    <section class="panel" aria-labelledby="h-parallel"><h2 id="h-parallel">Parallel coordinates</h2>
      <details class="picker-inline" id="pc-columns"><summary>Columns</summary>
        <fieldset><legend>Params</legend>${paramKeys.map((k) => html`<label><input type="checkbox" data-axis="p:${k}" ${differing.slice(0, PC_PARAMS).includes(k) ? "checked" : ""}> ${k}</label>`)}</fieldset>
        <fieldset><legend>Metrics (latest)</legend>${metricKeys.map((k, i) => html`<label><input type="checkbox" data-axis="m:${k}" ${i < PC_METRICS ? "checked" : ""}> ${k}</label>`)}</fieldset>
      </details>
      <p class="muted">Drag along an axis to keep the runs in that range (on several axes: every range); click an axis to clear its range.</p>
      <div id="parallel" class="parallel"></div>
      <form class="toolbar" id="pc-range">
        <label for="pc-axis">Keep runs with</label><select id="pc-axis"></select>
        <label for="pc-from">from</label><input id="pc-from" size="10">
        <label for="pc-to">to</label><input id="pc-to" size="10">
        <button type="submit">Keep range</button>
        <button type="button" id="pc-clear">Clear ranges</button>
      </form>
      <div id="pc-summary" aria-live="polite"></div>
    </section>
    <div class="grid2">
      <section class="panel" aria-labelledby="h-scatter"><h2 id="h-scatter">Param vs metric</h2>
        <form class="toolbar" id="scatter-controls">
          <label for="scatter-param">Param</label>
          <select id="scatter-param">${[...differing, ...same].map((k) => html`<option value="${k}">${k}</option>`)}</select>
          <label for="scatter-metric">Metric (latest)</label>
          <select id="scatter-metric">${metricKeys.map((k) => html`<option value="${k}" ${k === state.key ? "selected" : ""}>${k}</option>`)}</select>
        </form>
        <div class="chart" id="scatter" role="img" aria-label="Scatter of the chosen param against the chosen metric"></div>
        <p class="muted" id="scatter-note"></p>
      </section>
      <section class="panel" aria-labelledby="h-runs"><h2 id="h-runs">Runs</h2>
        <table class="plain" id="compare-runs"><thead><tr><th scope="col"><span class="sr-only">Colour</span></th><th scope="col">Run</th>
          <th scope="col">Status</th>${metricKeys.slice(0, 6).map((k) => html`<th scope="col">${k}</th>`)}</tr></thead>
        <tbody>${runs.map(
          (r, i) => html`<tr><td><span class="swatch" style="background:${colour(i)}"></span></td>
            <td><a href="#/experiments/${encodeURIComponent(r.info.experiment_id)}/runs/${r.info.run_id}">${label(r)}</a></td>
            <td>${r.info.status}</td>${metricKeys.slice(0, 6).map((k) => html`<td class="num">${fmtNum(r.metrics[k]?.value)}</td>`)}</tr>`,
        )}</tbody></table>
      </section>
    </div>
    <section class="panel" aria-labelledby="h-diff"><h2 id="h-diff">Params that differ (${differing.length} of ${paramKeys.length})</h2>
      ${differing.length
        ? html`<div class="result"><table class="plain" id="param-diff"><thead><tr><th scope="col">Run</th>${differing.map((k) => html`<th scope="col">${k}</th>`)}</tr></thead>
          <tbody>${runs.map((r) => html`<tr><td>${label(r)}</td>${differing.map((k) => html`<td>${r.params[k] ?? "—"}</td>`)}</tr>`)}</tbody></table></div>`
        : html`<p class="muted">Every run has the same params.</p>`}
      ${same.length ? html`<p class="muted" id="param-same">Same in every run: ${same.map((k) => `${k}=${runs[0].params[k]}`).join(", ")}</p>` : ""}
    </section>`.text;

  const info = view.querySelector("#curve-info");
  const curvesEl = view.querySelector("#curves");
  let chart = null;
  function saveState() {
    const params = new URLSearchParams({ runs: ids.join(",") });
    if (state.key) params.set("metric", state.key);
    if (state.xAxis !== "step") params.set("x", state.xAxis);
    if (state.log) params.set("log", "1");
    if (state.smoothing) params.set("smooth", String(state.smoothing));
    setHashQuery(params);
  }
  async function drawCurves() {
    chart?.destroy();
    curvesEl.innerHTML = "";
    if (!state.key) {
      info.textContent = "These runs logged no metric.";
      return;
    }
    const holder = document.createElement("div"); // each chart its own element: an old one never draws here
    curvesEl.replaceChildren(holder);
    chart = new MetricChart(holder, {
      key: state.key,
      // As of a past time: each run's curve up to the step its latest value had then.
      series: runs.map((r) => ({ runId: r.info.run_id, label: label(r), maxStep: when ? (r.metrics[state.key]?.step ?? NO_STEP) : undefined })),
      log: state.log,
      smoothing: state.smoothing,
      xAxis: state.xAxis,
      height: 360,
      dataEl: curvesEl,
      onInfo: (text) => (info.textContent = `${text} from ${runs.length} runs`),
    });
    const mine = chart;
    try {
      await mine.load();
    } catch (error) {
      if (mine === chart) showError(info, error); // a metric picked since owns the line
    }
  }
  view.querySelector("#metric").addEventListener("change", (e) => {
    state.key = e.target.value;
    saveState();
    drawCurves();
  });
  view.querySelector("#xaxis").addEventListener("change", (e) => {
    state.xAxis = e.target.value;
    saveState();
    chart?.restyle({ xAxis: state.xAxis });
  });
  view.querySelector("#log").addEventListener("change", (e) => {
    state.log = e.target.checked;
    saveState();
    chart?.restyle({ log: state.log });
  });
  view.querySelector("#smooth").addEventListener("input", (e) => {
    state.smoothing = Number(e.target.value);
    view.querySelector("#smooth-value").textContent = String(state.smoothing);
    saveState();
    chart?.restyle({ smoothing: state.smoothing });
  });

  // -- parallel coordinates: one line per run over the chosen params and latest metrics --------------------------
  const pcBox = view.querySelector("#parallel");
  const pcSummary = view.querySelector("#pc-summary");
  const pcAxisSelect = view.querySelector("#pc-axis");
  let parallel = null;
  const pcRows = runs.map((r) => ({
    id: r.info.run_id,
    label: label(r),
    values: Object.fromEntries([
      ...Object.entries(r.params).map(([k, v]) => [`p:${k}`, v]),
      ...Object.entries(r.metrics).map(([k, m]) => [`m:${k}`, m.value]),
    ]),
  }));
  function showKept(kept) {
    if (kept.length === runs.length) {
      pcSummary.innerHTML = html`<p class="muted">All ${runs.length} runs within the ranges.</p>`.text;
      return;
    }
    const byId = new Map(runs.map((r) => [r.info.run_id, r]));
    pcSummary.innerHTML = html`<p><strong id="pc-kept">${kept.length}</strong> of ${runs.length} runs within the ranges${kept.length
      ? html`: <a id="pc-compare" href="#/compare?${new URLSearchParams({ runs: kept.join(","), ...(state.key ? { metric: state.key } : {}) })}">compare these ${kept.length}</a>` : ""}.</p>
      <ul class="plain-list inline-list" id="pc-kept-runs">${kept.slice(0, 50).map((id) => {
        const r = byId.get(id);
        return html`<li><a href="#/experiments/${encodeURIComponent(r.info.experiment_id)}/runs/${id}">${label(r)}</a></li>`;
      })}${kept.length > 50 ? html`<li class="muted">and ${kept.length - 50} more</li>` : ""}</ul>`.text;
  }
  function drawParallel() {
    const axes = [...view.querySelectorAll("#pc-columns input:checked")].map((input) => {
      const key = input.dataset.axis;
      return { key, label: `${key[0]}.${key.slice(2)}` };
    });
    pcAxisSelect.innerHTML = axes.map((a) => html`<option value="${a.key}">${a.label}</option>`.text).join("");
    if (axes.length < 2) {
      parallel = null;
      pcBox.innerHTML = html`<p class="muted">Pick at least two columns.</p>`.text;
      pcSummary.innerHTML = "";
      return;
    }
    parallel = new ParallelCoordinates(pcBox, { axes, rows: pcRows, colourOf: colour, onBrush: showKept });
  }
  view.querySelector("#pc-columns").addEventListener("change", drawParallel);
  view.querySelector("#pc-range").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!parallel) return;
    const key = pcAxisSelect.value;
    const axis = parallel.axes.find((a) => a.key === key);
    const read = (id) => {
      const text = view.querySelector(id).value.trim();
      if (!text) return null;
      if (axis.numeric) {
        const n = Number(text);
        if (!Number.isFinite(n)) throw new Error(`${text} is not a number`);
        return n;
      }
      if (!axis.categories.includes(text)) throw new Error(`${text} is not a value of ${key.slice(2)} (${axis.categories.slice(0, 8).join(", ")})`);
      return text;
    };
    try {
      parallel.setBrush(key, read("#pc-from"), read("#pc-to"));
    } catch (error) {
      showError(pcSummary, error);
    }
  });
  view.querySelector("#pc-clear").addEventListener("click", () => parallel?.clearBrushes());
  drawParallel();

  // -- param vs metric: one dot per run (uPlot scatter: mode 2 with points and no line) --------------------------
  const scatterEl = view.querySelector("#scatter");
  let scatter = null;
  function drawScatter() {
    scatter?.destroy();
    const param = view.querySelector("#scatter-param").value;
    const metric = view.querySelector("#scatter-metric").value;
    const xs = [];
    const ys = [];
    let skipped = 0;
    for (const r of runs) {
      const x = asNumber(r.params[param]);
      const y = asNumber(r.metrics[metric]?.value);
      if (x === null || y === null) skipped++;
      else {
        xs.push(x);
        ys.push(y);
      }
    }
    scatterEl.dataset.points = String(xs.length);
    view.querySelector("#scatter-note").textContent = skipped
      ? `${skipped} run(s) left out: no numeric value of ${param} or ${metric}.`
      : "";
    const pad = (min, max) => (min === max ? [min - (Math.abs(min) || 1) * 0.1, max + (Math.abs(max) || 1) * 0.1] : uPlot.rangeNum(min, max, 0.1, true));
    scatter = new uPlot(
      {
        mode: 2,
        width: Math.max(300, scatterEl.clientWidth || 400),
        height: 260,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false, range: (u, a, b) => pad(a ?? 0, b ?? 1) }, y: { range: (u, a, b) => pad(a ?? 0, b ?? 1) } },
        axes: [
          { label: `params.${param}`, values: (u, t) => t.map(fmtNum) },
          { label: metric, size: 60, values: (u, t) => t.map(fmtNum) },
        ],
        series: [
          {},
          {
            label: metric,
            stroke: PALETTE[0],
            fill: PALETTE[0],
            paths: uPlot.paths.points(),
            points: { show: true, size: 8 },
            facets: [
              { scale: "x", auto: true },
              { scale: "y", auto: true },
            ],
          },
        ],
      },
      [null, [xs, ys]],
      scatterEl,
    );
  }
  view.querySelector("#scatter-controls").addEventListener("change", drawScatter);
  if (metricKeys.length && paramKeys.length) drawScatter();
  else view.querySelector("#scatter-note").textContent = "Needs runs with params and metrics.";
  await drawCurves();
}
