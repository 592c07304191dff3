// 任务 (a unit's dispatched issues), 审核 (a supervisor's queues) and one issue with its actions.
import {
  add, api, fill, authImage, categories, categoryName, field, formatBytes, formatDuration, formatTime, h, lang, localInputValue,
  orgUnits, problemText, session, store, t, toast,
} from "./core.js";
import * as outbox from "./outbox.js";
import { distanceM, formatDistance, spotMap } from "./map.js";

/** The list an issue was opened from, where 返回 goes back to. */
export const lists = { last: null };

// --- Loading lists, with the last answer kept for offline use --------------------------------
/** Every page of a list (from `cursor`: only what changed since), with the cursor to go on. */
export async function fetchPages(query, cursor = null) {
  const items = [];
  for (let page = 0; page < 10; page++) {
    const body = await api(`/api/v1/issues?${query}&limit=200${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
    items.push(...body.items);
    cursor = body.next_cursor || cursor;
    if (!body.has_more) break;
  }
  return { items, cursor };
}

const fetchAll = async (query) => (await fetchPages(query)).items;

async function cachedList(key, load) {
  try {
    const items = await load();
    store.set("cache." + key, { at: Date.now(), items });
    return { items };
  } catch (err) {
    const cached = store.get("cache." + key);
    if (err.status === 0 && cached) return { items: cached.items, at: cached.at };
    throw err;
  }
}

function cachedIssue(id) {
  for (const key of ["cache.tasks", "cache.review", "cache.mine"]) {
    const found = ((store.get(key) || {}).items || []).find((i) => i.id === id);
    if (found) return found;
  }
  return null;
}

// --- Small pieces -------------------------------------------------------------------------------
let categoryRows = store.get("categories", []) || [];
const category = (code) => categoryRows.find((c) => c.code === code);
const categoryLabel = (code) => (category(code) ? categoryName(category(code)) : code);

function countdown(issue) {
  if (!issue.deadline) return { text: t("noDeadline"), overdue: false };
  const ms = new Date(issue.deadline).getTime() - Date.now();
  return ms < 0 ? { text: t("overdueBy", { d: formatDuration(ms) }), overdue: true } : { text: t("dueIn", { d: formatDuration(ms) }), overdue: false };
}

export function deadlineChip(issue) {
  const c = countdown(issue);
  return h("span", { class: `chip ${c.overdue ? "overdue" : "due"}`, "data-deadline": issue.deadline || "", text: c.text });
}

export function refreshCountdowns(root) {
  for (const el of root.querySelectorAll("[data-deadline]")) {
    if (!el.dataset.deadline) continue;
    const c = countdown({ deadline: el.dataset.deadline });
    el.textContent = c.text;
    el.classList.toggle("overdue", c.overdue);
  }
}

export const statusChip = (issue) => h("span", { class: `chip status-${issue.status}`, text: t("status_" + issue.status) });
const photosOf = (issue, kind) => issue.photos.filter((p) => p.kind === kind);

/** After-photos of the current round, as the server counts them (`dispatch_round`). */
function currentAfter(issue) {
  return photosOf(issue, "after").filter((p) => p.dispatch_round === issue.dispatch_round);
}

function thumb(photo, alt) {
  return h("button", { type: "button", class: "thumb-button", "aria-label": t("enlarge", { what: alt }), onclick: () => lightbox(photo, alt) }, authImage(photo.urls.thumb, alt));
}

function lightbox(photo, alt) {
  const close = () => {
    overlay.remove();
    document.removeEventListener("keydown", onKey);
  };
  const onKey = (e) => e.key === "Escape" && close();
  const overlay = h(
    "div",
    { class: "lightbox", role: "dialog", "aria-modal": "true", "aria-label": alt, onclick: (e) => e.target === overlay && close() },
    authImage(photo.urls.large, alt, "large"),
    h("button", { type: "button", class: "primary big", text: t("close"), onclick: close }),
  );
  document.addEventListener("keydown", onKey);
  add(document.body, overlay);
  overlay.querySelector("button").focus();
}

/** A list's title with a big refresh button beside it. */
export function heading(title, reload) {
  return h("div", { class: "list-head" }, h("h2", { text: title }), h("button", { type: "button", class: "secondary", text: t("refresh"), onclick: reload }));
}

export function listStatus(result) {
  return result.at ? h("p", { class: "notice", role: "status", text: t("cachedAt", { time: formatTime(result.at) }) }) : null;
}

export function loadFailed(root, err, again) {
  add(root, 
    h("p", { class: "error", role: "alert", text: t("loadFailed", { reason: reason(err) }) }),
    h("button", { type: "button", class: "secondary big", text: t("retry"), onclick: again }),
  );
}

export function issueCard(issue, { compare = false, line = null, changed = false, where = false } = {}) {
  const before = photosOf(issue, "before")[0];
  const after = currentAfter(issue).at(-1);
  const title = `${issue.code} · ${categoryLabel(issue.category)}`;
  return h(
    "li",
    { class: `task ${issue.overdue ? "overdue" : ""}`, "data-issue": String(issue.id) },
    h(
      "a",
      { href: `#/issue/${issue.id}`, class: "task-link" },
      h(
        "div",
        { class: compare && after ? "pair" : "single" },
        before ? authImage(before.urls.thumb, t("photoAlt", { kind: t("before"), n: 1 })) : null,
        compare && after ? authImage(after.urls.thumb, t("photoAlt", { kind: t("after"), n: 1 })) : null,
      ),
      h(
        "div",
        { class: "task-body" },
        h("p", { class: "title", text: title }),
        h(
          "p",
          { class: "meta" },
          statusChip(issue),
          issue.status === "dispatched" ? deadlineChip(issue) : null,
          issue.status === "rectified" && seriousNotes(issue).length ? h("span", { class: "chip overdue flag-chip", text: t("flaggedChip") }) : null,
          changed ? h("span", { class: "chip changed", text: t("changed") }) : null,
        ),
        line ? h("p", { class: "line", text: line }) : null,
        where && (issue.address || issue.address_hint) ? h("p", { class: "line address", text: issue.address || issue.address_hint }) : null,
        where ? h("p", { class: "line distance", "data-at": `${issue.lat},${issue.lon}` }) : null,
        issue.description ? h("p", { class: "desc", text: issue.description }) : null,
      ),
    ),
    where ? navLinks(issue) : null,
  );
}

