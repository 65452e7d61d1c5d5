// The model registry: models with their aliases and versions, each version's quality-gate status, deployments,
// moving an alias (a protected alias asks the quality gate first; its answer is shown, and can be overridden
// with a reason), alias history, and comments. Every read honours the "as of" time.
import { api, asOf, asOfNote, fmtTime, hashQuery, html, latestOnly, setHashQuery, showError } from "../lib.js";
import { renderComments } from "./comments.js";

const enc = encodeURIComponent;
const modelLink = (name) => html`<a href="#/models/${enc(name)}">${name}</a>`;

export async function renderModels(view) {
  const query = hashQuery();
  view.innerHTML = html`
    <h1>Models</h1>
    ${asOfNote()}
    <form class="toolbar" role="search" id="model-search">
      <label for="model-q">Search</label>
      <input id="model-q" type="search" value="${query.get("q") || ""}" placeholder="name contains…">
      <button type="submit">Search</button>
    </form>
    <div id="model-list"><p class="muted">Loading…</p></div>`.text;
  const list = view.querySelector("#model-list");
  const fresh = latestOnly(); // a search run again before its answer: the last one's models are shown
  async function load() {
    const current = fresh();
    const q = view.querySelector("#model-q").value.trim();
    setHashQuery(new URLSearchParams(q ? { q } : {}));
    try {
      const models = [];
      let token;
      do {
        const page = await api("/api/v1/registered-models", {
          query: { filter: q ? `name ILIKE '%${q.replace(/'/g, "''")}%'` : undefined, page_token: token, as_of: asOf() },
        });
        if (!current()) return;
        models.push(...page.registered_models);
        token = page.next_page_token;
      } while (token);
      list.innerHTML = models.length
        ? html`<table class="plain" id="models"><thead><tr><th scope="col">Model</th><th scope="col">Aliases</th>
            <th scope="col">Latest version</th><th scope="col">Updated</th><th scope="col">Description</th></tr></thead>
            <tbody>${models.map((m) => {
              const latest = Math.max(0, ...m.latest_versions.map((v) => v.version));
              return html`<tr data-model="${m.name}"><td>${modelLink(m.name)}</td>
                <td>${Object.entries(m.aliases).map(([a, v]) => html`<span class="badge">${a} → v${v}</span> `)}</td>
                <td>${latest ? `v${latest}` : ""}</td><td>${fmtTime(m.last_updated_timestamp)}</td><td>${m.description || ""}</td></tr>`;
            })}</tbody></table>`.text
        : `<p class="muted">No registered model${q ? " matches" : " yet"}.</p>`;
    } catch (error) {
      if (current()) showError(list, error);
    }
  }
  view.querySelector("#model-search").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  await load();
}

async function allVersions(name, when) {
  const versions = [];
  let token;
  do {
    const page = await api(`/api/v1/registered-models/${enc(name)}/versions`, { query: { page_token: token, as_of: when } });
    versions.push(...page.model_versions);
    token = page.next_page_token;
  } while (token);
  return versions.sort((a, b) => b.version - a.version);
}

async function gateOf(version) {
  if (!version.run_id && !version.model_id) return { allowed: true, reasons: [] };
  return api("/api/v1/quality/gate", { query: { run_id: version.run_id || undefined, model_id: version.model_id || undefined } });
}

function gateCell(gate) {
  return gate.allowed
    ? html`<span class="ok">passes</span>`
    : html`<span class="error">refuses</span><ul class="reasons">${gate.reasons.map((r) => html`<li>${r}</li>`)}</ul>`;
}

