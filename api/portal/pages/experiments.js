// Experiments: the list with search, run counts and last activity.
import { api, asOf, asOfNote, fmtTime, hashQuery, html, records, setHashQuery, showError, sql } from "../lib.js";

// Run counts and last activity for every experiment in one GROUP BY over the `runs` view (current state).
const COUNTS_SQL = `
SELECT experiment_id, count(*) AS runs, max(updated_at) AS last_activity
FROM runs WHERE lifecycle_stage = 'active' GROUP BY experiment_id`;

export async function renderExperiments(view) {
  const query = hashQuery();
  view.innerHTML = html`
    <h1>Experiments</h1>
    <form class="toolbar" role="search" id="exp-search">
      <label for="exp-q">Search</label>
      <input id="exp-q" type="search" placeholder="name contains…" value="${query.get("q") || ""}">
      <button type="submit">Search</button>
    </form>
    <div id="exp-list"><p class="muted">Loading…</p></div>`.text;
  const list = view.querySelector("#exp-list");
  view.querySelector("#exp-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = view.querySelector("#exp-q").value.trim();
    const params = new URLSearchParams(q ? { q } : {});
    setHashQuery(params);
    load(list, q);
  });
  await load(list, query.get("q") || "");
}

// "As of" a past time the list comes from the `experiments` view read at that time (the tracking API answers now).
const PAST_SQL = `
SELECT experiment_id, name, created_at AS creation_time, updated_at AS last_update_time
FROM experiments WHERE lifecycle_stage = 'active' AND (? = '' OR name ILIKE '%' || ? || '%') ORDER BY created_at DESC`;

async function currentExperiments(q) {
  const filter = q ? `name ILIKE '%${q.replace(/'/g, "''")}%'` : undefined;
  const experiments = [];
  let token;
  do {
    const page = await api("/api/v1/experiments", { query: { filter, max_results: 1000, page_token: token } });
    experiments.push(...page.experiments);
    token = page.next_page_token;
  } while (token);
  return experiments;
}

async function load(list, q) {
  try {
    const when = asOf();
    const experiments = when ? records(await sql(PAST_SQL, { params: [q, q], asOf: when })) : await currentExperiments(q);
    const counts = new Map(records(await sql(COUNTS_SQL, { asOf: when })).map((r) => [r.experiment_id, r]));
    if (!experiments.length) {
      list.innerHTML = html`<p class="muted">No experiment${q ? " matches" : " yet"}.</p>`.text;
      return;
    }
    list.innerHTML = html`${asOfNote()}
      <table class="plain" id="experiments">
        <thead><tr><th scope="col">Name</th><th scope="col">ID</th><th scope="col">Runs</th>
          <th scope="col">Last activity</th><th scope="col">Created</th></tr></thead>
        <tbody>${experiments.map((e) => {
          const c = counts.get(e.experiment_id);
          return html`<tr data-experiment-id="${e.experiment_id}">
            <td><a href="#/experiments/${encodeURIComponent(e.experiment_id)}">${e.name}</a></td>
            <td>${e.experiment_id}</td>
            <td class="num runs-count">${c ? c.runs : 0}</td>
            <td>${fmtTime(c?.last_activity || e.last_update_time)}</td>
            <td>${fmtTime(e.creation_time)}</td></tr>`;
        })}</tbody>
      </table>`.text;
  } catch (error) {
    showError(list, error);
  }
}