export async function withCategories() {
  categoryRows = await categories().catch(() => categoryRows);
}

// --- 任务 ----------------------------------------------------------------------------------------
export function tasksView(root) {
  lists.last = "#/tasks";
  let timer = 0;
  const load = async () => {
    fill(root, heading(t("tasksTitle"), load), h("p", { class: "muted", role: "status", text: t("loading") }));
    await withCategories();
    let result;
    try {
      const unit = encodeURIComponent(session.user.org_unit);
      result = await cachedList("tasks", () => fetchAll(`status=dispatched&org_unit=${unit}`));
    } catch (err) {
      fill(root, heading(t("tasksTitle"), load));
      return loadFailed(root, err, load);
    }
    const items = result.items
      .filter((i) => i.status === "dispatched")
      .sort((a, b) => Number(b.overdue) - Number(a.overdue) || (a.deadline || "9").localeCompare(b.deadline || "9"));
    const list = h("ul", { class: "tasks", "aria-label": t("tasksTitle") }, items.map((i) => issueCard(i, { where: true })));
    fill(root, heading(t("tasksTitle"), load), listStatus(result), items.length ? list : h("p", { class: "muted" }, t("tasksEmpty"), " ", h("a", { href: "#/mine", text: t("seeMineList") })));
    distances(root);
    clearInterval(timer);
    timer = setInterval(() => refreshCountdowns(root), 30000);
  };
  load();
  return () => clearInterval(timer);
}

// --- 审核 ----------------------------------------------------------------------------------------
// The queues scale to a few hundred issues: the list API filters (q, org_unit, overdue) and
// sorts (sort=deadline); each queue draws its first PAGE cards and more on request.
const PAGE = 30;
const filters = { q: "", org_unit: "", overdue: false, sort: "reported", ...(store.get("reviewFilters") || {}) };

/** On sign-out: the next user starts with no filters. */
export function resetFilters() {
  Object.assign(filters, { q: "", org_unit: "", overdue: false, sort: "reported" });
  store.del("reviewFilters");
}

function filterQuery(extra) {
  const p = new URLSearchParams(extra);
  if (filters.q.trim()) p.set("q", filters.q.trim());
  if (filters.org_unit) p.set("org_unit", filters.org_unit);
  if (filters.sort === "deadline") p.set("sort", "deadline");
  return p.toString();
}

