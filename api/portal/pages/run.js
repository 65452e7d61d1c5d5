// One run: its attributes, params, tags and metrics (latest values and charts of their histories), its artifacts,
// the GenAI traces recorded in it, and comments.
import { MetricChart } from "../charts.js";
import { api, ApiError, asOf, asOfNote, fmtNum, fmtTime, html, records, sql } from "../lib.js";
import { artifactRoot, renderArtifacts } from "./artifacts.js";
import { renderComments } from "./comments.js";
import { renderTraces } from "./traces.js";

const EAGER_CHARTS = 6; // charts drawn at once; the others when scrolled into view

// "As of" a past time the run comes from the SQL views read at that time (the tracking API answers now).
const RUN_SQL = `SELECT run_id, experiment_id, run_name, user_id, status, started_at, ended_at, lifecycle_stage, artifact_uri,
  parent_run_id FROM runs WHERE run_id = ?`;
const PARAMS_SQL = "SELECT key, value FROM params WHERE run_id = ?";
const TAGS_SQL = "SELECT key, value FROM tags WHERE entity_type = 'run' AND entity_id = ?";
const METRICS_SQL = "SELECT key, value, step FROM latest_metrics WHERE run_id = ?";

async function runAsOf(runId, when) {
  const ask = (text) => sql(text, { params: [runId], asOf: when }).then(records);
  const [info, params, tags, metrics] = await Promise.all([ask(RUN_SQL), ask(PARAMS_SQL), ask(TAGS_SQL), ask(METRICS_SQL)]);
  if (!info.length) throw new ApiError(404, `Run ${runId} did not exist yet at ${fmtTime(when)}: pick a later time or Now.`);
  const r = info[0];
  return {
    info: { ...r, start_time: r.started_at, end_time: r.ended_at },
    params: Object.fromEntries(params.map((p) => [p.key, p.value])),
    tags: Object.fromEntries(tags.map((t) => [t.key, t.value])),
    metrics: Object.fromEntries(metrics.map((m) => [m.key, { value: m.value, step: m.step }])),
    inputs: null,
    outputs: null,
  };
}

export async function renderRun(view, experimentId, runId) {
  const when = asOf();
  const [run, experiment] = await Promise.all([
    when ? runAsOf(runId, when) : api(`/api/v1/runs/${encodeURIComponent(runId)}`),
    api(`/api/v1/experiments/${encodeURIComponent(experimentId)}`).catch(() => null),
  ]);
  const info = run.info;
  const metricKeys = Object.keys(run.metrics).sort();
  view.innerHTML = html`
    <p class="crumbs"><a href="#/">Experiments</a> /
      <a href="#/experiments/${encodeURIComponent(info.experiment_id)}">${experiment?.name ?? info.experiment_id}</a> /
      ${info.run_name || info.run_id}</p>
    <h1>${info.run_name || info.run_id} <span class="badge ${info.status}">${info.status}</span></h1>
    ${asOfNote()}
    ${when ? html`<p class="muted" id="asof-run-note">Charts show each history up to the step it had reached then;
      artifacts stored later are marked.</p>` : ""}
    <div class="grid2">
      <section class="panel" aria-labelledby="h-about"><h2 id="h-about">About</h2>
        <table class="plain kv" id="run-info"><tbody>
          <tr><td>Run ID</td><td><code>${info.run_id}</code></td></tr>
          <tr><td>User</td><td>${info.user_id || ""}</td></tr>
          <tr><td>Started</td><td>${fmtTime(info.start_time)}</td></tr>
          <tr><td>Ended</td><td>${fmtTime(info.end_time)}</td></tr>
          <tr><td>Lifecycle</td><td>${info.lifecycle_stage}</td></tr>
          ${info.parent_run_id ? html`<tr><td>Parent run</td><td><a href="#/experiments/${encodeURIComponent(info.experiment_id)}/runs/${info.parent_run_id}">${info.parent_run_id}</a></td></tr>` : ""}
          <tr><td>Artifacts</td><td><code>${info.artifact_uri || ""}</code></td></tr>
          <tr><td>Lineage</td><td><a href="#/lineage?kind=run&id=${encodeURIComponent(info.run_id)}">datasets in, models out</a></td></tr>
        </tbody></table>
      </section>
      <section class="panel" aria-labelledby="h-params"><h2 id="h-params">Params (${Object.keys(run.params).length})</h2>
        ${kvTable("params", run.params)}
      </section>
      <section class="panel" aria-labelledby="h-metrics"><h2 id="h-metrics">Metrics (${metricKeys.length})</h2>
        <table class="plain" id="metrics"><thead><tr><th scope="col">Key</th><th scope="col">Latest</th><th scope="col">Step</th></tr></thead>
        <tbody>${metricKeys.map((k) => html`<tr><td>${k}</td><td class="num">${fmtNum(run.metrics[k].value)}</td><td class="num">${run.metrics[k].step}</td></tr>`)}</tbody></table>
      </section>
      <section class="panel" aria-labelledby="h-tags"><h2 id="h-tags">Tags (${Object.keys(run.tags).length})</h2>
        ${kvTable("tags", run.tags)}
      </section>
    </div>
    <section aria-labelledby="h-charts"><h2 id="h-charts">Charts</h2>
      <p class="muted">Drag across a chart to zoom (the server sends the range at full resolution); double-click to zoom out.</p>
      <div class="grid2" id="charts">${metricKeys.map(
        (k, i) => html`<figure class="panel chart-panel" data-key="${k}" data-index="${i}">
          <figcaption class="chart-title"><strong>${k}</strong><span class="muted chart-info" aria-live="polite"></span></figcaption>
          <div class="chart" role="img" aria-label="Chart of ${k} by step"></div></figure>`,
      )}</div>
    </section>
    <section class="panel" aria-labelledby="h-io"><h2 id="h-io">Datasets and models in and out</h2>
      ${ioTable(info, run.inputs, run.outputs)}
    </section>
    <section id="artifacts" class="panel"></section>
    <section id="run-traces" class="panel" aria-labelledby="h-traces"></section>
    <section id="comments" class="comments-section"></section>`.text;
  drawCharts(view, info.run_id, info.run_name || info.run_id, when ? run.metrics : null);
  await Promise.all([
    renderArtifacts(view.querySelector("#artifacts"), artifactRoot(info.artifact_uri), when),
    renderTraces(view.querySelector("#run-traces"), info.run_id),
    renderComments(view.querySelector("#comments"), `run:${info.run_id}`),
  ]);
  return { run, metricKeys };
}

