// Comments on a run, a registered model or a model version (GET/POST/DELETE /api/v1/comments), with @mentions.
// "As of" a past time they come from the `comments` view read at that time, and posting is for the present.
import { api, asOf, esc, fmtTime, html, latestOnly, raw, records, showError, sql } from "../lib.js";

const AUTHOR_KEY = "lakeops.author";

/** The body as HTML with each @mention highlighted (everything else escaped). */
export function withMentions(body) {
  return esc(body).replace(/(^|[^\w@])@([A-Za-z0-9][A-Za-z0-9._-]{0,63})/g, (m, before, name) => `${before}<span class="mention">@${name}</span>`);
}

/** A comments section for `target` ("run:<id>", "model:<name>", "version:<name>/<n>") inside `el`. */
export async function renderComments(el, target) {
  const when = asOf();
  if (when) return renderCommentsAsOf(el, target, when);
  el.innerHTML = html`
    <h2 id="h-comments">Comments</h2>
    <ul class="comments" id="comment-list" aria-labelledby="h-comments"><li class="muted">Loading…</li></ul>
    <form id="comment-form" class="panel">
      <label for="comment-author">Your name</label>
      <input id="comment-author" required maxlength="128" value="${localStorage.getItem(AUTHOR_KEY) || ""}" autocomplete="username">
      <label for="comment-body" class="block">Comment <span class="muted">(@name mentions someone)</span></label>
      <textarea id="comment-body" required maxlength="10000"></textarea>
      <button type="submit" class="primary">Post comment</button>
      <span id="comment-error"></span>
    </form>`.text;
  const list = el.querySelector("#comment-list");
  const form = el.querySelector("#comment-form");
  const errorBox = el.querySelector("#comment-error");

  const fresh = latestOnly(); // a post (or delete) reloads the list while the first load may still run

  async function load() {
    const current = fresh();
    try {
      const { comments } = await api("/api/v1/comments", { query: { target } });
      if (!current()) return;
      list.innerHTML = comments.length
        ? comments
            .map(
              (c) => html`<li data-comment-id="${c.comment_id}"><strong>${c.author}</strong>
                <span class="muted">${fmtTime(c.created_at)}</span>
                <button type="button" class="link delete-comment" aria-label="Delete comment by ${c.author}">Delete</button>
                <div class="comment-body">${raw(withMentions(c.body))}</div></li>`.text,
            )
            .join("")
        : `<li class="muted">No comments yet.</li>`;
    } catch (error) {
      if (current()) showError(list, error);
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const author = form.querySelector("#comment-author").value.trim();
    const body = form.querySelector("#comment-body").value;
    errorBox.innerHTML = "";
    try {
      await api("/api/v1/comments", { method: "POST", body: { target, body, author } });
      localStorage.setItem(AUTHOR_KEY, author);
      form.querySelector("#comment-body").value = "";
      await load();
    } catch (error) {
      showError(errorBox, error);
    }
  });
  list.addEventListener("click", async (e) => {
    const button = e.target.closest(".delete-comment");
    if (!button) return;
    const id = button.closest("li").dataset.commentId;
    try {
      await api(`/api/v1/comments/${encodeURIComponent(id)}`, { method: "DELETE", query: { target } });
      await load();
    } catch (error) {
      showError(errorBox, error);
    }
  });
  await load();
}

async function renderCommentsAsOf(el, target, when) {
  const cut = target.indexOf(":");
  el.innerHTML = html`<h2 id="h-comments">Comments <span class="muted">as of ${fmtTime(when)}</span></h2>
    <ul class="comments" id="comment-list" aria-labelledby="h-comments"><li class="muted">Loading…</li></ul>
    <p class="muted">Posting is for the present: press <em>Now</em> first.</p>`.text;
  const list = el.querySelector("#comment-list");
  try {
    const comments = records(
      await sql("SELECT comment_id, author, body, created_at FROM comments WHERE target_kind = ? AND target_name = ? ORDER BY created_at", {
        params: [target.slice(0, cut), target.slice(cut + 1)],
        asOf: when,
      }),
    );
    list.innerHTML = comments.length
      ? comments
          .map(
            (c) => html`<li data-comment-id="${c.comment_id}"><strong>${c.author}</strong> <span class="muted">${fmtTime(c.created_at)}</span>
              <div class="comment-body">${raw(withMentions(c.body))}</div></li>`.text,
          )
          .join("")
      : `<li class="muted">No comments then.</li>`;
  } catch (error) {
    showError(list, error);
  }
}