export async function renderModel(view, name) {
  const when = asOf();
  const [model, versions, deployments] = await Promise.all([
    api(`/api/v1/registered-models/${enc(name)}`, { query: { as_of: when } }),
    allVersions(name, when),
    // As of a past time: what ran where then (GET /deployments?as_of=), this model's rows.
    when
      ? api("/api/v1/deployments", { query: { as_of: when } }).then((d) => ({ deployments: d.deployments.filter((x) => x.model_name === name) }))
      : api(`/api/v1/registered-models/${enc(name)}/deployments`).catch(() => ({ deployments: [] })),
  ]);
  const gates = await Promise.all(versions.map(gateOf));
  const aliases = Object.entries(model.aliases).sort();
  view.innerHTML = html`
    <p class="crumbs"><a href="#/models">Models</a> / ${model.name}</p>
    <h1>${model.name}</h1>
    ${asOfNote()}
    ${model.description ? html`<p>${model.description}</p>` : ""}
    <div class="grid2">
      <section class="panel" aria-labelledby="h-aliases"><h2 id="h-aliases">Aliases</h2>
        ${aliases.length
          ? html`<table class="plain" id="aliases"><thead><tr><th scope="col">Alias</th><th scope="col">Version</th><th scope="col">History</th></tr></thead>
            <tbody>${aliases.map(([a, v]) => html`<tr data-alias="${a}"><td>${a}</td><td><a href="#/models/${enc(name)}/versions/${v}">v${v}</a></td>
              <td><button type="button" class="link alias-history" data-alias="${a}">Show moves</button></td></tr>`)}</tbody></table>`
          : html`<p class="muted">No alias.</p>`}
        <div id="alias-history"></div>
        ${when
          ? html`<p class="muted">Moving aliases is for the present: clear "As of" first.</p>`
          : html`<form id="move-alias" class="toolbar">
              <label for="alias-name">Alias</label><input id="alias-name" required value="production" size="12">
              <label for="alias-version">Version</label>
              <select id="alias-version">${versions.map((v) => html`<option value="${v.version}">v${v.version}</option>`)}</select>
              <button type="submit" class="primary">Move alias</button>
            </form>
            <div id="gate-answer" aria-live="polite"></div>`}
      </section>
      <section class="panel" aria-labelledby="h-deployments"><h2 id="h-deployments">Deployments</h2>
        ${deployments.deployments.length
          ? html`<table class="plain" id="deployments"><thead><tr><th scope="col">Environment</th><th scope="col">Version</th>
              <th scope="col">Since</th><th scope="col">By</th><th scope="col">Application</th></tr></thead>
              <tbody>${deployments.deployments.map((d) => html`<tr><td>${d.environment}${d.is_retired ? " (retired)" : ""}</td><td>v${d.version}</td>
                <td>${fmtTime(d.since)}</td><td>${d.deployed_by || ""}</td><td>${d.application_version || ""}</td></tr>`)}</tbody></table>`
          : html`<p class="muted">Never deployed.</p>`}
      </section>
    </div>
    <section class="panel" aria-labelledby="h-versions"><h2 id="h-versions">Versions (${versions.length})</h2>
      ${when ? html`<p class="muted">The quality gate's answers are today's (a gate is asked, not stored).</p>` : ""}
      <table class="plain" id="versions"><thead><tr><th scope="col">Version</th><th scope="col">Aliases</th><th scope="col">Stage</th>
        <th scope="col">Run</th><th scope="col">Created</th><th scope="col">Quality gate</th></tr></thead>
      <tbody>${versions.map((v, i) => html`<tr data-version="${v.version}"><td><a href="#/models/${enc(name)}/versions/${v.version}">v${v.version}</a></td>
        <td>${v.aliases.map((a) => html`<span class="badge">${a}</span> `)}</td><td>${v.current_stage}</td>
        <td>${v.run_id ? html`<a href="#/runs/${enc(v.run_id)}">${v.run_id.slice(0, 8)}</a>` : ""}</td>
        <td>${fmtTime(v.creation_timestamp)}</td><td class="gate">${gateCell(gates[i])}</td></tr>`)}</tbody></table>
    </section>
    <section id="comments"></section>`.text;

  const freshHistory = latestOnly(); // "Show moves" of one alias, then another: the last one clicked is shown
  view.querySelectorAll(".alias-history").forEach((button) =>
    button.addEventListener("click", async () => {
      const current = freshHistory();
      const box = view.querySelector("#alias-history");
      try {
        const { changes } = await api(`/api/v1/registered-models/${enc(name)}/aliases/${enc(button.dataset.alias)}/history`);
        if (!current()) return;
        box.innerHTML = html`<h3>Moves of ${button.dataset.alias}</h3><ol id="alias-moves">${changes.map(
          (c) => html`<li>${fmtTime(c.changed_at)} ${c.actor || ""}: ${c.operation} ${c.version ? `→ v${c.version}` : ""}
            ${c.is_forced ? html`<strong>forced</strong> (${c.force_reason}; the gate said: ${c.gate_reasons.join("; ")})` : ""}</li>`,
        )}</ol>`.text;
      } catch (error) {
        if (current()) showError(box, error);
      }
    }),
  );

  const form = view.querySelector("#move-alias");
  if (form) {
    const answer = view.querySelector("#gate-answer");
    const move = async (extra) => {
      const alias = form.querySelector("#alias-name").value.trim();
      const version = Number(form.querySelector("#alias-version").value);
      try {
        await api(`/api/v1/registered-models/${enc(name)}/aliases/${enc(alias)}`, { method: "PUT", body: { version, ...extra } });
        await renderModel(view, name);
        view.querySelector("#gate-answer").innerHTML = html`<p class="ok" role="status">${alias} now points at v${version}.</p>`.text;
      } catch (error) {
        if (error.status !== 422) {
          showError(answer, error);
          return;
        }
        const reasons = error.body?.error?.details?.reasons || [];
        answer.innerHTML = html`<div role="alert" class="panel"><p class="error">The quality gate refuses v${version} for "${alias}":</p>
          <ul id="gate-reasons">${reasons.map((r) => html`<li>${r}</li>`)}</ul>
          <form id="force-alias" class="toolbar"><label for="force-reason">Override, because</label>
            <input id="force-reason" required size="40"><button type="submit">Force</button></form></div>`.text;
        answer.querySelector("#force-alias").addEventListener("submit", (e) => {
          e.preventDefault();
          move({ force: true, reason: answer.querySelector("#force-reason").value });
        });
      }
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      move({});
    });
  }
  await renderComments(view.querySelector("#comments"), `model:${name}`);
}

