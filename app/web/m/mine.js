// 我的上报: the reports this user made, each with its status, office and deadline, kept up to
// date from the list's change feed (the cursor of the last answer: only what changed since).
import { fill, h, orgUnits, session, store, t } from "./core.js";
import { fetchPages, heading, issueCard, listStatus, lists, loadFailed, withCategories } from "./issues.js";

const POLL_MS = 30000;
const QUERY = "reported_by=me";

/** The cached list and its cursor, this user's only (the cache is dropped on sign-out). */
function cached() {
  const c = store.get("cache.mine");
  return c && c.owner === session.user.username ? c : null;
}

/** Merge what changed into the kept list; returns the ids that changed (not on a first load). */
async function refresh() {
  const before = cached();
  const { items, cursor } = await fetchPages(QUERY, before ? before.cursor : null);
  const byId = new Map((before ? before.items : []).map((i) => [i.id, i]));
  const changed = before ? items.filter((i) => (byId.get(i.id) || {}).version !== i.version).map((i) => i.id) : [];
  for (const item of items) byId.set(item.id, item);
  // Mine only, also where the server does not know reported_by yet and sends all it lets me see.
  const mine = [...byId.values()].filter((i) => i.reported_by === session.user.username);
  const seen = new Set([...(before ? before.changed || [] : []), ...changed]);
  store.set("cache.mine", { owner: session.user.username, at: Date.now(), cursor, items: mine, changed: [...seen] });
  return changed;
}

export function mineView(root, arg) {
  lists.last = "#/mine";
  const focus = Number(arg) || null;
  let timer = 0;
  let stopped = false;
  let units = new Map();
  const draw = (offline = null) => {
    const c = cached() || { items: [], changed: [] };
    const rows = [...c.items].sort((a, b) => b.reported_at.localeCompare(a.reported_at));
    const changed = new Set(c.changed || []);
    const line = (i) => [t("unit", { unit: (units.get(i.org_unit) || {}).name || i.org_unit }), i.deadline ? `${t("deadline")} ${new Date(i.deadline).toLocaleDateString()}` : null].filter(Boolean).join(" · ");
    const list = h("ul", { class: "tasks", "aria-label": t("mineTitle") }, rows.map((i) => issueCard(i, { line: line(i), changed: changed.has(i.id) })));
    fill(root, heading(t("mineTitle"), () => load()), offline ? listStatus({ at: offline }) : null, rows.length ? list : h("p", { class: "muted", text: t("mineEmpty") }));
    const target = focus && root.querySelector(`[data-issue="${focus}"]`);
    if (target) {
      target.classList.add("focus");
      target.scrollIntoView({ block: "center" });
    }
  };
  const load = async () => {
    if (!cached()) fill(root, heading(t("mineTitle"), () => load()), h("p", { class: "muted", role: "status", text: t("loading") }));
    await withCategories();
    units = new Map((await orgUnits().catch(() => [])).map((u) => [u.code, u]));
    try {
      await refresh();
      draw();
    } catch (err) {
      const c = cached();
      if (err.status === 0 && c) draw(c.at);
      else if (!c) loadFailed(root, err, () => load());
    }
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(() => load(), POLL_MS);
  };
  const onVisible = () => document.visibilityState === "visible" && load(true);
  document.addEventListener("visibilitychange", onVisible);
  if (cached()) draw();
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
    // Seen: the 有更新 marks are cleared once the user has looked at the list.
    const c = cached();
    if (c) store.set("cache.mine", { ...c, changed: [] });
  };
}