const byDeadline = (a, b) => (a.deadline || "9").localeCompare(b.deadline || "9") || a.reported_at.localeCompare(b.reported_at);
const oldest = (a, b) => a.reported_at.localeCompare(b.reported_at);

function filterBar(reload) {
  let timer = 0;
  const changed = () => {
    store.set("reviewFilters", filters);
    clearTimeout(timer);
    reload();
  };
  const q = h("input", { type: "search", enterkeyhint: "search", value: filters.q, placeholder: t("searchHint"), oninput: (e) => ((filters.q = e.target.value), clearTimeout(timer), (timer = setTimeout(changed, 500))) });
  const unit = h("select", { onchange: (e) => ((filters.org_unit = e.target.value), changed()) }, h("option", { value: "", text: t("allUnits") }));
  unitsUnder(session.user.org_unit).then((units) => add(unit, units.filter((u) => u.kind !== "grid").map((u) => h("option", { value: u.code, selected: u.code === filters.org_unit, text: u.name }))));
  const overdue = h("input", { type: "checkbox", id: "only-overdue", checked: filters.overdue, onchange: (e) => ((filters.overdue = e.target.checked), changed()) });
  const sort = h(
    "select",
    { onchange: (e) => ((filters.sort = e.target.value), changed()) },
    ["reported", "deadline"].map((v) => h("option", { value: v, selected: filters.sort === v, text: t("sort_" + v) })),
  );
  return h(
    "form",
    { class: "filters card", role: "search", onsubmit: (e) => (e.preventDefault(), changed()) },
    field(t("search"), q),
    h("div", { class: "row" }, field(t("unitFilter"), unit), field(t("sortBy"), sort)),
    h("label", { class: "check", for: overdue.id }, overdue, h("span", { text: t("onlyOverdue") })),
  );
}

export function reviewView(root) {
  lists.last = "#/review";
  const bar = filterBar(() => load());
  const body = h("div", { class: "queues" });
  let generation = 0;
  const load = async () => {
    const mine = ++generation; // a slow answer for an older filter never overwrites a newer one
    fill(body, h("p", { class: "muted", role: "status", text: t("loading") }));
    await withCategories();
    let result;
    try {
      result = await cachedList("review", async () => {
        if (filters.overdue) return fetchAll(filterQuery({ status: "dispatched", overdue: "true" }));
        const lists = await Promise.all([fetchAll(filterQuery([["status", "reported"], ["status", "accepted"]])), fetchAll(filterQuery({ status: "rectified" })), fetchAll(filterQuery({ status: "dispatched" }))]);
        return lists.flat();
      });
    } catch (err) {
      if (mine !== generation) return;
      fill(body);
      return loadFailed(body, err, load);
    }
    if (mine !== generation) return;
    const can = (i, ...actions) => actions.some((a) => i.allowed_actions.includes(a));
    const order = filters.sort === "deadline" ? byDeadline : oldest;
    const rows = (test) => result.items.filter(test).sort(order);
    const verify = rows((i) => can(i, "verify_pass", "verify_fail"));
    const intake = rows((i) => can(i, "accept", "dispatch"));
    const asked = rows((i) => i.status === "dispatched" && i.extension_request);
    const working = rows((i) => i.status === "dispatched" && !i.extension_request && (!filters.overdue || i.overdue));
    fill(
      body,
      listStatus(result),
      asked.length ? queueSection("queue-extension", t("queueExtension"), asked, false) : null,
      filters.overdue ? null : queueSection("queue-verify", t("queueVerify"), verify, true),
      filters.overdue ? null : queueSection("queue-intake", t("queueIntake"), intake, false),
      queueSection("queue-working", t(filters.overdue ? "queueOverdue" : "queueWorking"), working, false),
    );
  };
  fill(root, heading(t("reviewTitle"), () => load()), bar, body);
  load();
}

/** One queue: its count, its first PAGE cards and a button for the next PAGE. */
function queueSection(id, title, rows, compare) {
  const list = h("ul", { class: "tasks" });
  const more = h("button", { type: "button", class: "secondary big more" });
  let shown = 0;
  const next = () => {
    add(list, rows.slice(shown, shown + PAGE).map((i) => issueCard(i, { compare })));
    shown = Math.min(rows.length, shown + PAGE);
    more.hidden = shown >= rows.length;
    more.textContent = t("showMore", { n: rows.length - shown });
  };
  more.onclick = next;
  next();
  return h("section", { class: "queue", "aria-labelledby": id }, h("h3", { id, text: `${title} (${rows.length})` }), rows.length ? [list, more] : h("p", { class: "muted", text: t("queueEmpty") }));
}

