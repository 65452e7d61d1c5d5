// The activity feed: who did what and when, across the lake, from the `activity` SQL view (newest first);
// and the comments that @mention someone, from the `comments` view.
import { asOf, asOfNote, fmtTime, hashQuery, html, latestOnly, raw, records, setHashQuery, showError, sql } from "../lib.js";
import { withMentions } from "./comments.js";

const LIMIT = 200;

function entityLink(row) {
  if (row.run_id) return html`<a href="#/runs/${encodeURIComponent(row.run_id)}">${row.entity_type} ${row.entity_id}</a>`;
  if (row.entity_type === "experiment") return html`<a href="#/experiments/${encodeURIComponent(row.entity_id)}">experiment ${row.entity_id}</a>`;
  if (row.entity_type === "registered_model") return html`<a href="#/models/${encodeURIComponent(row.entity_id)}">model ${row.entity_id}</a>`;
  return html`${row.entity_type} ${row.entity_id}`;
}

export async function renderActivity(view) {
  const query = hashQuery();
  view.innerHTML = html`
    <h1>Activity</h1>
    ${asOfNote()}
    <form class="toolbar" id="activity-filter" role="search">
      <label for="actor">Who</label><input id="actor" type="text" value="${query.get("actor") || ""}" placeholder="any actor">
      <label for="kind">What</label><input id="kind" type="text" value="${query.get("kind") || ""}" placeholder="run, comment, model_alias…">
      <button type="submit">Show</button>
    </form>
    <section aria-labelledby="h-mentions" class="panel"><h2 id="h-mentions">Mentions</h2>
      <form class="toolbar" id="mention-form"><label for="mention">Comments mentioning @</label>
        <input id="mention" type="text" value="${query.get("mention") || ""}" placeholder="name"><button type="submit">Find</button></form>
      <ul class="comments" id="mentions"></ul>
    </section>
    <h2>Changes</h2>
    <div id="feed"><p class="muted">Loading…</p></div>`.text;
  const feed = view.querySelector("#feed");
  const freshFeed = latestOnly(); // filters applied again before an answer: the last one's answer is shown
  const freshMentions = latestOnly();

  async function load() {
    const current = freshFeed();
    const actor = view.querySelector("#actor").value.trim();
    const kind = view.querySelector("#kind").value.trim();
    const params = new URLSearchParams();
    if (actor) params.set("actor", actor);
    if (kind) params.set("kind", kind);
    setHashQuery(params);
    try {
      const answer = await sql(
        `SELECT changed_at, actor, operation, entity_type, entity_id, run_id, detail FROM activity
         WHERE (? = '' OR actor = ?) AND (? = '' OR entity_type = ?) ORDER BY changed_at DESC LIMIT ${LIMIT}`,
        { params: [actor, actor, kind, kind], asOf: asOf() },
      );
      if (!current()) return;
      const rows = records(answer);
      feed.innerHTML = rows.length
        ? html`<table class="plain" id="activity"><thead><tr><th scope="col">When</th><th scope="col">Who</th>
            <th scope="col">Did</th><th scope="col">To</th><th scope="col">Detail</th></tr></thead>
            <tbody>${rows.map(
              (r) => html`<tr><td>${fmtTime(r.changed_at)}</td><td>${r.actor || ""}</td><td>${r.operation}</td>
                <td>${entityLink(r)}</td><td>${r.detail || ""}</td></tr>`,
            )}</tbody></table>`.text
        : `<p class="muted">Nothing yet.</p>`;
    } catch (error) {
      if (current()) showError(feed, error);
    }
  }

  async function loadMentions() {
    const current = freshMentions();
    const name = view.querySelector("#mention").value.trim().replace(/^@/, "");
    const list = view.querySelector("#mentions");
    if (!name) {
      list.innerHTML = "";
      return;
    }
    try {
      const answer = await sql(
        "SELECT author, body, target_kind, target_id, target_name, created_at FROM comments WHERE list_contains(mentions, ?) ORDER BY created_at DESC LIMIT 100",
        { params: [name], asOf: asOf() },
      );
      if (!current()) return;
      const rows = records(answer);
      list.innerHTML = rows.length
        ? rows
            .map(
              (c) => html`<li><strong>${c.author}</strong> on
                ${c.target_kind === "run" ? html`<a href="#/runs/${encodeURIComponent(c.target_id)}">run ${c.target_name}</a>` : html`<a href="#/models/${encodeURIComponent(c.target_name.split("/")[0])}">${c.target_kind} ${c.target_name}</a>`}
                <span class="muted">${fmtTime(c.created_at)}</span><div>${raw(withMentions(c.body))}</div></li>`.text,
            )
            .join("")
        : html`<li class="muted">No comment mentions @${name}.</li>`.text;
    } catch (error) {
      if (current()) showError(list, error);
    }
  }

  view.querySelector("#activity-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });
  view.querySelector("#mention-form").addEventListener("submit", (e) => {
    e.preventDefault();
    loadMentions();
  });
  await Promise.all([load(), loadMentions()]);
}