export async function renderModelVersion(view, name, number) {
  const when = asOf();
  const version = await api(`/api/v1/registered-models/${enc(name)}/versions/${enc(number)}`, { query: { as_of: when } });
  const gate = await gateOf(version);
  view.innerHTML = html`
    <p class="crumbs"><a href="#/models">Models</a> / <a href="#/models/${enc(name)}">${name}</a> / v${version.version}</p>
    <h1>${name} v${version.version} ${version.aliases.map((a) => html`<span class="badge">${a}</span> `)}</h1>
    ${asOfNote()}
    <section class="panel"><table class="plain kv" id="version-info"><tbody>
      <tr><td>Stage</td><td>${version.current_stage}</td></tr>
      <tr><td>Source</td><td><code>${version.source}</code></td></tr>
      <tr><td>Run</td><td>${version.run_id ? html`<a href="#/runs/${enc(version.run_id)}">${version.run_id}</a>` : ""}</td></tr>
      <tr><td>Created</td><td>${fmtTime(version.creation_timestamp)} ${version.user_id ? `by ${version.user_id}` : ""}</td></tr>
      <tr><td>Quality gate</td><td class="gate">${gateCell(gate)}</td></tr>
      <tr><td>Lineage</td><td><a href="#/lineage?kind=model_version&id=${enc(`${name}/${version.version}`)}">explore</a></td></tr>
      ${Object.entries(version.tags).map(([k, v]) => html`<tr><td>${k}</td><td>${v}</td></tr>`)}
    </tbody></table></section>
    <section id="comments"></section>`.text;
  await renderComments(view.querySelector("#comments"), `version:${name}/${version.version}`);
}