// --- One issue ---------------------------------------------------------------------------------
export function issueView(root, arg) {
  const id = Number(arg);
  const back = lists.last || (session.user.role === "supervisor" ? "#/review" : "#/tasks");
  let alive = true;
  const load = async (notice = null) => {
    await withCategories();
    let issue;
    try {
      // One issue's ETag is its version in either language, and Chromium revalidates a copy whose
      // Vary (Accept-Language) does not match: a 304 would hand back the other language's flag
      // sentences. The English answer therefore has its own URL (the server ignores `lang`).
      issue = await api(`/api/v1/issues/${id}${lang === "en" ? "?lang=en" : ""}`);
    } catch (err) {
      issue = err.status === 0 ? cachedIssue(id) : null;
      if (!issue) {
        fill(root, h("a", { href: back, class: "back", text: "‹ " + t("back") }));
        return loadFailed(root, err, () => load());
      }
    }
    if (alive) drawIssue(root, issue, back, load, notice);
  };
  load();
  return () => (alive = false);
}

function drawIssue(root, issue, back, reload, notice) {
  const c = category(issue.category);
  const facts = [
    [t("reportedAt", { time: formatTime(issue.reported_at) }), t("reportedBy", { who: issue.reported_by })].join(" · "),
    t("unit", { unit: issue.org_unit }),
    issue.quantity !== null ? `${t("quantity")} ${issue.quantity} ${issue.quantity_unit}` : null,
    issue.rework_count ? t("rework", { n: issue.rework_count }) : null,
    issue.rectified_quantity !== null && issue.rectified_quantity !== undefined ? `${t("rectifiedQuantity")} ${issue.rectified_quantity} ${issue.quantity_unit}` : null,
  ].filter(Boolean);
  fill(
    root,
    h("a", { href: back, class: "back", text: "‹ " + t("back") }),
    h("h2", { class: "issue-title", text: `${issue.code} · ${c ? categoryName(c) : issue.category}` }),
    notice ? h("p", { class: "notice", role: "status", text: notice }) : null,
    h("p", { class: "meta" }, statusChip(issue), issue.status === "dispatched" ? deadlineChip(issue) : null),
    issue.description ? h("p", { class: "desc big-text", text: issue.description }) : null,
    h("ul", { class: "facts" }, facts.map((f) => h("li", { text: f }))),
    extensionNotice(issue),
    returnNotice(issue),
    wherePanel(issue),
    photoPanel(issue),
    actionsPanel(issue, back, reload),
  );
}

function photoPanel(issue) {
  const before = photosOf(issue, "before");
  const after = currentAfter(issue);
  const column = (title, photos, kind) =>
    h("div", { class: "column" }, h("h3", { text: title }), photos.map((p, i) => [thumb(p, t("photoAlt", { kind, n: i + 1 })), flagList(p.flag_notes)]));
  if (!after.length) return h("section", { class: "photos" }, column(t("before"), before, t("before")));
  return h("section", { class: "photos compare", "aria-label": `${t("before")} / ${t("after")}` }, column(t("before"), before, t("before")), column(t("after"), after, t("after")));
}

// --- Where it is and how to get there ---------------------------------------------------------
/** The address (or the nearest known one), the distance from the phone, a map, 导航 links. */
function wherePanel(issue) {
  const address = issue.address || issue.address_hint;
  const box = h("section", { class: "where", "aria-label": t("where") }, address ? h("p", { class: "address", text: address }) : null, spotMap(issue, null), navLinks(issue));
  here().then((pos) => pos && box.isConnected && box.children[address ? 1 : 0].replaceWith(spotMap(issue, pos)));
  return box;
}

function navLinks(issue) {
  const nav = issue.navigation;
  if (!nav) return null;
  const link = (href, name) => h("a", { href, class: "button secondary", target: "_blank", rel: "noopener noreferrer", "data-nav": name, text: t("navWith", { app: t("app_" + name) }) });
  return h("div", { class: "nav-links" }, link(nav.amap, "amap"), link(nav.baidu, "baidu"));
}

