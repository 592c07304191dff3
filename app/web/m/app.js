// The phone app: start-up, the screens' router, the header and tabs, sign-in and the outbox.
import {
  add, api, fill, categories, categoryName, field, forgetImages, formatBytes, formatTime, h, hooks, lang, orgUnits,
  session, setLang, store, t,
} from "./core.js";
import * as outbox from "./outbox.js";
import { reportView, resetDraft } from "./report.js";
import { issueView, reviewView, tasksView } from "./issues.js";

const main = document.getElementById("main");
const top = document.getElementById("top");
const tabs = document.getElementById("tabs");
let cleanup = null;

const ROUTES = {
  report: reportView,
  tasks: tasksView,
  review: reviewView,
  issue: issueView,
  outbox: outboxView,
};

const role = () => session.user && session.user.role;
const fieldRole = () => role() === "worker" || role() === "supervisor";

function route() {
  const [name, arg] = location.hash.replace(/^#\/?/, "").split("/");
  if (!session.token) return { name: "login" };
  if (!fieldRole()) return { name: "role" };
  if (name === "review" && role() !== "supervisor") return { name: "report" };
  return ROUTES[name] ? { name, arg } : { name: "report" };
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  const { name, arg } = route();
  renderTop();
  renderTabs(name);
  // A fresh container per screen: a slow answer for the previous screen lands in a detached
  // element instead of over the new one.
  const root = h("div", { class: "view" });
  fill(main, root);
  main.dataset.view = name;
  if (name === "login") loginView(root);
  else if (name === "role") add(root, h("p", { class: "card" }, t("notForRole", { role: role() }), role() === "auditor" ? [" ", h("a", { href: "/audit", text: "打开审计查证页 /audit" })] : null));
  else cleanup = ROUTES[name](root, arg) || null;
  window.scrollTo(0, 0);
}

function renderTop() {
  fill(
    top,
    h("h1", { text: t("app") }),
    h("button", {
      type: "button",
      class: "ghost",
      lang: lang === "en" ? "zh-CN" : "en",
      "aria-label": t("switchLangLabel"),
      text: t("switchLang"),
      onclick: () => {
        setLang(lang === "en" ? "zh" : "en");
        render();
      },
    }),
    session.token ? h("button", { type: "button", class: "ghost", "aria-label": t("signOutLabel"), text: t("signOut"), onclick: signOut }) : null,
  );
  document.title = t("app");
}

let badgeCount = 0;
function renderTabs(active) {
  if (!session.token || !fieldRole()) {
    fill(tabs);
    tabs.hidden = true;
    return;
  }
  tabs.hidden = false;
  tabs.setAttribute("aria-label", t("navigation"));
  const work = role() === "supervisor" ? "review" : "tasks";
  const current = active === "issue" ? work : active;
  const tab = (name, label, extra = null) =>
    h("a", { href: `#/${name}`, class: "tab", "aria-current": name === current ? "page" : null }, h("span", { text: label }), extra);
  fill(
    tabs,
    tab("report", t("tabReport")),
    tab(work, t(role() === "supervisor" ? "tabReview" : "tabTasks")),
    tab("outbox", t("tabOutbox"), h("span", { class: "badge", id: "outbox-badge", hidden: !badgeCount, text: String(badgeCount), "aria-label": t("outboxCount", { n: badgeCount }) })),
  );
}

async function updateBadge() {
  const items = await outbox.items();
  badgeCount = items.filter((i) => i.state !== "done").length;
  const badge = document.getElementById("outbox-badge");
  if (badge) {
    badge.hidden = !badgeCount;
    badge.textContent = String(badgeCount);
    badge.setAttribute("aria-label", t("outboxCount", { n: badgeCount }));
  }
}

// --- Signing in and out ----------------------------------------------------------------------
function loginView(root) {
  const username = h("input", { name: "username", autocomplete: "username", autocapitalize: "none", spellcheck: false, required: true, value: store.get("lastUser", "") });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const button = h("button", { type: "submit", class: "primary big", text: t("signIn") });
  const form = h(
    "form",
    { class: "card login", onsubmit: (e) => signIn(e, username, password, button, error) },
    h("h2", { text: t("signInTitle") }),
    session.expired ? h("p", { class: "notice", role: "status", text: t("expired") }) : null,
    field(t("username"), username),
    field(t("password"), password),
    error,
    button,
  );
  add(root, form);
  (username.value ? password : username).focus();
}

async function signIn(event, username, password, button, error) {
  event.preventDefault();
  button.disabled = true;
  button.textContent = t("signingIn");
  error.textContent = "";
  try {
    const body = await api("/api/v1/auth/login", { method: "POST", json: { username: username.value.trim(), password: password.value } });
    session.set(body.token, body.user);
    await Promise.all([categories({ refresh: true }), orgUnits({ refresh: true })]).catch(() => {});
    const home = role() === "supervisor" ? "#/review" : "#/report";
    if (location.hash === home) render();
    else location.hash = home; // hashchange renders
    outbox.kick();
  } catch (err) {
    error.textContent = err.status === 401 ? t("badLogin") : err.status === 0 ? t("needNetwork") : err.message;
    button.disabled = false;
    button.textContent = t("signIn");
  }
}

async function signOut() {
  const token = session.token;
  session.clear();
  session.expired = false;
  store.del("cache.tasks");
  store.del("cache.review");
  forgetImages();
  resetDraft();
  if ("caches" in window) caches.delete("gp-photos").catch(() => {});
  if (location.hash === "#/login") render();
  else location.hash = "#/login";
  if (token) fetch("/api/v1/auth/logout", { method: "POST", headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
}

hooks.unauthorized = () => {
  if (!session.token) return;
  session.clear();
  session.expired = true; // the outbox waits; the same user signing in sends it on
  render();
};

// --- The outbox screen -------------------------------------------------------------------------
function describe(item) {
  const s = item.summary || {};
  if (item.kind === "report") {
    const category = (store.get("categories", []) || []).find((c) => c.code === (item.fields || {}).category);
    return `${t("kindReport")} · ${category ? categoryName(category) : (item.fields || {}).category}`;
  }
  if (item.kind === "photos") return `${s.code} · ${s.kind === "after" ? t("afterPhotos") : t("kindPhotos")}`;
  return `${s.code} · ${t("act_" + item.action)}`;
}

function outboxView(root) {
  const list = h("ul", { class: "outbox", "aria-label": t("outboxTitle") });
  const header = h("div", { class: "outbox-head" });
  add(root, h("h2", { text: t("outboxTitle") }), header, list, h("a", { href: "#/report", class: "button secondary big", text: t("newReport") }));
  const urls = new Map();
  let signature = "";

  const draw = async () => {
    const all = await outbox.items();
    const sig = JSON.stringify(all.map((i) => [i.id, i.state, i.attempts, i.error && i.error.status, i.next_at, i.result]));
    if (sig + lang !== signature) {
      signature = sig + lang;
      const pending = all.filter((i) => i.state !== "done");
      const others = pending.filter((i) => session.user && i.owner !== session.user.username);
      fill(
        header,
        h("p", { class: "count", role: "status", text: pending.length ? t("outboxCount", { n: pending.length }) : t("outboxEmpty") }),
        navigator.onLine === false ? h("p", { class: "notice", text: t("offline") }) : null,
        others.length ? h("p", { class: "notice", text: t("wrongUserOutbox", { n: others.length, user: others[0].owner }) }) : null,
        all.some((i) => i.state === "done") ? h("button", { type: "button", class: "secondary", text: t("clearDone"), onclick: () => outbox.clearDone() }) : null,
      );
      fill(list, ...[...all].reverse().map((item) => outboxItem(item, all, urls)));
    }
    live(list);
  };
  const unsubscribe = outbox.subscribe(draw);
  const tick = setInterval(() => live(list), 1000);
  const onNet = () => ((signature = ""), draw());
  window.addEventListener("online", onNet);
  window.addEventListener("offline", onNet);
  draw();
  return () => {
    unsubscribe();
    clearInterval(tick);
    window.removeEventListener("online", onNet);
    window.removeEventListener("offline", onNet);
    for (const url of urls.values()) URL.revokeObjectURL(url);
  };
}

function stateText(item, all) {
  if (item.state === "done") return t("stateDone");
  if (item.state === "failed") return t("stateFailed");
  if (item.state === "sending") return t("stateSending");
  if (session.user && item.owner !== session.user.username) return t("stateWaitingUser", { user: item.owner });
  if (outbox.blocked(item, all)) return t("stateBlocked");
  return t("stateQueued");
}

function outboxItem(item, all, urls) {
  const what = describe(item);
  const files = item.files || [];
  if (files.length && !urls.has(item.id)) urls.set(item.id, URL.createObjectURL(files[0].blob));
  const bytes = files.reduce((n, f) => n + f.size, 0);
  const result = item.result || {};
  const doneText = item.kind === "report" ? t("reportDone", { code: result.code }) : item.kind === "photos" ? t("photosDone", { code: result.code }) : t("actionDone", { action: t("act_" + item.action) });
  const retryable = item.state === "failed" || (item.state === "queued" && item.next_at > Date.now());
  return h(
    "li",
    { class: `item ${item.state}`, "data-id": item.id, "data-state": item.state },
    urls.has(item.id) ? h("img", { class: "mini", src: urls.get(item.id), alt: "" }) : null,
    h(
      "div",
      { class: "item-body" },
      h("p", { class: "what", text: what }),
      h("p", { class: "when", text: formatTime(item.created_at) + (files.length ? " · " + t("photoCount", { n: files.length, size: formatBytes(bytes) }) : "") }),
      h("p", { class: `state ${item.state}`, text: stateText(item, all) }),
      item.state === "sending" ? h("progress", { max: 1, value: 0, "aria-label": t("stateSending") }) : null,
      item.state === "sending" ? h("p", { class: "bytes", "data-progress": item.id }) : null,
      item.state === "queued" && item.next_at > Date.now() ? h("p", { class: "retry-at", "data-retry": String(item.next_at) }) : null,
      item.state === "done" ? h("p", { class: "result", text: doneText }) : null,
      item.error && item.state !== "done" ? h("p", { class: item.state === "failed" ? "reason error" : "reason", text: item.state === "failed" ? outbox.errorText(item.error) : t("lastError", { reason: outbox.errorText(item.error) }) }) : null,
      h(
        "div",
        { class: "row" },
        retryable ? h("button", { type: "button", class: "secondary", text: t("retryNow"), onclick: () => outbox.retry(item.id) }) : null,
        h("button", { type: "button", class: "danger", text: t("remove"), "aria-label": t("removeItem", { what }), onclick: () => outbox.remove(item.id) }),
      ),
    ),
  );
}

/** Update bytes-sent and retry countdowns in place, so buttons never move under a finger. */
function live(list) {
  for (const el of list.querySelectorAll("[data-progress]")) {
    const p = outbox.progress.get(el.dataset.progress);
    const bar = el.previousElementSibling;
    if (p && p.total) {
      el.textContent = t("progress", { sent: formatBytes(p.sent), total: formatBytes(p.total) });
      bar.max = p.total;
      bar.value = p.sent;
    }
  }
  for (const el of list.querySelectorAll("[data-retry]")) {
    const seconds = Math.max(0, Math.round((Number(el.dataset.retry) - Date.now()) / 1000));
    el.textContent = t("stateRetry", { when: t("inSeconds", { n: seconds }) });
  }
}

// --- Start -----------------------------------------------------------------------------------
setLang(lang);
window.addEventListener("hashchange", render);
outbox.subscribe(updateBadge);
render();
outbox.start();

if (session.token) {
  // Check the token and refresh the vocabularies in the background; the screen is already up.
  api("/api/v1/auth/me")
    .then((user) => session.set(session.token, user))
    .catch(() => {});
  categories({ refresh: true }).catch(() => {});
  orgUnits({ refresh: true }).catch(() => {});
}

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/m/sw.js", { scope: "/m/" }).catch(() => {});
}
