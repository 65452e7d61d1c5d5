// The runs of one experiment: a virtualised table (only the rows in view exist in the DOM), paged through
// POST /api/v1/runs/search as the reader scrolls, with MLflow's filter language, sort by any column, and a
// column picker over params, metrics (latest value) and tags.
import { asOfNote, Raw, api, esc, fmtNum, fmtTime, hashQuery, html, quoteKey, records, setHashQuery, showError, sql } from "../lib.js";

const ROW_H = 28; // px; must match --row-h in style.css
const FIRST_PAGE = 200; // small first page: rows on screen fast
const PAGE = 1000;
const OVERSCAN = 12; // rows drawn above and below the visible ones
const PREFETCH_ROWS = 600; // fetch the next page when the view comes this close to the loaded end
const DISCOVER_ROWS = 3000; // runs whose keys feed the column picker

const FIXED = [
  { id: "select", label: "", width: 36 },
  { id: "run_name", label: "Run", width: 220, order: "attributes.run_name", sqlOrder: "run_name" },
  { id: "status", label: "Status", width: 96, order: "attributes.status", sqlOrder: "status" },
  { id: "start_time", label: "Started", width: 160, order: "attributes.start_time", sqlOrder: "started_at" },
  { id: "user_id", label: "User", width: 110, order: "attributes.user_id", sqlOrder: "user_id" },
];
const KINDS = ["metrics", "params", "tags"];
const PLACEHOLDERS = {
  mlflow: "metrics.loss < 0.1 AND params.lr = '0.01'",
  sql: `"metrics.loss" < 0.1 OR "params.optimizer" = 'sgd'`,
};
// A metric's lowest and highest value per run come from the `latest_metrics` SQL view, one query per key
// for the whole experiment (the search API carries each metric's latest value only); not sortable.
const EXTREMES = { min: "min_value", max: "max_value" };
const SQL_PAGE = 500; // runs fetched per search call in SQL mode (their ids go in the filter)
const SQL_LIMIT = 100_000;
const literal = (text) => `'${String(text).replace(/'/g, "''")}'`;
const EXTREMES_SQL = `
SELECT run_id, min_value, max_value FROM latest_metrics
WHERE key = ? AND run_id IN (SELECT run_id FROM runs WHERE experiment_id = ?)`;

function searchPage(experimentId, filter, order, maxResults, token) {
  return api("/api/v1/runs/search", {
    method: "POST",
    body: {
      experiment_ids: [experimentId],
      filter: filter || null,
      order_by: order ? [order] : [],
      max_results: maxResults,
      page_token: token || null,
    },
  });
}

function columnsKey(experimentId) {
  return `lakeops.columns.${experimentId}`;
}