let fix = null; // one position per minute for the lists and the issue screen
function here() {
  if (!fix || Date.now() - fix.at > 60000) fix = { at: Date.now(), promise: onePosition() };
  return fix.promise;
}

/** A card's distance from the phone, filled in once the phone knows where it is. */
function distances(root) {
  here().then((pos) => {
    if (!pos) return;
    for (const el of root.querySelectorAll("[data-at]")) {
      const [lat, lon] = el.dataset.at.split(",").map(Number);
      el.textContent = t("distanceFromYou", { d: formatDistance(distanceM(pos.latitude, pos.longitude, lat, lon)) });
    }
  });
}

// --- Flags as sentences, where a person decides ------------------------------------------------
// The flags that make 验收通过 need a note (app/services/checks.py NEEDS_OVERRIDE_NOTE); the
// server has the last word (422 override_note_required), the phone asks before it is refused.
const NEEDS_NOTE = ["far_from_issue", "taken_before_report", "after_matches_before", "similar_to_other_issue", "duplicate_photo"];

function flagList(notes) {
  return notes && notes.length ? h("ul", { class: "flags" }, notes.map((n) => h("li", { "data-flag": n.code, text: n.text }))) : null;
}

const seriousNotes = (issue) => currentAfter(issue).flatMap((p) => (p.flag_notes || []).filter((n) => NEEDS_NOTE.includes(n.code)));

// --- 延期申请 -------------------------------------------------------------------------------------
function extensionNotice(issue) {
  const x = issue.extension_request;
  if (!x) return null;
  return h("div", { class: "notice extension", role: "note" }, h("b", { text: t("extensionAsked", { time: formatTime(x.deadline) }) }), h("p", { text: `${x.note} — ${x.requested_by}, ${formatTime(x.requested_at)}` }));
}

/** A returned issue (退回, "not ours") says why, from its audit trail, to the supervisor. */
function returnNotice(issue) {
  if (issue.status !== "accepted" || session.user.role !== "supervisor") return null;
  const box = h("div", { class: "notice", role: "note", hidden: true });
  api(`/api/v1/issues/${issue.id}/events`)
    .then((events) => {
      const last = events.filter((e) => e.action === "return").at(-1);
      if (!last) return;
      fill(box, h("b", { text: t("returnedBy", { who: last.actor, time: formatTime(last.at) }) }), h("p", { text: last.note || "" }));
      box.hidden = false;
    })
    .catch(() => {});
  return box;
}

function decidePanel(allowed, run) {
  const status = h("p", { class: "error", role: "alert" });
  const note = h("textarea", { rows: 2, maxLength: 2000 });
  const refuse = () => {
    if (!note.value.trim()) return (status.textContent = t("needNote"), note.focus());
    run("refuse_extension", { note: note.value.trim() }, status);
  };
  const approve = () => run("approve_extension", note.value.trim() ? { note: note.value.trim() } : {}, status);
  return h(
    "section",
    { class: "action card" },
    h("h3", { text: t("queueExtension") }),
    field(t("noteFor", { action: t("act_refuse_extension") }), note),
    status,
    h("div", { class: "row" }, allowed.has("approve_extension") ? actionButton("approve_extension", approve, "good") : null, allowed.has("refuse_extension") ? actionButton("refuse_extension", refuse, "danger") : null),
  );
}

// --- Actions: only those the server's allowed_actions offer ------------------------------------
function actionsPanel(issue, back, reload) {
  const allowed = new Set(issue.allowed_actions);
  const run = (action, body, status, onError) => transition(issue, action, body, status, back, reload, onError);
  const panels = [];
  if (allowed.has("submit_rectification")) panels.push(rectifyPanel(issue));
  if (allowed.has("verify_pass") || allowed.has("verify_fail")) panels.push(verifyPanel(issue, allowed, run));
  if (allowed.has("approve_extension") || allowed.has("refuse_extension")) panels.push(decidePanel(allowed, run));
  if (allowed.has("request_extension")) panels.push(deadlinePanel(issue, "request_extension", run, false));
  if (allowed.has("dispatch")) panels.push(deadlinePanel(issue, "dispatch", run, true));
  if (allowed.has("accept")) panels.push(notePanel("accept", run, false));
  if (allowed.has("mark_duplicate")) panels.push(duplicatePanel(issue, run));
  if (allowed.has("extend_deadline")) panels.push(deadlinePanel(issue, "extend_deadline", run, false));
  for (const action of ["return", "reject", "reopen"]) if (allowed.has(action)) panels.push(notePanel(action, run, true));
  // Before-photos: the server lets any worker add them; offered to the reporter and supervisors
  // (an office's worker is there to fix it, and takes after-photos).
  const mine = issue.reported_by === session.user.username;
  if (OPEN.includes(issue.status) && (mine || session.user.role === "supervisor")) panels.push(beforePanel(issue));
  return h("div", { class: "actions" }, panels);
}