function drawCharts(view, runId, label, stepsThen) {
  const start = (figure) => {
    if (figure.dataset.started) return;
    figure.dataset.started = "1";
    const info = figure.querySelector(".chart-info");
    const chart = new MetricChart(figure.querySelector(".chart"), {
      key: figure.dataset.key,
      series: [{ runId, label }],
      maxStep: stepsThen?.[figure.dataset.key]?.step,
      onInfo: (text) => (info.textContent = text),
    });
    chart.load().catch((error) => (info.textContent = error.message));
  };
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) if (entry.isIntersecting) start(entry.target);
  });
  view.querySelectorAll(".chart-panel").forEach((figure) => {
    if (Number(figure.dataset.index) < EAGER_CHARTS) start(figure);
    else observer.observe(figure);
  });
}

/** The run's logged inputs and outputs (mlflow.log_input datasets, logged models); lineage has the rest. */
function ioTable(info, inputs, outputs) {
  if (!inputs) return html`<p class="muted">As of a past time: <a href="#/lineage?kind=run&id=${encodeURIComponent(info.run_id)}">Lineage</a> shows what it read and made then.</p>`;
  const rows = [...inputs.map((x) => ["in", x]), ...outputs.map((x) => ["out", x])];
  if (!rows.length) return html`<p class="muted">None logged. <a href="#/lineage?kind=run&id=${encodeURIComponent(info.run_id)}">Lineage</a> shows datasets recorded by lakeops.</p>`;
  return html`<table class="plain" id="run-io"><thead><tr><th scope="col">Direction</th><th scope="col">Kind</th><th scope="col">Name</th>
    <th scope="col">Digest / id</th><th scope="col">Source</th></tr></thead>
    <tbody>${rows.map(([dir, x]) => html`<tr><td>${dir}</td><td>${x.kind}</td><td>${x.dataset_name || ""}</td>
      <td><code>${x.dataset_digest || x.model_id || ""}</code></td><td>${x.source || ""}</td></tr>`)}</tbody></table>`;
}

function kvTable(id, mapping) {
  const keys = Object.keys(mapping).sort();
  if (!keys.length) return html`<p class="muted">None.</p>`;
  return html`<table class="plain kv" id="${id}"><tbody>${keys.map((k) => html`<tr><td>${k}</td><td>${mapping[k]}</td></tr>`)}</tbody></table>`;
}

/** A run addressed by its id alone (links from the activity feed): the run page under its experiment. */
export async function renderRunById(view, runId, ctx) {
  const run = await api(`/api/v1/runs/${encodeURIComponent(runId)}`);
  history.replaceState(null, "", `#/experiments/${encodeURIComponent(run.info.experiment_id)}/runs/${encodeURIComponent(runId)}`);
  return renderRun(view, run.info.experiment_id, runId, ctx);
}
