// The lineage explorer: the graph around any node (dataset version, run, logged model, model version, deployment,
// job), N hops upstream and downstream, from GET /api/v1/lineage/{kind}/{id}; click a node to explore from it.
//
// The drawing is a few lines of SVG written here rather than a graph library (dagre, cytoscape, elkjs): an N-hop
// neighbourhood is laid out in columns by signed hop distance (upstream to the left, downstream to the right),
// which needs no crossing minimisation or force simulation, and a list of the same nodes and edges under the
// drawing gives keyboard and screen-reader users the whole graph.
import { api, asOf, asOfNote, esc, hashQuery, html, latestOnly, setHashQuery, showError } from "../lib.js";

const KINDS = ["run", "dataset_version", "model_version", "logged_model", "deployment", "job"];
const BOX_W = 200;
const BOX_H = 44;
const COL_GAP = 90;
const ROW_GAP = 18;
const SVG_NS = "http://www.w3.org/2000/svg";

const nodeKey = (n) => `${n.kind}\u0000${n.id}`;

/** Where a node has a page of its own in the portal. */
function pageOf(node) {
  if (node.kind === "run") return `#/runs/${encodeURIComponent(node.id)}`;
  if (node.kind === "model_version") {
    const cut = node.id.lastIndexOf("/");
    return `#/models/${encodeURIComponent(node.id.slice(0, cut))}/versions/${encodeURIComponent(node.id.slice(cut + 1))}`;
  }
  return null;
}

function label(node) {
  return node.name ? `${node.name}` : node.id.length > 24 ? `${node.id.slice(0, 22)}…` : node.id;
}