/** Why a direct (not queued) request failed; nothing retries it by itself. */
const reason = (err) => (err.status ? problemText(err.status, err.problem || {}) : t("needNetwork"));

let busy = false; // one transition at a time: a double tap must not send it twice

async function transition(issue, action, body, status, back, reload, onError = () => {}) {
  if (busy) return;
  busy = true;
  status.textContent = "";
  try {
    await api(`/api/v1/issues/${issue.id}/transitions`, {
      method: "POST",
      json: { action, ...body },
      headers: { "If-Match": `"${issue.version}"` },
    });
    toast(t("actionSent", { action: t("act_" + action) }));
    store.del("cache.review");
    location.hash = back;
  } catch (err) {
    if (err.status === 412) return reload(t("versionConflict"));
    status.textContent = reason(err);
    onError(err);
  } finally {
    busy = false;
  }
}

function actionButton(action, onclick, cls = "primary") {
  return h("button", { type: "button", class: `${cls} big`, "data-action": action, text: t("act_" + action), onclick });
}

function notePanel(action, run, needsNote) {
  const status = h("p", { class: "error", role: "alert" });
  const note = needsNote ? h("textarea", { rows: 2, maxLength: 2000 }) : null;
  const go = () => {
    if (note && !note.value.trim()) {
      status.textContent = t("needNote");
      return note.focus();
    }
    run(action, note ? { note: note.value.trim() } : {}, status);
  };
  const cls = action === "reject" || action === "return" ? "secondary" : "primary";
  return h("section", { class: "action card" }, note ? field(t("noteFor", { action: t("act_" + action) }), note) : null, status, actionButton(action, go, cls));
}

function verifyPanel(issue, allowed, run) {
  const status = h("p", { class: "error", role: "alert" });
  const note = h("textarea", { rows: 2, maxLength: 2000 });
  const serious = seriousNotes(issue);
  const fail = () => {
    if (!note.value.trim()) {
      status.textContent = t("needNote");
      return note.focus();
    }
    run("verify_fail", { note: note.value.trim() }, status);
  };
  const pass = () => {
    if (serious.length && !note.value.trim()) {
      status.textContent = t("needOverrideNote");
      return note.focus();
    }
    run("verify_pass", note.value.trim() ? { note: note.value.trim() } : {}, status, (err) => err.problem && err.problem.code === "override_note_required" && note.focus());
  };
  return h(
    "section",
    { class: "action card verify" },
    serious.length ? h("div", { class: "notice flagged", role: "note" }, h("b", { text: t("flaggedTitle") }), flagList(serious)) : null,
    field(serious.length ? t("overrideNote") : t("note"), note),
    status,
    h("div", { class: "row" }, allowed.has("verify_pass") ? actionButton("verify_pass", pass, "good") : null, allowed.has("verify_fail") ? actionButton("verify_fail", fail, "danger") : null),
  );
}

/** Dispatch (office and deadline) or extend the deadline (deadline and note). */
function deadlinePanel(issue, action, run, withOffice) {
  const status = h("p", { class: "error", role: "alert" });
  const hours = (category(issue.category) || {}).deadline_hours || 72;
  const start = action !== "dispatch" && issue.deadline ? new Date(issue.deadline) : new Date();
  const deadline = h("input", { type: "datetime-local", required: true, value: localInputValue(new Date(start.getTime() + hours * 3600e3)) });
  const note = withOffice ? null : h("textarea", { rows: 2, maxLength: 2000 });
  const office = withOffice ? h("select", { required: true }) : null;
  if (office) fillOffices(office, issue);
  const go = () => {
    const when = new Date(deadline.value);
    if (Number.isNaN(when.getTime())) return (status.textContent = t("needDeadline"));
    if (note && !note.value.trim()) return (status.textContent = t("needNote"));
    const body = { deadline: when.toISOString() };
    if (office) body.org_unit = office.value;
    if (note) body.note = note.value.trim();
    run(action, body, status);
  };
  return h(
    "section",
    { class: "action card" },
    office ? field(t("office"), office) : null,
    field(t("deadline"), deadline),
    note ? field(t("noteFor", { action: t("act_" + action) }), note) : null,
    status,
    actionButton(action, go),
  );
}

