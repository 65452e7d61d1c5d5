// A run's artifacts: browse folders, see every stored version of a file, preview a version (text, tables,
// images) and download it. Reads GET /api/v1/artifacts?prefix=, /api/v1/artifact-versions/{path} and
// /api/v1/artifacts/{path}?version_id=.
import { api, esc, fmtNum, fmtTime, html, latestOnly, showError } from "../lib.js";

const TEXT = /\.(txt|log|json|ya?ml|md|py|cfg|ini|toml|csv|tsv)$/i;
const IMAGE = /\.(png|jpe?g|gif|svg|webp)$/i;
const PREVIEW_BYTES = 64 * 1024;
const encPath = (path) => path.split("/").map(encodeURIComponent).join("/");
const fileUrl = (path, versionId) => `/api/v1/artifacts/${encPath(path)}${versionId ? `?version_id=${encodeURIComponent(versionId)}` : ""}`;

/** The artifact store path of a run's artifact_uri ("mlflow-artifacts:/<exp>/<run>/artifacts"), or null. */
export function artifactRoot(uri) {
  const match = /^mlflow-artifacts:\/*(.+?)\/*$/.exec(uri || "");
  return match ? match[1] : null;
}

/** `when`: an "as of" time (ISO), or null: the listing is as it stood then; versions stored after it are marked and
 * not previewed by default. */
export async function renderArtifacts(el, root, when = null) {
  el.innerHTML = html`<h2 id="h-artifacts">Artifacts</h2>
    <div class="grid2"><div><ul id="artifact-tree" class="plain-list" aria-labelledby="h-artifacts"></ul></div>
    <div id="artifact-detail" aria-live="polite"></div></div>`.text;
  const tree = el.querySelector("#artifact-tree");
  const detail = el.querySelector("#artifact-detail");
  if (!root) {
    tree.innerHTML = `<li class="muted">This run's artifacts are stored outside lakeops.</li>`;
    return;
  }

  async function list(prefix, into, depth) {
    const { files } = await api("/api/v1/artifacts", { query: { prefix, as_of: when } }); // as they stood then
    if (!files.length && depth === 0) {
      into.innerHTML = `<li class="muted">No artifacts.</li>`;
      return;
    }
    into.innerHTML = files
      .map((f) => {
        const name = f.path.slice(prefix.length + 1);
        return f.is_dir
          ? html`<li><button type="button" class="link artifact-dir" aria-expanded="false" data-path="${f.path}">📁 ${name}/</button><ul class="plain-list nested"></ul></li>`.text
          : html`<li><button type="button" class="link artifact-file" data-path="${f.path}">${name}</button> <span class="muted">${fmtNum(f.file_size)} B</span></li>`.text;
      })
      .join("");
  }

  const fresh = latestOnly(); // a file or version clicked before the last one answered: the last click is shown

  async function show(path, versionId) {
    const current = fresh();
    try {
      const { versions } = await api(`/api/v1/artifact-versions/${encPath(path)}`);
      if (!current()) return;
      const later = (v) => when !== null && new Date(v.created_at).getTime() > new Date(when).getTime();
      const then = versions.filter((v) => !later(v));
      const chosen = versions.find((v) => v.version_id === versionId) ||
        (when ? then.at(-1) : versions.find((v) => v.is_current)) || versions.at(-1);
      detail.innerHTML = html`<h3>${path.split("/").at(-1)}</h3>
        <table class="plain" id="artifact-versions"><thead><tr><th scope="col">Version</th><th scope="col">Stored</th><th scope="col">Size</th><th scope="col">sha256</th><th scope="col"></th></tr></thead>
        <tbody>${versions.map((v, i) => html`<tr class="${v === chosen ? "selected" : ""}" data-version-id="${v.version_id}">
          <td><button type="button" class="link artifact-version" data-path="${path}" data-version-id="${v.version_id}">v${i + 1}${v.is_current ? " (current)" : ""}</button>${later(v) ? html` <span class="muted later">stored after the as-of time</span>` : ""}</td>
          <td>${fmtTime(v.created_at)}</td><td class="num">${fmtNum(v.size_bytes)}</td><td><code>${v.sha256.slice(0, 12)}</code></td>
          <td><a href="${fileUrl(path, v.version_id)}" download>Download</a></td></tr>`)}</tbody></table>
        <div id="artifact-preview"></div>`.text;
      await preview(path, chosen, current);
    } catch (error) {
      if (current()) showError(detail, error);
    }
  }

  async function preview(path, version, current) {
    const box = detail.querySelector("#artifact-preview");
    if (IMAGE.test(path)) {
      box.innerHTML = html`<img alt="${path}" src="${fileUrl(path, version.version_id)}" style="max-width:100%">`.text;
      return;
    }
    if (!TEXT.test(path) || version.size_bytes > 4 * 1024 * 1024) {
      box.innerHTML = `<p class="muted">No preview for this kind of file: download it.</p>`;
      return;
    }
    const response = await fetch(fileUrl(path, version.version_id));
    const text = (await response.text()).slice(0, PREVIEW_BYTES);
    if (!current()) return;
    const cut = version.size_bytes > PREVIEW_BYTES ? `<p class="muted">The first ${PREVIEW_BYTES / 1024} KiB.</p>` : "";
    if (/\.(csv|tsv)$/i.test(path)) {
      const sep = path.toLowerCase().endsWith(".tsv") ? "\t" : ",";
      const rows = text.split(/\r?\n/).filter(Boolean).slice(0, 50).map((line) => line.split(sep));
      box.innerHTML = html`<table class="plain" id="artifact-table"><thead><tr>${rows[0].map((c) => html`<th scope="col">${c}</th>`)}</tr></thead>
        <tbody>${rows.slice(1).map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody></table>`.text + cut;
      return;
    }
    box.innerHTML = `<pre id="artifact-text">${esc(text)}</pre>${cut}`;
  }

  el.addEventListener("click", async (e) => {
    const dir = e.target.closest(".artifact-dir");
    if (dir) {
      const open = dir.getAttribute("aria-expanded") === "true";
      dir.setAttribute("aria-expanded", String(!open));
      const nested = dir.nextElementSibling;
      if (open) nested.innerHTML = "";
      else await list(dir.dataset.path, nested, 1).catch((error) => showError(nested, error));
      return;
    }
    const file = e.target.closest(".artifact-file, .artifact-version");
    if (file) await show(file.dataset.path, file.dataset.versionId);
  });
  await list(root, tree, 0).catch((error) => showError(tree, error));
}
