// Line charts with uPlot (from npm, served under /portal/vendor/): one series per run, each with its own x values
// (uPlot's "mode 2"), so runs logged at different steps are drawn without aligning them first. Histories arrive
// downsampled by the server (GET /api/v1/runs/{id}/metrics/{key}/downsampled); zooming (drag across the chart)
// asks again for the visible step range, so detail comes back at full resolution; a double click zooms out.
import uPlot from "/portal/vendor/uplot.js";
import { api, fmtNum } from "./lib.js";

export const PALETTE = ["#0550ae", "#bc4c00", "#116329", "#8250df", "#a40e26", "#1b7c83", "#953800", "#6e7781", "#bf3989", "#4d2d00"];

/** One history, downsampled to about `points` points between the steps. */
export function fetchHistory(runId, key, { points = 1000, minStep, maxStep } = {}) {
  return api(`/api/v1/runs/${encodeURIComponent(runId)}/metrics/${encodeURIComponent(key)}/downsampled`, {
    query: { points, min_step: minStep, max_step: maxStep },
  });
}

// uPlot cannot split an axis of zero width (one point, or a flat line): widen such a range.
function padRange(min, max) {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    return [min - pad, max + pad];
  }
  return [min, max];
}

function logRange(min, max) {
  if (min === null || max === null || !(min > 0) || !(max > 0)) return [0.1, 1];
  if (min === max) return [min / 2, max * 2];
  return uPlot.rangeLog(min, max, 10, true);
}

/** One metric of several runs, downsampled, in one call (POST /api/v1/metrics/downsampled); by run id. */
export async function fetchHistories(runIds, key, { points = 1000, minStep, maxStep } = {}) {
  if (runIds.length === 1) {
    const one = await fetchHistory(runIds[0], key, { points, minStep, maxStep });
    return [one];
  }
  const answer = await api("/api/v1/metrics/downsampled", {
    method: "POST",
    body: { run_ids: runIds, key, points, min_step: minStep ?? null, max_step: maxStep ?? null },
  });
  const byRun = new Map(answer.series.map((s) => [s.run_id, s]));
  return runIds.map((id) => byRun.get(id) || null);
}

/** Exponential moving average (0 = none, 0.99 = heavy), as TensorBoard's smoothing slider does. */
export function smooth(values, weight) {
  if (!weight) return values;
  const out = new Array(values.length);
  let last = values.length ? values[0] : 0;
  for (let i = 0; i < values.length; i++) {
    last = last * weight + (1 - weight) * values[i];
    out[i] = last;
  }
  return out;
}

/**
 * A chart of several histories of one metric.
 * series: [{runId, label}], key: the metric. Options: log (log y axis), smoothing (0..1), xAxis ("step"|"time"),
 * points (per series), height, onInfo(text) (how many points are drawn of how many), dataEl (gets data-points and
 * data-total; default: el).
 */
export class MetricChart {
  constructor(el, { key, series, log = false, smoothing = 0, xAxis = "step", points, height = 260, onInfo, dataEl }) {
    this.el = el;
    this.dataEl = dataEl || el; // where data-points / data-total tell what is drawn
    this.key = key;
    this.series = series;
    this.log = log;
    this.smoothing = smoothing;
    this.xAxis = xAxis;
    // About two points per pixel column for one run; fewer per run when hundreds are overlaid.
    this.points = points ?? Math.max(100, Math.min(2 * Math.round(el.clientWidth || 800), Math.round(40000 / series.length)));
    this.height = height;
    this.onInfo = onInfo || (() => {});
    this.histories = [];
    this.range = {};
    this.request = 0;
    this.plot = null;
  }

  /** Fetch (for the current zoom range) and draw. */
  async load() {
    const request = ++this.request;
    const { minStep, maxStep } = this.range;
    const histories = await fetchHistories(
      this.series.map((s) => s.runId),
      this.key,
      { points: this.points, minStep, maxStep },
    );
    if (request !== this.request || this.destroyed) return; // a newer request, or the chart was replaced
    this.histories = histories;
    this.draw();
    const drawn = histories.reduce((n, h) => n + (h ? h.steps.length : 0), 0);
    const total = histories.reduce((n, h) => n + (h ? h.points_in_range : 0), 0);
    const count = (n) => n.toLocaleString("en-US");
    this.onInfo(drawn < total ? `${count(drawn)} of ${count(total)} points` : `${count(total)} point${total === 1 ? "" : "s"}`);
    this.dataEl.dataset.points = String(drawn);
    this.dataEl.dataset.total = String(total);
  }