/** A unit's code and those of the units above it. */
function chain(units, code) {
  const byCode = new Map(units.map((u) => [u.code, u]));
  const out = [];
  for (let u = byCode.get(code); u && !out.includes(u.code); u = byCode.get(u.parent_code)) out.push(u.code);
  return out;
}

/** The units at or below `mine`, offices first. */
async function unitsUnder(mine) {
  const units = await orgUnits().catch(() => []);
  const order = { office: 0, community: 1, district: 2, grid: 3 };
  return units.filter((u) => chain(units, u.code).includes(mine)).sort((a, b) => order[a.kind] - order[b.kind] || a.code.localeCompare(b.code));
}

/** Units the supervisor may dispatch to (their own and below), offices first; the one above
 *  the issue's current unit is chosen by default. */
async function fillOffices(select, issue) {
  const choices = (await unitsUnder(session.user.org_unit)).filter((u) => u.kind !== "grid");
  const issueChain = chain(await orgUnits().catch(() => []), issue.org_unit);
  const preferred = choices.find((u) => u.kind === "office" && issueChain.includes(u.code)) || choices.find((u) => u.kind === "office") || choices[0];
  fill(select, ...choices.map((u) => h("option", { value: u.code, selected: u === preferred, text: `${u.name} (${u.code})` })));
}

/** Chosen photos with previews and a camera button; `take()` hands them over and clears. */
function picker(id, label, takeText) {
  const chosen = [];
  const previews = h("ul", { class: "previews", "aria-label": t("chosenPhotos") });
  const urls = [];
  const draw = () => {
    for (const u of urls.splice(0)) URL.revokeObjectURL(u);
    fill(
      previews,
      ...chosen.map((f, i) => {
        const url = URL.createObjectURL(f);
        urls.push(url);
        return h(
          "li",
          { class: "preview" },
          h("img", { src: url, alt: t("newPhotoAlt", { n: i + 1 }) }),
          h("span", { class: "size", text: formatBytes(f.size) }),
          h("button", { type: "button", class: "remove", "aria-label": t("removePhoto", { n: i + 1 }), text: "×", onclick: () => (chosen.splice(i, 1), draw()) }),
        );
      }),
    );
  };
  const input = h("input", {
    type: "file", accept: "image/*", capture: "environment", multiple: true, class: "file", id, "aria-label": label,
    onchange: (e) => (chosen.push(...e.target.files), (e.target.value = ""), draw()),
  });
  const take = () => {
    const files = chosen.splice(0);
    draw();
    return files;
  };
  return { chosen, take, nodes: [input, h("label", { for: id, class: "button secondary big", text: takeText }), previews] };
}

/** Queue photos of one kind for the issue, located by one fix of the phone (else their EXIF). */
async function queuePhotos(issue, kind, files, here) {
  const pos = await here;
  const fields = pos ? { lat: pos.latitude, lon: pos.longitude, accuracy_m: Math.round(pos.accuracy * 10) / 10, location_source: "device" } : {};
  await outbox.addPhotos({ issue, kind, files, fields });
}