export async function renderLineage(view) {
  const query = hashQuery();
  const state = {
    kind: query.get("kind") || "run",
    id: query.get("id") || "",
    direction: query.get("direction") || "both",
    depth: Number(query.get("depth") || 3),
  };
  view.innerHTML = html`
    <h1>Lineage</h1>
    ${asOfNote()}
    <form class="toolbar" id="lineage-form">
      <label for="lineage-kind">Node kind</label>
      <select id="lineage-kind">${KINDS.map((k) => html`<option ${k === state.kind ? "selected" : ""}>${k}</option>`)}</select>
      <label for="lineage-id">ID</label><input id="lineage-id" required value="${state.id}" size="36" placeholder="run id, model/3, …">
      <label for="lineage-direction">Direction</label>
      <select id="lineage-direction">${["both", "upstream", "downstream"].map((d) => html`<option ${d === state.direction ? "selected" : ""}>${d}</option>`)}</select>
      <label for="lineage-depth">Hops</label><input id="lineage-depth" type="number" min="1" max="20" value="${state.depth}" size="3">
      <button type="submit" class="primary">Explore</button>
    </form>
    <div id="lineage-graph" class="panel lineage"></div>
    <div class="grid2">
      <section aria-labelledby="h-nodes"><h2 id="h-nodes">Nodes</h2><ul id="lineage-nodes" class="plain-list"></ul></section>
      <section aria-labelledby="h-edges"><h2 id="h-edges">Edges</h2><ul id="lineage-edges" class="plain-list"></ul></section>
    </div>`.text;
  const graphBox = view.querySelector("#lineage-graph");
  const fresh = latestOnly(); // re-rooting again before an answer: only the last node's graph is drawn

  async function explore() {
    const current = fresh();
    const params = new URLSearchParams({ kind: state.kind, id: state.id, direction: state.direction, depth: String(state.depth) });
    setHashQuery(params);
    if (!state.id) {
      graphBox.innerHTML = `<p class="muted">Pick a node: a run id, a dataset version id, a model version as name/version, …</p>`;
      return;
    }
    graphBox.innerHTML = `<p class="muted">Loading…</p>`;
    try {
      const directions = state.direction === "both" ? ["upstream", "downstream"] : [state.direction];
      const answers = await Promise.all(
        directions.map((d) =>
          api(`/api/v1/lineage/${encodeURIComponent(state.kind)}/${state.id.split("/").map(encodeURIComponent).join("/")}`, {
            query: { direction: d, depth: state.depth, as_of: asOf() },
          }),
        ),
      );
      if (!current()) return;
      const nodes = new Map();
      const edges = new Map();
      answers.forEach((answer, i) => {
        const sign = directions[i] === "upstream" ? -1 : 1;
        for (const n of answer.nodes) {
          const key = nodeKey(n);
          const column = sign * n.distance;
          if (!nodes.has(key) || Math.abs(column) < Math.abs(nodes.get(key).column)) nodes.set(key, { ...n, column });
        }
        for (const e of answer.edges) edges.set(`${nodeKey(e.source)}>${nodeKey(e.target)}>${e.relation}`, e);
      });
      draw([...nodes.values()], [...edges.values()]);
    } catch (error) {
      if (!current()) return;
      showError(graphBox, error);
      view.querySelector("#lineage-nodes").innerHTML = "";
      view.querySelector("#lineage-edges").innerHTML = "";
    }
  }

  function draw(nodes, edges) {
    const columns = new Map();
    for (const n of nodes.sort((a, b) => a.kind.localeCompare(b.kind) || label(a).localeCompare(label(b)))) {
      if (!columns.has(n.column)) columns.set(n.column, []);
      columns.get(n.column).push(n);
    }
    const order = [...columns.keys()].sort((a, b) => a - b);
    const tallest = Math.max(...[...columns.values()].map((c) => c.length));
    const width = order.length * (BOX_W + COL_GAP) - COL_GAP + 20;
    const height = tallest * (BOX_H + ROW_GAP) - ROW_GAP + 20;
    const at = new Map();
    order.forEach((column, ci) => {
      const list = columns.get(column);
      const offset = ((tallest - list.length) * (BOX_H + ROW_GAP)) / 2;
      list.forEach((n, ri) => at.set(nodeKey(n), { x: 10 + ci * (BOX_W + COL_GAP), y: 10 + offset + ri * (BOX_H + ROW_GAP) }));
    });
    let svg = `<svg xmlns="${SVG_NS}" width="${width}" height="${height}" role="img" aria-label="Lineage graph of ${esc(state.kind)} ${esc(state.id)}">
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
      <path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a"/></marker></defs>`;
    for (const e of edges) {
      const s = at.get(nodeKey(e.source));
      const t = at.get(nodeKey(e.target));
      if (!s || !t) continue;
      const x1 = s.x + BOX_W;
      const y1 = s.y + BOX_H / 2;
      const x2 = t.x;
      const y2 = t.y + BOX_H / 2;
      const mid = (x1 + x2) / 2;
      svg += `<path d="M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}" fill="none" stroke="#8c959f" marker-end="url(#arrow)"><title>${esc(e.relation)}</title></path>`;
    }
    for (const n of nodes) {
      const p = at.get(nodeKey(n));
      const root = n.distance === 0;
      svg += `<g class="lineage-node" tabindex="0" role="button" data-kind="${esc(n.kind)}" data-id="${esc(n.id)}" transform="translate(${p.x},${p.y})"
        aria-label="Explore from ${esc(n.kind)} ${esc(label(n))}">
        <rect width="${BOX_W}" height="${BOX_H}" rx="6" fill="${root ? "#ddf4ff" : "#ffffff"}" stroke="${root ? "#0550ae" : "#8c959f"}"/>
        <text x="8" y="17" font-size="11" fill="#57606a">${esc(n.kind.replace("_", " "))}</text>
        <text x="8" y="34" font-size="13" fill="#1b1f24">${esc(label(n))}</text></g>`;
    }
    graphBox.innerHTML = svg + "</svg>";
    graphBox.dataset.nodes = String(nodes.length);
    graphBox.dataset.edges = String(edges.length);
    view.querySelector("#lineage-nodes").innerHTML = nodes
      .sort((a, b) => a.column - b.column)
      .map((n) => {
        const page = pageOf(n);
        return html`<li data-kind="${n.kind}" data-id="${n.id}">${n.column < 0 ? `${-n.column} up` : n.column > 0 ? `${n.column} down` : "root"}:
          ${n.kind} ${page ? html`<a href="${page}">${label(n)}</a>` : label(n)}
          <button type="button" class="link explore" data-kind="${n.kind}" data-id="${n.id}">explore from here</button></li>`.text;
      })
      .join("");
    view.querySelector("#lineage-edges").innerHTML = edges
      .map((e) => html`<li>${e.source.kind} ${e.source.id} — <em>${e.relation}</em> → ${e.target.kind} ${e.target.id}</li>`.text)
      .join("");
  }

  function reroot(kind, id) {
    state.kind = kind;
    state.id = id;
    view.querySelector("#lineage-kind").value = kind;
    view.querySelector("#lineage-id").value = id;
    explore();
  }
  graphBox.addEventListener("click", (e) => {
    const g = e.target.closest(".lineage-node");
    if (g) reroot(g.dataset.kind, g.dataset.id);
  });
  graphBox.addEventListener("keydown", (e) => {
    const g = e.target.closest(".lineage-node");
    if (g && (e.key === "Enter" || e.key === " ")) {
      e.preventDefault();
      reroot(g.dataset.kind, g.dataset.id);
    }
  });
  view.querySelector("#lineage-nodes").addEventListener("click", (e) => {
    const b = e.target.closest(".explore");
    if (b) reroot(b.dataset.kind, b.dataset.id);
  });
  view.querySelector("#lineage-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.kind = view.querySelector("#lineage-kind").value;
    state.id = view.querySelector("#lineage-id").value.trim();
    state.direction = view.querySelector("#lineage-direction").value;
    state.depth = Number(view.querySelector("#lineage-depth").value) || 3;
    explore();
  });
  await explore();
}
