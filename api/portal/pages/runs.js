// The runs of one experiment: a virtualised table (only the rows in view exist in the DOM), paged through
// POST /api/v1/runs/search as the reader scrolls, with MLflow's filter language, sort by any column, and a
// column picker over params, metrics (latest value) and tags. Grouping by a param works in both filter languages
// (SQL mode groups with one GROUP BY over runs_wide). With an "as of" time every call answers as the runs stood then
// (the search and groups API's as_of, the SQL endpoint's as_of).
import { asOf, asOfNote, api, fmtNum, fmtTime, hashQuery, html, quoteKey, records, setHashQuery, showError, sql } from "../lib.js";

const ROW_H = 28; // px; must match --row-h in style.css
const FIRST_PAGE = 200; // small first page: rows on screen fast
const PAGE = 1000;
const OVERSCAN = 4; // rows drawn above and below the visible ones
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
const NOT_SET = Symbol("not set"); // the id of the group of runs without the grouping param
const literal = (text) => `'${String(text).replace(/'/g, "''")}'`;
const wideColumn = (kind, key) => `"${`${kind}.${key}`.replace(/"/g, '""')}"`;
/** Groups in display order, as the groups API orders them: numerically when every value is a number, else as
 * text; the runs without the value last. */
function groupOrder(groups) {
  const present = groups.filter((g) => g.value !== null);
  const numeric = present.every((g) => g.value.trim() !== "" && Number.isFinite(Number(g.value)));
  present.sort((a, b) => (numeric ? Number(a.value) - Number(b.value) : 0) || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  return [...present, ...groups.filter((g) => g.value === null)];
}
const MAX_GROUPS = 1000;
const EXTREMES_SQL = `
SELECT run_id, min_value, max_value FROM latest_metrics
WHERE key = ? AND run_id IN (SELECT run_id FROM runs WHERE experiment_id = ?)`;

function searchBody(experimentId, filter, order, maxResults, token) {
  return {
    experiment_ids: [experimentId],
    filter: filter || null,
    order_by: order ? [order] : [],
    max_results: maxResults,
    page_token: token || null,
    as_of: asOf() || undefined,
  };
}

function searchPage(experimentId, filter, order, maxResults, token) {
  return api("/api/v1/runs/search", { method: "POST", body: searchBody(experimentId, filter, order, maxResults, token) });
}

/** The first page, taken from the call index.html made while the modules loaded if it asked for the same. */
async function firstSearchPage(experimentId, filter, order) {
  const early = window.lakeopsFirstPage;
  window.lakeopsFirstPage = null;
  if (early && early.body === JSON.stringify(searchBody(experimentId, filter, order, FIRST_PAGE, null))) {
    const answer = await early.answer;
    if (answer) return answer;
  }
  return searchPage(experimentId, filter, order, FIRST_PAGE, null);
}

function columnsKey(experimentId) {
  return `lakeops.columns.${experimentId}`;
}

export async function renderRuns(view, experimentId, { isCurrent }) {
  const query = hashQuery();
  // The first page is asked for at once, beside the experiment: rows on screen one round trip sooner.
  const firstPage =
    query.get("mode") === "sql" || query.get("group") ? null : firstSearchPage(experimentId, query.get("filter") || "", query.get("order") || "");
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
    groupBy: query.get("group") || "", // a param key, or "" for no groups
    groups: null, // when grouped: [{value, count, metrics, rows, next, started, loading}] in display order
    open: new Set(JSON.parse(query.get("open") || "[]")), // values of the expanded groups
  };
  view.innerHTML = html`
    <p class="crumbs"><a href="#/">Experiments</a> / ${experiment.name}</p>
    <h1>${experiment.name} <span class="muted">runs</span></h1>
    ${asOfNote()}
    <form class="toolbar" id="run-filter" role="search">
      <label for="filter">Filter</label>
      <select id="filter-mode" aria-label="Filter language">
        <option value="mlflow">MLflow filter</option>
        <option value="sql" ${state.mode === "sql" ? "selected" : ""}>SQL WHERE</option>
      </select>
      <input id="filter" type="search" value="${state.filter}" spellcheck="false"
        placeholder="${state.mode === "sql" ? PLACEHOLDERS.sql : PLACEHOLDERS.mlflow}" aria-describedby="filter-help">
      <button type="submit">Apply</button>
      <label for="group-by">Group by</label>
      <select id="group-by" title="Group the runs by a param">
        <option value="">(none)</option>
        ${state.groupBy ? html`<option value="${state.groupBy}" selected>${state.groupBy}</option>` : ""}
      </select>
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
      const asking = sql(EXTREMES_SQL, { params: [key, experimentId], asOf: asOf() })
        .then((answer) => {
          extremes.set(key, new Map(records(answer).map((r) => [r.run_id, r])));
          shown++;
          schedule();
        })
        .catch((error) => showError(errorBox, error));
      extremes.set(key, asking);
      return "…";
    }
    if (known instanceof Promise) return "…";
    return fmtNum(known.get(runId)?.[EXTREMES[kind]]);
  }

  // Rows are recycled: the row elements in the body stay, in screen order, and a frame moves them and rewrites
  // their cells' text. Rebuilding them with innerHTML parsed, styled and laid out ~600 new elements a frame
  // (profiled: 50-140 ms long tasks on every scrolled frame at 100k runs, under load).
  let frame = 0;
  let shape = ""; // the columns the row elements were built for
  let shown = 0; // bumped when what a cell shows may change for the same run (columns, extremes, a reload)
  function buildRow(cols) {
    const row = document.createElement("div");
    row.className = "vt-row";
    row.setAttribute("role", "row");
    for (const c of cols) {
      const el = document.createElement("div");
      el.className = `vt-cell${c.kind === "metrics" || c.kind in EXTREMES ? " num" : ""}`;
      el.setAttribute("role", "gridcell");
      el.style.width = `${c.width}px`;
      if (c.id === "select") {
        const box = document.createElement("input");
        box.type = "checkbox";
        el.append(box);
      } else if (c.id === "run_name") el.append(document.createElement("a"));
      else if (c.id === "status") el.append(document.createElement("span"));
      else el.append(document.createTextNode(""));
      row.append(el);
    }
    return row;
  }
  function setText(node, text) {
    if (node.data !== text) node.data = text;
  }
  function fillRow(row, i, run, cols) {
    const runId = run.info.run_id;
    const selected = state.selected.has(runId);
    row.style.transform = `translateY(${i * ROW_H}px)`;
    row.setAttribute("aria-rowindex", String(i + 2));
    row.classList.toggle("selected", selected);
    if (row.runId === runId && row.shown === shown) {
      row.firstChild.firstChild.checked = selected;
      return; // same run, same columns, same extremes: only its place (and tick) may have changed
    }
    row.runId = runId;
    row.shown = shown;
    row.dataset.runId = runId;
    const name = run.info.run_name || runId;
    cols.forEach((c, k) => {
      const el = row.children[k];
      switch (c.id) {
        case "select": {
          const box = el.firstChild;
          box.dataset.run = runId;
          box.setAttribute("aria-label", `Select ${name}`);
          box.checked = selected;
          break;
        }
        case "run_name": {
          const link = el.firstChild;
          link.href = `#/experiments/${encodeURIComponent(run.info.experiment_id)}/runs/${runId}`;
          link.textContent = name;
          break;
        }
        case "status":
          el.firstChild.className = `badge ${run.info.status}`;
          el.firstChild.textContent = run.info.status;
          break;
        default:
          setText(el.firstChild, String(cell(run, c)));
      }
    });
  }
  // A pool element keeps its kind: a run row, a group's header, or a "loading" row (a group's rows to come).
  function build(kind, cols) {
    if (kind === "run") return Object.assign(buildRow(cols), { kind });
    const row = document.createElement("div");
    row.kind = kind;
    row.setAttribute("role", "row");
    if (kind === "loading") {
      row.className = "vt-row vt-loading";
      row.innerHTML = `<div class="vt-cell muted" role="gridcell">Loading…</div>`;
      return row;
    }
    row.className = "vt-row vt-group";
    for (const c of cols) {
      const el = document.createElement("div");
      el.className = `vt-cell${c.kind === "metrics" ? " num" : ""}`;
      el.setAttribute("role", c.id === "run_name" ? "rowheader" : "gridcell");
      el.style.width = `${c.width}px`;
      if (c.id === "select") {
        const toggle = document.createElement("button");
        toggle.type = "button";
        toggle.className = "vt-toggle";
        el.append(toggle);
      } else el.append(document.createTextNode(""));
      row.append(el);
    }
    return row;
  }
  function place(k, kind, cols) {
    const row = body.children[k];
    if (row.kind === kind) return row;
    const fresh = build(kind, cols);
    row.replaceWith(fresh);
    return fresh;
  }
  function groupLabel(g) {
    return g.value === null ? `${state.groupBy}: not set` : `${state.groupBy} = ${g.value}`;
  }
  function fillGroup(row, i, g, cols) {
    row.style.transform = `translateY(${i * ROW_H}px)`;
    row.setAttribute("aria-rowindex", String(i + 2));
    const open = state.open.has(g.id);
    row.group = g;
    row.dataset.group = g.value ?? "";
    row.setAttribute("aria-expanded", String(open));
    cols.forEach((c, k) => {
      const el = row.children[k];
      if (c.id === "select") {
        const toggle = el.firstChild;
        toggle.textContent = open ? "▾" : "▸";
        toggle.setAttribute("aria-expanded", String(open));
        toggle.setAttribute("aria-label", `${open ? "Collapse" : "Expand"} ${groupLabel(g)}`);
        return;
      }
      let text = "";
      let title = "";
      if (c.id === "run_name") text = groupLabel(g);
      else if (c.id === "status") text = `${g.count.toLocaleString("en-US")} run${g.count === 1 ? "" : "s"}`;
      else if (c.kind === "metrics" && g.metrics[c.key]) {
        const m = g.metrics[c.key];
        text = `x̄ ${fmtNum(m.mean)}`;
        title = `${c.key}: mean ${fmtNum(m.mean)}, min ${fmtNum(m.min)}, max ${fmtNum(m.max)} over ${m.count} runs`;
      }
      setText(el.firstChild, text);
      if (el.title !== title) el.title = title;
    });
  }
  function renderRows() {
    frame = 0;
    const cols = columns();
    const key = cols.map((c) => c.id).join("\n");
    if (key !== shape) {
      shape = key;
      shown++;
      body.replaceChildren();
      const width = cols.reduce((sum, c) => sum + c.width, 0);
      body.style.width = `${width}px`;
    }
    const grouped = state.groups !== null;
    const total = grouped ? layout()[state.groups.length] : state.rows.length;
    body.style.height = `${(total + (!grouped && state.next ? 1 : 0)) * ROW_H}px`;
    const top = scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(total, Math.ceil((top + scroller.clientHeight) / ROW_H) + OVERSCAN);
    const count = Math.max(0, last - first);
    while (body.children.length > count) body.lastChild.remove();
    while (body.children.length < count) body.append(build("run", cols));
    for (let k = 0; k < count; k++) {
      const i = first + k;
      if (!grouped) {
        fillRow(place(k, "run", cols), i, state.rows[i], cols);
        continue;
      }
      const item = itemAt(i);
      if (item.kind === "group") fillGroup(place(k, "group", cols), i, item.group, cols);
      else if (item.kind === "loading") {
        const row = place(k, "loading", cols);
        row.style.transform = `translateY(${i * ROW_H}px)`;
        loadGroup(item.group);
      } else {
        fillRow(place(k, "run", cols), i, item.run, cols);
        if (item.group.next && item.index > item.group.rows.length - PREFETCH_ROWS) loadGroup(item.group);
      }
    }
    if (!grouped && state.next && !state.loading && last > total - PREFETCH_ROWS) loadMore();
  }

  // -- groups: the runs grouped by a param; counts and metric means from POST /api/v1/runs/groups, a group's
  // runs paged through the search with the group's condition added to the filter -------------------------
  let starts = null; // starts[g]: the position of group g's header among the table's rows (null: to compute)
  function layout() {
    if (starts === null) {
      starts = new Float64Array(state.groups.length + 1);
      state.groups.forEach((g, k) => {
        const rows = state.open.has(g.id) ? g.rows.length + (g.next || !g.started ? 1 : 0) : 0;
        starts[k + 1] = starts[k] + 1 + rows;
      });
    }
    return starts;
  }
  function itemAt(i) {
    const at = layout();
    let lo = 0;
    let hi = state.groups.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (at[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    const group = state.groups[lo];
    const index = i - at[lo] - 1;
    if (index < 0) return { kind: "group", group };
    if (index < group.rows.length) return { kind: "run", group, index, run: group.rows[index] };
    return { kind: "loading", group };
  }
  function groupFilter(g) {
    const key = `params.${quoteKey(state.groupBy)}`;
    const test = g.value === null ? `${key} IS NULL` : `${key} = ${literal(g.value)}`;
    return state.filter ? `${state.filter} AND ${test}` : test;
  }
  async function loadGroup(g) {
    if (g.loading || (g.started && !g.next)) return;
    const generation = state.generation;
    g.loading = true;
    try {
      const page =
        state.mode === "sql"
          ? await sqlPage(g, Number(g.next || 0))
          : await searchPage(experimentId, groupFilter(g), state.order, g.started ? PAGE : FIRST_PAGE, g.next);
      if (generation !== state.generation || !isCurrent()) return;
      g.rows.push(...page.runs);
      g.next = page.next_page_token;
      discoverKeys(page.runs);
    } catch (error) {
      if (generation !== state.generation) return;
      g.next = null; // no retry on every frame: the error is shown
      showError(errorBox, error);
    }
    g.started = true;
    g.loading = false;
    starts = null;
    scroller.dataset.loadedRows = String(state.groups.reduce((n, x) => n + x.rows.length, 0));
    schedule();
  }
  async function loadGroups() {
    const generation = state.generation;
    try {
      if (!state.discovered) {
        // The column picker, the default columns and the group-by choices learn the keys from a first page.
        const page = state.mode === "sql" ? await sqlPage(state, 0) : await searchPage(experimentId, state.filter, "", FIRST_PAGE, null);
        if (generation !== state.generation || !isCurrent()) return;
        discoverKeys(page.runs);
        if (state.columns === null) state.columns = defaultColumns();
        renderHead();
      }
      const metrics = (state.columns || []).filter((c) => c.kind === "metrics").map((c) => c.key);
      const answer =
        state.mode === "sql"
          ? await sqlGroups(metrics)
          : await api("/api/v1/runs/groups", {
              method: "POST",
              body: {
                experiment_ids: [experimentId],
                group_by: `params.${quoteKey(state.groupBy)}`,
                filter: state.filter || null,
                metrics,
                as_of: asOf() || undefined,
              },
            });
      if (generation !== state.generation || !isCurrent()) return;
      // Asked again for new metric columns: the groups keep the runs they have loaded.
      const before = new Map((state.groups || []).map((g) => [g.id, g]));
      state.groups = answer.groups.map((g) => {
        const id = g.value ?? NOT_SET;
        const kept = before.get(id);
        return kept
          ? Object.assign(kept, { count: g.count, metrics: g.metrics })
          : { ...g, id, rows: [], next: null, started: false, loading: false, sqlIds: null };
      });
      starts = null;
      shown++;
      const runs = state.groups.reduce((n, g) => n + g.count, 0);
      const more = answer.total_groups - answer.groups.length;
      count.textContent = `${runs.toLocaleString("en-US")} runs in ${answer.total_groups.toLocaleString("en-US")} groups${more > 0 ? ` (${more} not shown)` : ""}`;
      scroller.dataset.groups = String(state.groups.length);
      scroller.setAttribute("aria-rowcount", String(layout()[state.groups.length] + 1));
      if (!state.groups.length) errorBox.innerHTML = html`<p class="muted">No runs${state.filter ? " match this filter" : ""}.</p>`.text;
      renderRows();
      window.dispatchEvent(new CustomEvent("lakeops:rows", { detail: { groups: state.groups.length } }));
    } catch (error) {
      if (generation === state.generation) showError(errorBox, error);
    }
  }
  function toggleGroup(id) {
    if (state.open.has(id)) state.open.delete(id);
    else state.open.add(id);
    starts = null;
    renderRows();
  }

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(renderRows);
  };

  const groupSelect = view.querySelector("#group-by");
  function discoverKeys(runs) {
    const known = state.keys.params.size;
    for (const run of runs) {
      if (state.discovered >= DISCOVER_ROWS) break;
      state.discovered++;
      for (const kind of KINDS) for (const key in run[kind]) state.keys[kind].add(key);
    }
    if (state.keys.params.size !== known) {
      const keys = [...new Set([...state.keys.params, ...(state.groupBy ? [state.groupBy] : [])])].sort();
      groupSelect.innerHTML = html`<option value="">(none)</option>${keys.map(
        (key) => html`<option value="${key}" ${key === state.groupBy ? "selected" : ""}>${key}</option>`,
      )}`.text;
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
        (state.mode === "sql" ? sqlPage(state, Number(state.next || 0)) : searchPage(experimentId, state.filter, state.order, size, state.next)));
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
  // search API, SQL_PAGE at a time, by id. The page token is the offset into those ids. `holder` is the state (the
  // whole table) or a group (its runs: the group's value added to the condition); it keeps the ids.
  const sqlWhere = () => `lifecycle_stage = 'active' AND (${state.filter || "true"})`;
  function sqlGroupTest(g) {
    const column = wideColumn("params", state.groupBy);
    return g.value === null ? `${column} IS NULL` : `${column} = ${literal(g.value)}`;
  }
  async function sqlPage(holder, offset) {
    if (holder.sqlIds === null) {
      const column = columns().find((c) => c.order && state.order.startsWith(`${c.order} `));
      const direction = state.order.endsWith(" ASC") ? "ASC" : "DESC";
      const orderBy = column?.sqlOrder ? `${column.sqlOrder} ${direction} NULLS LAST, ` : "";
      const group = holder === state ? "" : ` AND ${sqlGroupTest(holder)}`;
      const answer = await sql(
        `SELECT run_id FROM runs_wide(${literal(experimentId)}) WHERE ${sqlWhere()}${group}
         ORDER BY ${orderBy}started_at DESC, run_id LIMIT ${SQL_LIMIT}`,
        { asOf: asOf() },
      );
      holder.sqlIds = answer.rows.map((row) => row[0]);
    }
    const ids = holder.sqlIds.slice(offset, offset + SQL_PAGE);
    const next = offset + SQL_PAGE < holder.sqlIds.length ? String(offset + SQL_PAGE) : null;
    if (!ids.length) return { runs: [], next_page_token: null };
    const page = await searchPage(experimentId, `attributes.run_id IN (${ids.map(literal).join(",")})`, "", ids.length, null);
    const byId = new Map(page.runs.map((r) => [r.info.run_id, r]));
    return { runs: ids.map((id) => byId.get(id)).filter(Boolean), next_page_token: next };
  }

  // SQL mode's groups: one GROUP BY over runs_wide; the same shape as POST /api/v1/runs/groups answers.
  async function sqlGroups(metrics) {
    const figures = metrics.map((m, i) => {
      const c = wideColumn("metrics", m);
      const finite = `FILTER (WHERE isfinite(${c}))`;
      return `count(${c}) ${finite} AS n${i}, min(${c}) ${finite} AS lo${i}, avg(${c}) ${finite} AS mean${i}, max(${c}) ${finite} AS hi${i}`;
    });
    const answer = await sql(
      `SELECT ${wideColumn("params", state.groupBy)} AS value, count(*) AS count${figures.map((f) => `, ${f}`).join("")}
       FROM runs_wide(${literal(experimentId)}) WHERE ${sqlWhere()} GROUP BY ALL`,
      { asOf: asOf() },
    );
    const groups = groupOrder(
      records(answer).map((r) => ({
        value: r.value === null ? null : String(r.value),
        count: r.count,
        metrics: Object.fromEntries(
          metrics.flatMap((m, i) => (r[`n${i}`] ? [[m, { count: r[`n${i}`], min: r[`lo${i}`], mean: r[`mean${i}`], max: r[`hi${i}`] }]] : [])),
        ),
      })),
    );
    return { groups: groups.slice(0, MAX_GROUPS), total_groups: groups.length };
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
    state.groups = null;
    starts = null;
    delete scroller.dataset.groups;
    state.generation++;
    state.rows = [];
    state.next = null;
    state.loading = false;
    shown++;
    errorBox.innerHTML = "";
    scroller.scrollTop = 0;
    const params = new URLSearchParams();
    if (state.filter) params.set("filter", state.filter);
    if (state.mode === "sql") params.set("mode", "sql");
    if (state.order) params.set("order", state.order);
    if (state.groupBy) params.set("group", state.groupBy);
    setHashQuery(params);
    renderHead();
    renderRows();
    if (state.groupBy) loadGroups();
    else loadMore();
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
    if (state.groups && kind === "metrics" && box.checked) loadGroups(); // the groups' means of the new metric
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
  groupSelect.addEventListener("change", () => {
    state.groupBy = groupSelect.value;
    state.open.clear();
    reload();
  });
  body.addEventListener("click", (e) => {
    const toggle = e.target.closest(".vt-toggle");
    if (toggle) toggleGroup(toggle.closest(".vt-group").group.id);
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
  await (state.groupBy ? loadGroups() : loadMore());
}
