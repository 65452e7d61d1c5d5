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

/** One metric of several runs, downsampled, in one call (POST /api/v1/metrics/downsampled); by run id.
 * maxSteps: {runId: last step} caps some runs' histories (runs "as of" a past time). */
export async function fetchHistories(runIds, key, { points = 1000, minStep, maxStep, maxSteps } = {}) {
  if (runIds.length === 1 && !maxSteps) {
    const one = await fetchHistory(runIds[0], key, { points, minStep, maxStep });
    return [one];
  }
  const answer = await api("/api/v1/metrics/downsampled", {
    method: "POST",
    body: { run_ids: runIds, key, points, min_step: minStep ?? null, max_step: maxStep ?? null, max_steps: maxSteps || {} },
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
 * series: [{runId, label, maxStep}] (maxStep, optional: that run's history up to that step), key: the metric. Options: log (log y axis), smoothing (0..1), xAxis ("step"|"time"),
 * points (per series), height, onInfo(text) (how many points are drawn of how many), dataEl (gets data-points and
 * data-total; default: el).
 */
export class MetricChart {
  constructor(el, { key, series, log = false, smoothing = 0, xAxis = "step", points, height = 260, onInfo, dataEl, maxStep }) {
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
    // maxStep: the history up to that step only (a run "as of" a past time: the step it had reached then).
    this.base = maxStep === undefined || maxStep === null ? {} : { maxStep };
    this.range = { ...this.base };
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
      { points: this.points, minStep, maxStep, maxSteps: this.maxSteps() },
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

  /** The series' own step caps ({runId: step}), or undefined when none has one. */
  maxSteps() {
    const capped = this.series.filter((s) => s.maxStep !== undefined && s.maxStep !== null);
    return capped.length ? Object.fromEntries(capped.map((s) => [s.runId, s.maxStep])) : undefined;
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
    const top = this.base.maxStep ?? Infinity;
    this.range = { minStep: Math.floor(lo), maxStep: Math.min(top, Math.ceil(hi)), zoomed: true };
    this.plot.setScale("x", { min: lo, max: hi });
    this.load().catch((error) => this.onInfo(error.message));
  }

  resetZoom() {
    this.range = { ...this.base };
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
      this.range = { ...this.base };
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

// -- parallel coordinates ----------------------------------------------------------------------------------------
// Written here as a few lines of SVG rather than taken from a library: the maintained ones are d3 plug-ins
// (d3-parcoords, HiPlot's React bundle) that would bring d3 and a build step for one view, while uPlot (already
// here) has no parallel axes. One path per run, one vertical axis per column, brushing by dragging along an axis.

const SVG_NS = "http://www.w3.org/2000/svg";

function svgEl(name, attrs = {}) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

const asFinite = (v) => {
  if (v === null || v === undefined || v === "") return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
};

/** An axis over the values of one column: numeric when every present value is a finite number, else categorical. */
function makeAxis(key, label, rows) {
  const present = rows.map((r) => r.values[key]).filter((v) => v !== null && v !== undefined && v !== "");
  const numeric = present.length > 0 && present.every((v) => asFinite(v) !== null);
  if (numeric) {
    const nums = present.map(Number);
    let min = Math.min(...nums);
    let max = Math.max(...nums);
    if (min === max) {
      const pad = Math.abs(min) * 0.1 || 1;
      min -= pad;
      max += pad;
    }
    return { key, label, numeric, min, max, at: (v) => (asFinite(v) === null ? null : (Number(v) - min) / (max - min)) };
  }
  const categories = [...new Set(present.map(String))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const index = new Map(categories.map((c, i) => [c, i]));
  const span = Math.max(1, categories.length - 1);
  return {
    key,
    label,
    numeric,
    categories,
    at: (v) => (v === null || v === undefined || v === "" ? null : categories.length === 1 ? 0.5 : index.get(String(v)) / span),
  };
}

/**
 * Parallel coordinates of many rows over several columns, with brushing.
 * axes: [{key, label}]; rows: [{id, label, values: {key: value}}]; colourOf(i) the colour of row i.
 * Drag along an axis to keep the rows within that range (several axes: all ranges must hold); a click on an axis
 * clears its range. onBrush(ids) gets the ids of the rows kept. The element gets data-lines and data-selected.
 */
export class ParallelCoordinates {
  constructor(el, { axes, rows, colourOf, height = 340, onBrush }) {
    this.el = el;
    this.rows = rows;
    this.colourOf = colourOf;
    this.height = height;
    this.onBrush = onBrush || (() => {});
    this.axes = axes.map((a) => makeAxis(a.key, a.label, rows));
    this.brushes = new Map(); // axis key -> [lo, hi] as fractions of the axis (0 bottom, 1 top)
    this.draw();
  }

  /** Keep the rows whose value on `key` lies in [lo, hi] (numbers in the axis's units; categories by name). */
  setBrush(key, lo, hi) {
    const axis = this.axes.find((a) => a.key === key);
    if (!axis) return;
    if (lo === null && hi === null) this.brushes.delete(key);
    else {
      const a = axis.at(lo ?? (axis.numeric ? axis.min : axis.categories[0]));
      const b = axis.at(hi ?? (axis.numeric ? axis.max : axis.categories.at(-1)));
      this.brushes.set(key, [Math.min(a, b) - 1e-9, Math.max(a, b) + 1e-9]);
    }
    this.update();
  }

  clearBrushes() {
    this.brushes.clear();
    this.update();
  }

  /** The ids of the rows within every brushed range. */
  selected() {
    return this.rows.filter((r) => this.keeps(r)).map((r) => r.id);
  }

  keeps(row) {
    for (const [key, [lo, hi]] of this.brushes) {
      const f = this.axes.find((a) => a.key === key).at(row.values[key]);
      if (f === null || f < lo || f > hi) return false;
    }
    return true;
  }

  draw() {
    const width = Math.max(600, this.el.clientWidth || 900);
    const margin = { top: 34, bottom: 24, left: 70, right: 70 };
    const plotH = this.height - margin.top - margin.bottom;
    const gap = this.axes.length > 1 ? (width - margin.left - margin.right) / (this.axes.length - 1) : 0;
    this.x = (i) => margin.left + (this.axes.length > 1 ? i * gap : (width - margin.left - margin.right) / 2);
    this.y = (f) => margin.top + (1 - f) * plotH;
    this.plotH = plotH;
    this.margin = margin;
    const svg = svgEl("svg", { width, height: this.height, class: "parcoords", role: "img",
      "aria-label": `Parallel coordinates of ${this.rows.length} runs over ${this.axes.length} columns` });
    this.lines = svgEl("g", { class: "pc-lines" });
    svg.append(this.lines);
    this.paths = this.rows.map((row, i) => {
      let d = "";
      let pen = false;
      this.axes.forEach((axis, ai) => {
        const f = axis.at(row.values[axis.key]);
        if (f === null) {
          pen = false;
          return;
        }
        d += `${pen ? "L" : "M"}${this.x(ai).toFixed(1)} ${this.y(f).toFixed(1)} `;
        pen = true;
      });
      const path = svgEl("path", { d: d || "M0 0", fill: "none", "data-run": row.id, "stroke-width": 1.5 });
      const title = svgEl("title");
      title.textContent = row.label;
      path.append(title);
      path.dataset.colour = this.colourOf(i);
      return path;
    });
    this.brushRects = new Map();
    this.axes.forEach((axis, ai) => svg.append(this.axisGroup(axis, ai)));
    this.el.replaceChildren(svg);
    this.update();
  }

  axisGroup(axis, ai) {
    const x = this.x(ai);
    const g = svgEl("g", { class: "pc-axis", "data-key": axis.key });
    g.append(svgEl("line", { x1: x, x2: x, y1: this.y(0), y2: this.y(1), stroke: "#57606a" }));
    const title = svgEl("text", { x, y: 14, "text-anchor": "middle", class: "pc-label" });
    title.textContent = axis.label.length > 24 ? `${axis.label.slice(0, 22)}…` : axis.label;
    g.append(title);
    const ticks = axis.numeric
      ? [0, 0.25, 0.5, 0.75, 1].map((f) => [f, fmtNum(axis.min + f * (axis.max - axis.min))])
      : axis.categories.length <= 20
        ? axis.categories.map((c) => [axis.at(c), c])
        : [];
    for (const [f, text] of ticks) {
      g.append(svgEl("line", { x1: x - 4, x2: x, y1: this.y(f), y2: this.y(f), stroke: "#57606a" }));
      const t = svgEl("text", { x: x - 6, y: this.y(f) + 4, "text-anchor": "end", class: "pc-tick" });
      t.textContent = text.length > 12 ? `${text.slice(0, 11)}…` : text;
      g.append(t);
    }
    const rect = svgEl("rect", { x: x - 8, width: 16, y: 0, height: 0, class: "pc-brush" });
    this.brushRects.set(axis.key, rect);
    g.append(rect);
    // A wide transparent strip takes the drags.
    const hit = svgEl("rect", { x: x - 14, width: 28, y: this.y(1) - 4, height: this.plotH + 8, class: "pc-hit", fill: "transparent" });
    g.append(hit);
    hit.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      hit.setPointerCapture(e.pointerId);
      const box = this.el.querySelector("svg").getBoundingClientRect();
      const frac = (clientY) => Math.min(1, Math.max(0, 1 - (clientY - box.top - this.margin.top) / this.plotH));
      const start = frac(e.clientY);
      let moved = false;
      const move = (ev) => {
        const now = frac(ev.clientY);
        if (Math.abs(now - start) * this.plotH < 3) return;
        moved = true;
        this.brushes.set(axis.key, [Math.min(start, now), Math.max(start, now)]);
        this.update(false);
      };
      const up = () => {
        hit.removeEventListener("pointermove", move);
        hit.removeEventListener("pointerup", up);
        if (!moved) this.brushes.delete(axis.key); // a click clears the axis's range
        this.update();
      };
      hit.addEventListener("pointermove", move);
      hit.addEventListener("pointerup", up);
    });
    return g;
  }

  update(notify = true) {
    for (const [key, rect] of this.brushRects) {
      const b = this.brushes.get(key);
      rect.setAttribute("y", b ? this.y(b[1]) : 0);
      rect.setAttribute("height", b ? Math.max(1, this.y(b[0]) - this.y(b[1])) : 0);
    }
    const kept = [];
    const dimmed = [];
    this.rows.forEach((row, i) => (this.keeps(row) ? kept : dimmed).push(this.paths[i]));
    for (const p of dimmed) {
      p.setAttribute("stroke", "#d0d7de");
      p.setAttribute("stroke-opacity", "0.6");
      p.classList.remove("kept");
    }
    for (const p of kept) {
      p.setAttribute("stroke", p.dataset.colour);
      p.setAttribute("stroke-opacity", "0.85");
      p.classList.add("kept");
    }
    this.lines.replaceChildren(...dimmed, ...kept); // the kept lines on top
    this.el.dataset.lines = String(this.rows.length);
    this.el.dataset.selected = String(kept.length);
    if (notify) this.onBrush(this.selected());
  }
}