export async function renderRuns(view, experimentId, { isCurrent }) {
  const query = hashQuery();
  // The first page is asked for at once, beside the experiment: rows on screen one round trip sooner.
  const firstPage =
    query.get("mode") === "sql" ? null : searchPage(experimentId, query.get("filter") || "", query.get("order") || "", FIRST_PAGE, null);
  firstPage?.catch(() => {}); // its error is shown when the table takes the page
  const experiment = await api(`/api/v1/experiments/${encodeURIComponent(experimentId)}`);
  const state = {
    filter: query.get("filter") || "",
    mode: query.get("mode") === "sql" ? "sql" : "mlflow",
    sqlIds: null,
    order: query.get("order") || "",
    columns: JSON.parse(localStorage.getItem(columnsKey(experimentId)) || "null"),
    rows: [],
    next: null,
    generation: 0,
    loading: false,
    selected: new Set(),
    keys: { metrics: new Set(), params: new Set(), tags: new Set() },
    discovered: 0,
  };
  view.innerHTML = html`
    <p class="crumbs"><a href="#/">Experiments</a> / ${experiment.name}</p>
    <h1>${experiment.name} <span class="muted">runs</span></h1>
    ${asOfNote(false)}
    <form class="toolbar" id="run-filter" role="search">
      <label for="filter">Filter</label>
      <select id="filter-mode" aria-label="Filter language">
        <option value="mlflow">MLflow filter</option>
        <option value="sql" ${state.mode === "sql" ? "selected" : ""}>SQL WHERE</option>
      </select>
      <input id="filter" type="search" value="${state.filter}" spellcheck="false"
        placeholder="${state.mode === "sql" ? PLACEHOLDERS.sql : PLACEHOLDERS.mlflow}" aria-describedby="filter-help">
      <button type="submit">Apply</button>
      <span class="picker">
        <button type="button" id="columns-button" aria-expanded="false" aria-controls="columns-panel">Columns</button>
        <div class="picker-panel" id="columns-panel" hidden></div>
      </span>
      <button type="button" class="primary" id="compare" disabled>Compare</button>
      <span class="muted" id="count" aria-live="polite"></span>
    </form>
    <p class="muted" id="filter-help" hidden>MLflow's filter language (metrics, params, tags and attributes joined by AND),
      or any SQL condition over the columns of runs_wide (OR, functions, subqueries).</p>
    <div id="runs-error"></div>
    <div class="vt" id="runs-table" role="grid" aria-label="Runs" aria-rowcount="-1">
      <div class="vt-head" role="row" id="runs-head"></div>
      <div class="vt-body" id="runs-body" role="rowgroup"></div>
    </div>`.text;

  const scroller = view.querySelector("#runs-table");
  const head = view.querySelector("#runs-head");
  const body = view.querySelector("#runs-body");
  const count = view.querySelector("#count");
  const errorBox = view.querySelector("#runs-error");
  const compare = view.querySelector("#compare");

  const columns = () => [
    ...FIXED,
    ...(state.columns || []).map((c) =>
      c.kind in EXTREMES
        ? { ...c, id: `${c.kind}.${c.key}`, label: `${c.key} (${c.kind})`, width: 140 }
        : {
            ...c,
            id: `${c.kind}.${c.key}`,
            label: c.key,
            width: 130,
            order: `${c.kind}.${quoteKey(c.key)}`,
            // runs_wide has params.<key> and metrics.<key> columns, no tags
            sqlOrder: c.kind === "tags" ? null : `"${`${c.kind}.${c.key}`.replace(/"/g, '""')}"`,
          },
    ),
  ];

  function renderHead() {
    const [orderKey, orderDir] = state.order ? state.order.split(/ (?=ASC$|DESC$)/) : ["", ""];
    head.innerHTML = columns()
      .map((c) => {
        const sort = c.order && c.order === orderKey ? (orderDir === "ASC" ? "ascending" : "descending") : null;
        const kind = c.kind in EXTREMES ? "metrics" : c.kind;
        const title = c.kind ? `${kind}.${c.key}${kind !== c.kind ? ` (${c.kind} of every point)` : ""}` : c.label;
        return html`<div class="vt-cell${kind === "metrics" ? " num" : ""}" role="columnheader" style="width:${c.width}px"
          ${c.order ? html`tabindex="0" data-order="${c.order}"` : ""} ${sort ? html`aria-sort="${sort}"` : ""}
          title="${title}">${kind ? html`<span class="muted">${kind[0]}.</span>` : ""}${c.label}</div>`.text;
      })
      .join("");
  }

  function cell(run, c) {
    switch (c.id) {
      case "select":
        return html`<input type="checkbox" data-run="${run.info.run_id}" aria-label="Select ${run.info.run_name || run.info.run_id}"
          ${state.selected.has(run.info.run_id) ? "checked" : ""}>`;
      case "run_name":
        return html`<a href="#/experiments/${encodeURIComponent(run.info.experiment_id)}/runs/${run.info.run_id}">${run.info.run_name || run.info.run_id}</a>`;
      case "status":
        return html`<span class="badge ${run.info.status}">${run.info.status}</span>`;
      case "start_time":
        return fmtTime(run.info.start_time);
      case "user_id":
        return run.info.user_id || "";
      default:
        if (c.kind === "metrics") return fmtNum(run.metrics[c.key]?.value);
        if (c.kind in EXTREMES) return extreme(c.kind, c.key, run.info.run_id);
        return run[c.kind][c.key] ?? "";
    }
  }

  const extremes = new Map(); // metric key -> Map(run_id -> row of latest_metrics), or a Promise while asked for
  function extreme(kind, key, runId) {
    const known = extremes.get(key);
    if (known === undefined) {
      const asking = sql(EXTREMES_SQL, { params: [key, experimentId] })
        .then((answer) => {
          extremes.set(key, new Map(records(answer).map((r) => [r.run_id, r])));
          schedule();
        })
        .catch((error) => showError(errorBox, error));
      extremes.set(key, asking);
      return "…";
    }
    if (known instanceof Promise) return "…";
    return fmtNum(known.get(runId)?.[EXTREMES[kind]]);
  }

  let frame = 0;
  function renderRows() {
    frame = 0;
    const cols = columns();
    const total = state.rows.length;
    body.style.height = `${(total + (state.next ? 1 : 0)) * ROW_H}px`;
    const top = scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(total, Math.ceil((top + scroller.clientHeight) / ROW_H) + OVERSCAN);
    let out = "";
    for (let i = first; i < last; i++) {
      const run = state.rows[i];
      const selected = state.selected.has(run.info.run_id);
      out += `<div class="vt-row${selected ? " selected" : ""}" role="row" aria-rowindex="${i + 2}" style="top:${i * ROW_H}px" data-run-id="${esc(run.info.run_id)}">`;
      for (const c of cols) {
        const content = cell(run, c);
        out += `<div class="vt-cell${c.kind === "metrics" || c.kind in EXTREMES ? " num" : ""}" role="gridcell" style="width:${c.width}px">${content instanceof Raw ? content.text : esc(content)}</div>`;
      }
      out += "</div>";
    }
    body.innerHTML = out;
    if (state.next && !state.loading && last > total - PREFETCH_ROWS) loadMore();
  }
  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(renderRows);
  };

  function discoverKeys(runs) {
    for (const run of runs) {
      if (state.discovered >= DISCOVER_ROWS) return;
      state.discovered++;
      for (const kind of KINDS) for (const key in run[kind]) state.keys[kind].add(key);
    }
  }

  let prefetched = firstPage;
  async function loadMore() {
    const generation = state.generation;
    state.loading = true;
    try {
      const pending = prefetched;
      prefetched = null;
      const size = state.rows.length ? PAGE : FIRST_PAGE;
      const page = await (pending ||
        (state.mode === "sql" ? sqlPage(Number(state.next || 0)) : searchPage(experimentId, state.filter, state.order, size, state.next)));
      if (generation !== state.generation || !isCurrent()) return;
      const firstPage = state.rows.length === 0;
      state.rows.push(...page.runs);
      state.next = page.next_page_token;
      discoverKeys(page.runs);
      if (firstPage && state.columns === null) state.columns = defaultColumns();
      if (firstPage) renderHead();
      scroller.setAttribute("aria-rowcount", state.next ? "-1" : String(state.rows.length + 1));
      scroller.dataset.loadedRows = String(state.rows.length);
      count.textContent = `${state.rows.length.toLocaleString("en-US")}${state.next ? "+" : ""} runs`;
      if (firstPage && !page.runs.length) errorBox.innerHTML = html`<p class="muted">No runs${state.filter ? " match this filter" : ""}.</p>`.text;
      state.loading = false;
      renderRows();
      if (firstPage) window.dispatchEvent(new CustomEvent("lakeops:rows", { detail: { rows: state.rows.length } }));
    } catch (error) {
      if (generation === state.generation) {
        state.loading = false;
        showError(errorBox, error);
      }
    }
  }

  // SQL mode: one query over runs_wide gives the matching run ids in order; the runs themselves come from the
  // search API, SQL_PAGE at a time, by id. The page token is the offset into those ids.
  async function sqlPage(offset) {
    if (state.sqlIds === null) {
      const column = columns().find((c) => c.order && state.order.startsWith(`${c.order} `));
      const direction = state.order.endsWith(" ASC") ? "ASC" : "DESC";
      const orderBy = column?.sqlOrder ? `${column.sqlOrder} ${direction} NULLS LAST, ` : "";
      const answer = await sql(
        `SELECT run_id FROM runs_wide(${literal(experimentId)}) WHERE lifecycle_stage = 'active' AND (${state.filter || "true"})
         ORDER BY ${orderBy}started_at DESC, run_id LIMIT ${SQL_LIMIT}`,
      );
      state.sqlIds = answer.rows.map((row) => row[0]);
    }
    const ids = state.sqlIds.slice(offset, offset + SQL_PAGE);
    const next = offset + SQL_PAGE < state.sqlIds.length ? String(offset + SQL_PAGE) : null;
    if (!ids.length) return { runs: [], next_page_token: null };
    const page = await searchPage(experimentId, `attributes.run_id IN (${ids.map(literal).join(",")})`, "", ids.length, null);
    const byId = new Map(page.runs.map((r) => [r.info.run_id, r]));
    return { runs: ids.map((id) => byId.get(id)).filter(Boolean), next_page_token: next };
  }

  function defaultColumns() {
    // The first few metrics and params, so a fresh table says something about each run.
    return [
      ...[...state.keys.metrics].sort().slice(0, 4).map((key) => ({ kind: "metrics", key })),
      ...[...state.keys.params].sort().slice(0, 4).map((key) => ({ kind: "params", key })),
    ];
  }

  function reload() {
    prefetched = null;
    state.sqlIds = null;
    state.generation++;
    state.rows = [];
    state.next = null;
    state.loading = false;
    errorBox.innerHTML = "";
    scroller.scrollTop = 0;
    const params = new URLSearchParams();
    if (state.filter) params.set("filter", state.filter);
    if (state.mode === "sql") params.set("mode", "sql");
    if (state.order) params.set("order", state.order);
    setHashQuery(params);
    renderHead();
    renderRows();
    loadMore();
  }

  // -- the column picker: a searchable list of every key seen in the first runs ----------------------
  const panel = view.querySelector("#columns-panel");
  const columnsButton = view.querySelector("#columns-button");
  function renderPicker() {
    const chosen = new Set((state.columns || []).map((c) => `${c.kind}.${c.key}`));
    const needle = (panel.querySelector("#col-q")?.value || "").toLowerCase();
    const sections = KINDS.map((kind) => {
      const keys = [...state.keys[kind]].sort().filter((k) => !needle || k.toLowerCase().includes(needle));
      const shown = keys.slice(0, 300);
      const box = (k, key, text) =>
        html`<label><input type="checkbox" data-kind="${k}" data-key="${key}" ${chosen.has(`${k}.${key}`) ? "checked" : ""}
          ${text === key ? "" : html`aria-label="${text} of ${key}"`}> ${text}</label>`;
      return html`<h3>${kind} (${keys.length})</h3>${shown.map((key) =>
        kind === "metrics"
          ? html`<div class="picker-row">${box(kind, key, key)}${box("min", key, "min")}${box("max", key, "max")}</div>`
          : box(kind, key, key),
      )}${keys.length > shown.length ? html`<p class="muted">${keys.length - shown.length} more: narrow the search</p>` : ""}`;
    });
    panel.querySelector("#col-list").innerHTML = sections.map((s) => s.text).join("");
  }
  panel.innerHTML = `<label for="col-q">Find a column</label> <input id="col-q" type="search"><div id="col-list"></div>`;
  panel.querySelector("#col-q").addEventListener("input", renderPicker);
  columnsButton.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    columnsButton.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) {
      renderPicker();
      panel.querySelector("#col-q").focus();
    }
  });
  // A click elsewhere closes the picker (the listener goes with the page).
  const closeOutside = (e) => {
    if (!isCurrent()) return document.removeEventListener("click", closeOutside);
    if (!panel.hidden && !panel.contains(e.target) && e.target !== columnsButton) {
      panel.hidden = true;
      columnsButton.setAttribute("aria-expanded", "false");
    }
  };
  document.addEventListener("click", closeOutside);
  panel.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      panel.hidden = true;
      columnsButton.setAttribute("aria-expanded", "false");
      columnsButton.focus();
    }
  });
  panel.addEventListener("change", (e) => {
    const box = e.target.closest("input[data-kind]");
    if (!box) return;
    const { kind, key } = box.dataset;
    const rest = (state.columns || []).filter((c) => !(c.kind === kind && c.key === key));
    state.columns = box.checked ? [...rest, { kind, key }] : rest;
    localStorage.setItem(columnsKey(experimentId), JSON.stringify(state.columns));
    renderHead();
    renderRows();
  });

  // -- sorting, filtering, selecting -------------------------------------------------------------------
  function sortBy(order) {
    const [current, dir] = state.order ? state.order.split(/ (?=ASC$|DESC$)/) : ["", ""];
    state.order = `${order} ${current === order && dir === "DESC" ? "ASC" : "DESC"}`;
    reload();
  }
  head.addEventListener("click", (e) => {
    const h = e.target.closest("[data-order]");
    if (h) sortBy(h.dataset.order);
  });
  head.addEventListener("keydown", (e) => {
    const h = e.target.closest("[data-order]");
    if (h && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      sortBy(h.dataset.order);
    }
  });
  view.querySelector("#filter-mode").addEventListener("change", (e) => {
    view.querySelector("#filter").placeholder = PLACEHOLDERS[e.target.value];
  });
  view.querySelector("#run-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    state.filter = view.querySelector("#filter").value.trim();
    state.mode = view.querySelector("#filter-mode").value;
    reload();
  });
  body.addEventListener("change", (e) => {
    const box = e.target.closest("input[data-run]");
    if (!box) return;
    if (box.checked) state.selected.add(box.dataset.run);
    else state.selected.delete(box.dataset.run);
    compare.disabled = state.selected.size < 1;
    compare.textContent = state.selected.size ? `Compare ${state.selected.size}` : "Compare";
    schedule();
  });
  compare.addEventListener("click", () => {
    location.hash = `#/compare?runs=${[...state.selected].join(",")}`;
  });
  scroller.addEventListener("scroll", schedule, { passive: true });
  // The window outlives this page: let go of the listener (and the rows it holds) once the page is left.
  const onResize = () => (isCurrent() ? schedule() : window.removeEventListener("resize", onResize));
  window.addEventListener("resize", onResize, { passive: true });

  renderHead();
  await loadMore();
}