  data() {
    const out = [null];
    this.histories.forEach((h) => {
      if (!h || !h.steps.length) {
        out.push([[], []]);
        return;
      }
      const xs = this.xAxis === "time" ? h.timestamps.map((t) => t / 1000) : h.steps;
      let ys = smooth(h.values, this.smoothing);
      if (this.log) ys = ys.map((y) => (y > 0 ? y : null));
      out.push([xs, ys]);
    });
    return out;
  }

  draw() {
    const data = this.data();
    if (this.plot) {
      this.plot.setData(data); // the data is exactly the requested range, so both axes fit it again
      return;
    }
    const opts = {
      mode: 2,
      width: Math.max(300, this.el.clientWidth || 600),
      height: this.height,
      legend: { show: this.series.length <= 12 },
      cursor: { drag: { x: true, y: false, setScale: true }, points: { show: false } },
      scales: {
        x: { time: this.xAxis === "time", auto: true, range: (u, min, max) => padRange(min, max) },
        y: {
          auto: true,
          distr: this.log ? 3 : 1,
          log: 10,
          range: (u, min, max) => (this.log ? logRange(min, max) : uPlot.rangeNum(...padRange(min, max), 0.05, true)),
        },
      },
      axes: [
        { label: this.xAxis === "time" ? "" : "step", stroke: "#57606a" },
        { label: this.key, stroke: "#57606a", size: 60, values: (u, ticks) => ticks.map(fmtNum) },
      ],
      series: [
        {},
        ...this.series.map((s, i) => ({
          label: s.label,
          stroke: PALETTE[i % PALETTE.length],
          width: 1.25,
          facets: [
            { scale: "x", auto: true },
            { scale: "y", auto: true },
          ],
          paths: uPlot.paths.linear(),
          // A lone point draws no line: show it as a dot.
          points: { show: (u, si) => (u.data[si]?.[0]?.length ?? 0) === 1, size: 7 },
        })),
      ],
      hooks: {
        setSelect: [
          (u) => {
            if (u.select.width < 4) return;
            const lo = u.posToVal(u.select.left, "x");
            const hi = u.posToVal(u.select.left + u.select.width, "x");
            this.zoomTo(lo, hi);
          },
        ],
      },
    };
    this.plot = new uPlot(opts, data, this.el);
    this.el.addEventListener("dblclick", () => this.resetZoom());
    this.resizer = new ResizeObserver(() => {
      const width = Math.max(300, this.el.clientWidth);
      if (this.plot && Math.abs(width - this.plot.width) > 8) this.plot.setSize({ width, height: this.height });
    });
    this.resizer.observe(this.el);
  }

  zoomTo(lo, hi) {
    if (this.xAxis === "time") return; // time zoom is drawn from what is loaded; steps are what the server ranges over
    this.range = { minStep: Math.floor(lo), maxStep: Math.ceil(hi), zoomed: true };
    this.plot.setScale("x", { min: lo, max: hi });
    this.load().catch((error) => this.onInfo(error.message));
  }

  resetZoom() {
    this.range = {};
    if (this.plot) {
      this.plot.destroy();
      this.plot = null;
    }
    this.load().catch((error) => this.onInfo(error.message));
  }

  /** Redraw with other display options (no refetch). */
  restyle({ log, smoothing, xAxis }) {
    const rebuild = (log !== undefined && log !== this.log) || (xAxis !== undefined && xAxis !== this.xAxis);
    if (log !== undefined) this.log = log;
    if (smoothing !== undefined) this.smoothing = smoothing;
    if (xAxis !== undefined) this.xAxis = xAxis;
    if (rebuild && this.plot) {
      this.plot.destroy();
      this.plot = null;
      this.range = {};
    }
    if (this.histories.length) this.draw();
  }

  destroy() {
    this.destroyed = true;
    this.resizer?.disconnect();
    this.plot?.destroy();
    this.plot = null;
  }
}
