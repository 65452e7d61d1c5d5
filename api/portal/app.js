// The portal's router: the URL fragment picks a page. MLflow's own shapes are kept, so the links the stock
// mlflow client prints ("View run at http://host/#/experiments/<id>/runs/<run_id>") open the run page.
import { api, asOf, csrfToken, setAsOf, showError } from "./lib.js";

const ROUTES = [
  [/^\/?$/, "experiments", () => import("./pages/experiments.js").then((m) => m.renderExperiments)],
  [/^\/experiments\/?$/, "experiments", () => import("./pages/experiments.js").then((m) => m.renderExperiments)],
  [/^\/experiments\/([^/]+)\/?$/, "experiments", () => import("./pages/runs.js").then((m) => m.renderRuns)],
  [/^\/experiments\/([^/]+)\/runs\/([^/]+)\/?$/, "experiments", () => import("./pages/run.js").then((m) => m.renderRun)],
  [/^\/runs\/([^/]+)\/?$/, "experiments", () => import("./pages/run.js").then((m) => m.renderRunById)],
  [/^\/activity\/?$/, "activity", () => import("./pages/activity.js").then((m) => m.renderActivity)],
  [/^\/compare\/?$/, "experiments", () => import("./pages/compare.js").then((m) => m.renderCompare)],
  [/^\/lineage\/?$/, "lineage", () => import("./pages/lineage.js").then((m) => m.renderLineage)],
  [/^\/sql\/?$/, "sql", () => import("./pages/sql.js").then((m) => m.renderSql)],
  [/^\/models\/?$/, "models", () => import("./pages/models.js").then((m) => m.renderModels)],
  [/^\/models\/([^/]+)\/?$/, "models", () => import("./pages/models.js").then((m) => m.renderModel)],
  [/^\/models\/([^/]+)\/versions\/([^/]+)\/?$/, "models", () => import("./pages/models.js").then((m) => m.renderModelVersion)],
];

let renderToken = 0;

async function route() {
  // Match the encoded path, then decode each part: a name may hold a "/" (sent as %2F).
  const hash = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const view = document.getElementById("view");
  const token = ++renderToken;
  for (const [pattern, nav, load] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    document.querySelectorAll("[data-nav]").forEach((a) => {
      if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    try {
      const render = await load();
      if (token !== renderToken) return;
      // Each page renders into its own element: a slower render of a page already left writes into a
      // detached element and never over the page now shown.
      const page = document.createElement("div");
      view.replaceChildren(page);
      await render(page, ...match.slice(1).map(decodeURIComponent), { isCurrent: () => token === renderToken });
    } catch (error) {
      if (token === renderToken) showError(view, error);
    }
    return;
  }
  view.innerHTML = `<h1>Not found</h1><p>No page at <code></code>. <a href="#/">Experiments</a></p>`;
  view.querySelector("code").textContent = hash;
}

function setupAsOf() {
  const form = document.getElementById("asof-form");
  const input = document.getElementById("asof");
  const show = () => {
    const when = asOf();
    form.classList.toggle("active", Boolean(when));
    if (when) {
      const d = new Date(when);
      const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
      input.value = local.toISOString().slice(0, 19);
    } else input.value = "";
  };
  input.addEventListener("change", () => {
    setAsOf(input.value ? new Date(input.value).toISOString() : null);
    show();
    route();
  });
  document.getElementById("asof-clear").addEventListener("click", () => {
    setAsOf(null);
    show();
    route();
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  show();
}

// With authentication on, the portal runs on a login session: offer to end it.
function setupLogout() {
  const button = document.getElementById("logout");
  if (!button || csrfToken() === null) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    await api("/logout", { method: "POST" }).catch(() => null);
    location.assign("/login");
  });
}

window.addEventListener("hashchange", route);
setupAsOf();
setupLogout();
route();
