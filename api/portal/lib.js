// Shared helpers of the portal: calls to the native API, escaping, formatting, the "as of" time.

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** The portal login's CSRF value (the lakeops_csrf cookie; none without authentication). */
export function csrfToken() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("lakeops_csrf="));
  return found ? decodeURIComponent(found.slice("lakeops_csrf=".length)) : null;
}

/** Headers every request that may change something sends: the CSRF value of a portal login. */
export function csrfHeaders(method) {
  const token = csrfToken();
  return token && !["GET", "HEAD", "OPTIONS"].includes(method.toUpperCase()) ? { "x-csrf-token": token } : {};
}

/** With authentication on, an expired or logged-out session goes back to the login page. */
export function checkSession(response) {
  if (response.status === 401 && csrfToken() !== null) location.assign("/login");
}

/** Call the native API; JSON in and out. An error answer becomes an ApiError carrying the server's message. */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) url.searchParams.append(k, item);
  }
  const init = { method, signal, headers: csrfHeaders(method) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const response = await fetch(url, init);
  checkSession(response);
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!response.ok) {
    const message = data?.error?.message || data?.message || `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, data);
  }
  return data;
}

/** Run SQL through POST /api/v1/sql; answers {columns, rows, truncated}. */
export function sql(text, { params, maxRows, asOf } = {}) {
  return api("/api/v1/sql", { method: "POST", body: { sql: text, params, max_rows: maxRows, as_of: asOf ?? undefined } });
}

/** Rows of a SQL answer as objects keyed by column name. */
export function records(answer) {
  return answer.rows.map((row) => Object.fromEntries(answer.columns.map((c, i) => [c, row[i]])));
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
/** Text made safe to put in HTML. */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** A tagged template that escapes every interpolated value (use raw() to opt out for built HTML). */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => {
    out += (v instanceof Raw ? v.text : Array.isArray(v) ? v.map((x) => (x instanceof Raw ? x.text : esc(x))).join("") : esc(v)) + strings[i + 1];
  });
  return new Raw(out);
}

export class Raw {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}
export const raw = (text) => new Raw(text);

/** A millisecond epoch (or ISO text) as local "YYYY-MM-DD HH:MM:SS". */
export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** A number shown compactly; metric values arrive as numbers or "NaN"/"Infinity" strings. */
export function fmtNum(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return value.toExponential(4);
  return String(Number(value.toPrecision(6)));
}

/** The page's query string (after "?" in the fragment) as URLSearchParams. */
export function hashQuery() {
  const hash = location.hash;
  const i = hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : hash.slice(i + 1));
}

/** Replace the fragment's query without adding a history entry or re-rendering. */
export function setHashQuery(params) {
  const hash = location.hash || "#/";
  const i = hash.indexOf("?");
  const base = i < 0 ? hash : hash.slice(0, i);
  const text = params.toString();
  history.replaceState(null, "", text ? `${base}?${text}` : base);
}

// -- time travel: one "as of" time for every page that can answer as of a time ----------------------

const AS_OF_KEY = "lakeops.asOf";

/** The chosen "as of" time as ISO-8601 UTC, or null for now. */
export function asOf() {
  return sessionStorage.getItem(AS_OF_KEY);
}

export function setAsOf(iso) {
  if (iso) sessionStorage.setItem(AS_OF_KEY, iso);
  else sessionStorage.removeItem(AS_OF_KEY);
}

/** A <span> telling the reader the page shows a past state. */
export function asOfNote(supported = true) {
  const when = asOf();
  if (!when) return raw("");
  return supported
    ? html`<p class="badge" role="status">As of ${fmtTime(when)}</p>`
    : html`<p class="badge" role="status">This page shows the current state (time travel is not available here)</p>`;
}

/** Quote a key for MLflow's filter and order language (backticks when it is not a plain identifier). */
export function quoteKey(key) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : "`" + key.replace(/`/g, "") + "`";
}

/** Render an error into an element as an alert the screen reader announces. */
export function showError(el, error) {
  el.innerHTML = html`<p class="error" role="alert">${error?.message || String(error)}</p>`.text;
}

/**
 * Guard a page's repeated requests against answers arriving out of order (a filter applied twice, a second click
 * before the first answer): `const fresh = latestOnly();` once, then in each call `const current = fresh();` and,
 * after every await, `if (!current()) return;` — true only while no later call has started.
 */
export function latestOnly() {
  let latest = 0;
  return () => {
    const mine = ++latest;
    return () => mine === latest;
  };
}