/** Worker: after-photos go through the outbox, then the submission waits behind them. */
function rectifyPanel(issue) {
  const photos = picker(`after-${issue.id}`, t("afterPhotos"), t("takePhoto"));
  const status = h("p", { class: "error", role: "alert" });
  const waiting = h("p", { class: "notice", role: "status", hidden: true });
  const here = onePosition();
  const pending = async () => (await outbox.items()).filter((i) => i.kind === "photos" && i.issue_id === issue.id && i.photo_kind === "after" && i.state !== "done");
  const showPending = async () => {
    const n = (await pending()).reduce((sum, i) => sum + i.files.length, 0);
    waiting.hidden = !n;
    waiting.textContent = t("afterWaiting", { n });
  };
  const send = async () => {
    if (!photos.chosen.length) return false;
    await queuePhotos(issue, "after", photos.take(), here);
    return true;
  };
  const upload = async () => {
    if (!(await send())) return (status.textContent = t("needAfter"));
    toast(t("afterQueued"));
    showPending();
  };
  const submit = async () => {
    const amount = quantity.value.trim();
    if (amount !== "" && !(Number(amount) >= 0 && Number.isFinite(Number(amount)))) return (status.textContent = t("badQuantity"), quantity.focus());
    await send();
    if (!currentAfter(issue).length && !(await pending()).length) return (status.textContent = t("needAfter"));
    const body = amount === "" ? {} : { quantity: Number(amount) };
    await outbox.addAction({ issue, action: "submit_rectification", body, target: "rectified" });
    toast(t("queuedAction", { action: t("act_submit_rectification") }));
    location.hash = "#/outbox";
  };
  // 整改数量, in the category's unit (e.g. 12000 m² of bare soil covered); optional.
  const quantity = h("input", { type: "number", inputmode: "decimal", min: "0", step: "any", value: issue.quantity ?? "", "aria-describedby": `qty-unit-${issue.id}` });
  showPending();
  return h(
    "section",
    { class: "action card rectify" },
    h("h3", { text: t("afterPhotos") }),
    h("p", { class: "muted", text: t("afterHint") }),
    photos.nodes,
    waiting,
    field(t("rectifiedQuantity"), quantity, h("span", { class: "unit", id: `qty-unit-${issue.id}`, text: issue.quantity_unit })),
    status,
    h("button", { type: "button", class: "secondary big", text: t("uploadAfter"), onclick: upload }),
    actionButton("submit_rectification", submit),
  );
}

/** More before-photos on an open issue (reporters: workers and supervisors), via the outbox. */
function beforePanel(issue) {
  const photos = picker(`before-${issue.id}`, t("moreBefore"), t("takePhoto"));
  const status = h("p", { class: "error", role: "alert" });
  const here = onePosition();
  const upload = async () => {
    if (!photos.chosen.length) return (status.textContent = t("needPhoto"));
    status.textContent = "";
    await queuePhotos(issue, "before", photos.take(), here);
    toast(t("beforeQueued"));
  };
  return h("section", { class: "action card more-before" }, h("h3", { text: t("moreBefore") }), photos.nodes, status, h("button", { type: "button", class: "secondary big", text: t("uploadBefore"), onclick: upload }));
}

/** Supervisor: 标记重复, the original chosen among the open issues near this one. */
function duplicatePanel(issue, run) {
  const status = h("p", { class: "error", role: "alert" });
  const list = h("div", { class: "candidates", role: "radiogroup", "aria-label": t("duplicateOf") }, h("p", { class: "muted", text: t("loading") }));
  const go = () => {
    const picked = list.querySelector("input:checked");
    if (!picked) return (status.textContent = t("pickDuplicate"));
    run("mark_duplicate", { duplicate_of: Number(picked.value) }, status);
  };
  api(`/api/v1/issues/nearby?lat=${issue.lat}&lon=${issue.lon}&radius_m=${DUPLICATE_RADIUS_M}`)
    .then((body) => {
      const others = body.items.filter((i) => i.id !== issue.id);
      fill(
        list,
        others.length ? null : h("p", { class: "muted", text: t("noNearby", { m: DUPLICATE_RADIUS_M }) }),
        others.map((o) =>
          h(
            "label",
            { class: "candidate" },
            h("input", { type: "radio", name: `dup-${issue.id}`, value: String(o.id) }),
            h("span", {}, h("b", { text: `${o.code} · ${categoryLabel(o.category)}` }), ` ${t("status_" + o.status)} · ${t("metresAway", { m: Math.round(o.distance_m) })}`, o.description ? h("small", { text: o.description }) : null),
          ),
        ),
      );
    })
    .catch((err) => fill(list, h("p", { class: "error", text: t("loadFailed", { reason: reason(err) }) })));
  return h("section", { class: "action card duplicate" }, h("h3", { text: t("act_mark_duplicate") }), list, status, actionButton("mark_duplicate", go, "secondary"));
}

const DUPLICATE_RADIUS_M = 500;
const OPEN = ["reported", "accepted", "dispatched", "rectified"];

/** One position fix for after-photos, or null (the photo's own EXIF is used then). */
function onePosition() {
  if (!("geolocation" in navigator)) return Promise.resolve(null);
  return new Promise((resolve) =>
    navigator.geolocation.getCurrentPosition((p) => resolve(p.coords), () => resolve(null), { enableHighAccuracy: true, maximumAge: 60000, timeout: 15000 }),
  );
}
