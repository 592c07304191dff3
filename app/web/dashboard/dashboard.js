// Gridproof 指挥部大屏 — polls the JSON API every few seconds with If-None-Match.
// No build step: a plain ES module. Query parameters: ?every=5 (seconds), ?map=auto|svg|leaflet,
// the period: ?period=this_week|last_week|this_month|last_month, ?week=2026-W49 or
// ?from=YYYY-MM-DD&to=YYYY-MM-DD (so that a wall screen can be pinned to 上周 by its URL).
// A wall screen can be signed in with /dashboard#token=… (the token is then kept in localStorage).
import { cellPaths, cellsBounds, leafletCells, within } from "./gridmap.js";

const API = "/api/v1";
const params = new URLSearchParams(location.search);
const EVERY_MS = Math.max(2, Number(params.get("every")) || 5) * 1000;
const MAP_MODE = params.get("map") || "auto";
const TOKEN_KEY = "gridproof.dashboard.token";
const ZONE = "Asia/Shanghai";
// Which statuses count as open: the server writes them in (read off its state table).
const OPEN = document.querySelector('meta[name="gridproof-open-statuses"]').content.split(",");
// The raster tiles under the grid, if the server is configured with some (off by default).
const TILE_SETTING = document.querySelector('meta[name="gridproof-map-tiles"]')?.content;
const TILE_LAYER = TILE_SETTING ? JSON.parse(TILE_SETTING) : null;
const MAP_CRS = TILE_LAYER?.crs ?? "wgs84";
const PERIOD = choosePeriod(params);
const STATUS = {
  reported: ["已上报", "#5b8ff9"],
  accepted: ["已受理", "#36cfc9"],
  dispatched: ["整改中", "#faad14"],
  rectified: ["待核查", "#9270ca"],
  closed: ["已结案", "#52c41a"],
  rejected: ["不予受理", "#8c8c8c"],
  duplicate: ["重复上报", "#8c8c8c"],
};
const OVERDUE_COLOR = "#ff4d4f";
// Served from here (app/web/vendor/README.md): no third-party script on the origin of the tokens.
const LEAFLET = "/vendor/leaflet-1.9.4/leaflet";
// The points and cells are asked for in the tiles' system (GCJ-02 for AutoNavi, Tencent); a
// configured tile host is allowed by the page's CSP (img-src), nothing else from outside.
const TILES = TILE_LAYER?.url ?? "";
const RECENT_DAYS = 14;
const PAIRS = 8;

const $ = (id) => document.getElementById(id);

class SignedOut extends Error {}

// --- The period -----------------------------------------------------------------------------

/** The period in the page's URL, as the API's query strings for /stats and /rankings. */
function choosePeriod(query) {
  const named = ["this_week", "last_week", "this_month", "last_month"];
  const name = query.get("period");
  if (named.includes(name)) {
    return { key: name, stats: `/stats?period=${name}`, ranking: `/rankings?period=${name}` };
  }
  const week = query.get("week");
  if (week) {
    const w = encodeURIComponent(week);
    return { key: "week", stats: `/stats?week=${w}`, ranking: `/rankings?week=${w}` };
  }
  const from = query.get("from");
  const to = query.get("to");
  if (from && to) {
    const range = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    return { key: "range", from, to, stats: `/stats?${range}`, ranking: `/rankings?period=week&date=${encodeURIComponent(to)}` };
  }
  return { key: "this_week", stats: "/stats", ranking: "/rankings?period=week" };
}

function setUpPeriods() {
  for (const link of document.querySelectorAll(".periods a[data-period]")) {
    const here = link.dataset.period === PERIOD.key;
    if (here) link.setAttribute("aria-current", "true");
    const query = new URLSearchParams(location.search);
    for (const name of ["period", "week", "from", "to"]) query.delete(name);
    query.set("period", link.dataset.period);
    link.href = `?${query}`;
  }
  const form = $("range");
  if (PERIOD.key === "range") {
    form.elements.from.value = PERIOD.from;
    form.elements.to.value = PERIOD.to;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams(location.search);
    for (const name of ["period", "week"]) query.delete(name);
    query.set("from", form.elements.from.value);
    query.set("to", form.elements.to.value);
    location.search = `?${query}`;
  });
}

// --- HTTP with ETags ------------------------------------------------------------------------

const http = {
  etags: new Map(),
  bodies: new Map(),
  total: { requests: 0, notModified: 0 },
  cycle: { requests: 0, notModified: 0 },

  /** GET with If-None-Match; {data, changed}. 404 (an endpoint this server lacks) gives null. */
  async get(path, { keep = true } = {}) {
    const headers = { Authorization: `Bearer ${token()}` };
    const etag = this.etags.get(path);
    if (etag) headers["If-None-Match"] = etag;
    this.count("requests");
    const response = await fetch(API + path, { headers, cache: "no-store" });
    if (response.status === 304) {
      this.count("notModified");
      return { data: this.bodies.get(path) ?? null, changed: false };
    }
    if (response.status === 401) throw new SignedOut();
    if (response.status === 422) {
      // A period the server refuses (from after to, over a year, an unknown week): say why.
      const problem = await response.json().catch(() => ({}));
      this.bodies.set(path, null);
      this.etags.delete(path);
      return { data: null, changed: true, problem };
    }
    if (response.status === 404 || response.status === 403) {
      const changed = this.bodies.get(path) !== null;
      this.bodies.set(path, null);
      this.etags.delete(path);
      return { data: null, changed };
    }
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    const data = await response.json();
    const tag = response.headers.get("ETag");
    if (tag) this.etags.set(path, tag);
    if (keep) this.bodies.set(path, data);
    return { data, changed: true };
  },

  forget(path) {
    this.etags.delete(path);
    this.bodies.delete(path);
  },

  count(what) {
    this.total[what] += 1;
    this.cycle[what] += 1;
  },
};

function token() {
  return localStorage.getItem(TOKEN_KEY);
}

// --- Formatting -----------------------------------------------------------------------------

const number = new Intl.NumberFormat("zh-CN");
const timeOfDay = new Intl.DateTimeFormat("zh-CN", {
  timeZone: ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const dayAndTime = new Intl.DateTimeFormat("zh-CN", {
  timeZone: ZONE, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
});
const longDate = new Intl.DateTimeFormat("zh-CN", {
  timeZone: ZONE, year: "numeric", month: "long", day: "numeric", weekday: "long",
});

function count(value, more = false) {
  if (value === null || value === undefined) return "—";
  return number.format(value) + (more ? "+" : "");
}

/** Rates come as fractions (0–1); a value above 1 is taken as a percentage already. */
function percent(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  const pct = value <= 1 ? value * 100 : value;
  return `${pct.toFixed(1)}%`;
}

function duration(ms) {
  const hours = Math.floor(ms / 3_600_000);
  const days = Math.floor(hours / 24);
  if (days > 0) return `${days}天${hours % 24}小时`;
  const minutes = Math.floor(ms / 60_000) % 60;
  return hours > 0 ? `${hours}小时${minutes}分` : `${minutes}分钟`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "style") node.style.cssText = value; // CSSOM: allowed by style-src 'self'
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setText(id, text) {
  const node = $(id);
  if (node.textContent !== text) node.textContent = text;
  node.classList.toggle("none", text === "—");
}

// --- Names ----------------------------------------------------------------------------------

const names = { categories: new Map(), units: new Map() };

async function refreshNames() {
  const [categories, units] = await Promise.all([http.get("/categories"), http.get("/org-units")]);
  if (categories.data) names.categories = new Map(categories.data.map((c) => [c.code, c.name]));
  if (units.data) names.units = new Map(units.data.map((u) => [u.code, u.name]));
  return categories.changed || units.changed;
}

const categoryName = (code) => names.categories.get(code) ?? code;
const unitName = (code) => names.units.get(code) ?? code ?? "—";

// --- Headline counts ------------------------------------------------------------------------

function renderScopes(stats) {
  const period = stats?.period?.label ?? "";
  for (const node of document.querySelectorAll(".kpi .scope")) {
    const text = node.dataset.scope === "now" ? "当前实时" : period || "本周";
    if (node.textContent !== text) node.textContent = text;
  }
  setText("period-label", period || "本周");
}

function renderKpis(stats, overdue, open) {
  renderScopes(stats);
  if (stats) {
    const indicators = stats.indicators ?? {};
    setText("kpi-total", count(stats.counts?.total));
    setText("kpi-total-note", statusNote(stats.counts?.by_status));
    setText("kpi-open", count(stats.open));
    setText("kpi-open-note", "");
    setText("kpi-overdue", count(stats.overdue ?? indicators.overdue_open));
    setText("kpi-due", count(stats.due_within_24h));
    setText("kpi-closure", percent(indicators.closure_rate));
    setText("kpi-closure-note", `按期结案率 ${percent(indicators.on_time_closure_rate)}`);
    setText("kpi-ontime", percent(indicators.on_time_rectification_rate));
    setText("kpi-rework", percent(indicators.rework_rate));
    setText("kpi-score", stats.score === null || stats.score === undefined ? "—" : Number(stats.score).toFixed(1));
    renderGrade(stats.grade);
    renderQuantities(stats.quantities ?? []);
    return;
  }
  // Without /stats: what the overdue list and the map's open issues tell; the rest stays "—".
  setText("kpi-total", "—");
  setText("kpi-total-note", "");
  setText("kpi-open", open ? count(open.features.length, open.has_more) : "—");
  setText("kpi-open-note", open ? statusNote(countBy(open.features, (f) => f.properties.status)) : "");
  setText("kpi-overdue", overdue ? count(overdue.items.length, overdue.has_more) : "—");
  for (const id of ["kpi-due", "kpi-closure", "kpi-ontime", "kpi-rework", "kpi-score"]) setText(id, "—");
  setText("kpi-closure-note", "按期结案率 —");
  renderGrade(null);
  renderQuantities([]);
}

function countBy(items, key) {
  const counts = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}

function statusNote(byStatus) {
  if (!byStatus) return "";
  return Object.entries(byStatus)
    .filter(([status, n]) => n > 0 && STATUS[status] && status !== "rejected" && status !== "duplicate")
    .map(([status, n]) => `${STATUS[status][0]} ${number.format(n)}`)
    .join(" · ");
}

function renderGrade(grade) {
  const node = $("kpi-grade");
  node.textContent = grade ? `等级 ${grade}` : "—";
  node.dataset.grade = grade ?? "";
}

function renderQuantities(quantities) {
  const box = $("quantities");
  const top = [...quantities].filter((q) => q.quantity > 0).sort((a, b) => b.quantity - a.quantity).slice(0, 6);
  box.replaceChildren(
    ...(top.length ? [el("h3", {}, "整治成效")] : []),
    ...top.map((q) =>
      el("span", { class: "chip" }, el("b", {}, number.format(Math.round(q.quantity))), ` ${q.unit} `, q.name ?? categoryName(q.category)),
    ),
  );
}

// --- The overdue list -----------------------------------------------------------------------

function renderOverdue(page) {
  const list = $("overdue");
  if (!page) {
    setText("overdue-count", "—");
    list.replaceChildren(el("li", { class: "empty" }, "—"));
    return;
  }
  const now = Date.now();
  const items = [...page.items].sort((a, b) => Date.parse(a.deadline) - Date.parse(b.deadline));
  setText("overdue-count", `共 ${count(items.length, page.has_more)} 件`);
  if (!items.length) {
    list.replaceChildren(el("li", { class: "empty good" }, "暂无超期问题"));
    return;
  }
  list.replaceChildren(
    ...items.slice(0, 30).map((issue, index) =>
      el(
        "li",
        { "data-code": issue.code },
        el("span", { class: "rank" }, index + 1),
        el(
          "div",
          { class: "what" },
          el("div", { class: "line1" }, el("b", {}, categoryName(issue.category)), el("span", { class: "code" }, issue.code)),
          el("div", { class: "line2" }, unitName(issue.org_unit), issue.address ? ` · ${issue.address}` : ""),
        ),
        el("span", { class: "late" }, "超期", el("b", {}, duration(now - Date.parse(issue.deadline)))),
      ),
    ),
  );
}

// --- The weekly ranking ---------------------------------------------------------------------

const FLAG_NAMES = { red: "红旗", black: "黑旗" };
const TREND = { up: ["↑", "上升"], down: ["↓", "下降"], same: ["→", "持平"], new: ["新", "上期无排名"] };

function flagBadge(flag) {
  if (flag !== "red" && flag !== "black") return "";
  const icon = svg(
    "svg",
    { viewBox: "0 0 16 16", width: "16", height: "16", "aria-hidden": "true" },
    svg("path", { d: "M3 1v14", stroke: "currentColor", "stroke-width": "1.6" }),
    svg("path", { d: "M4 2h9l-2.5 3.5L13 9H4z", fill: "currentColor" }),
  );
  return el("span", { class: `flag ${flag}` }, icon, flag === "red" ? "红旗" : "黑旗");
}

function renderRanking(ranking) {
  const info = ranking?.period_info;
  setText("ranking-title", info ? `${info.label.split("（")[0]}排名` : "本周排名");
  setText("ranking-week", info ? `${info.label} · 红旗 / 黑旗${ranking.flags_decided ? " · 指挥部已评定" : " · 计算建议"}` : "红旗 · 黑旗");
  const body = $("ranking");
  const items = ranking?.items ?? null;
  $("ranking-note").hidden = Boolean(ranking);
  if (!items || !items.length) {
    const text = items ? "本期暂无排名" : "—";
    body.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "empty" }, text)));
    return;
  }
  body.replaceChildren(...items.slice(0, 10).map(rankingRow));
}

function rankingRow(row) {
  // The flag that counts: the command's when it decided the period, else the computed one.
  const final = "final_flag" in row ? row.final_flag : row.flag;
  const suggested = row.flag && (row.awarded || final !== row.flag) ? el("small", { class: "suggested" }, `建议${FLAG_NAMES[row.flag]}`) : null;
  const trend = row.trend?.direction ? TREND[row.trend.direction] : null;
  const name = row.name ?? unitName(row.org_unit);
  return el(
    "tr",
    { class: final ? `flag-${final}` : null, "data-unit": row.org_unit },
    el("td", { class: "rank" }, row.rank ?? "—"),
    el("td", {}, el("button", { type: "button", class: "unit", title: `${name} 的红旗/黑旗记录`, "data-unit": row.org_unit }, name)),
    el("td", { class: "num" }, row.score === null || row.score === undefined ? "—" : Number(row.score).toFixed(1)),
    el("td", {}, el("span", { class: "grade", "data-grade": row.grade ?? "" }, row.grade ?? "—")),
    el("td", { class: `trend ${row.trend?.direction ?? ""}`, title: trend ? `${trend[1]}（上期第 ${row.trend.rank ?? "—"} 名）` : null }, trend ? trend[0] : ""),
    el("td", {}, flagBadge(final), row.awarded ? el("small", { class: "awarded", title: row.awarded.note }, "评定") : null, suggested),
  );
}

async function showHistory(code) {
  const { data } = await http.get(`/rankings/history?org_unit=${encodeURIComponent(code)}&weeks=12`, { keep: false });
  if (!data) return;
  $("history-title").textContent = `${data.name} · 红旗/黑旗记录`;
  $("history-summary").textContent = `近 ${data.weeks.length} 周：红旗 ${data.red} 次，黑旗 ${data.black} 次`;
  $("history-rows").replaceChildren(
    ...data.weeks.map((w) =>
      el("tr", { "data-week": w.week },
        el("td", {}, w.week),
        el("td", { class: "rank" }, w.rank ?? "—"),
        el("td", { class: "num" }, w.score === null ? "—" : Number(w.score).toFixed(1)),
        el("td", {}, flagBadge(w.final_flag)),
        el("td", {}, w.flag ? FLAG_NAMES[w.flag] : ""),
        el("td", {}, w.awarded?.note ?? ""),
      ),
    ),
  );
  const dialog = $("history");
  if (!dialog.open) dialog.showModal();
}

// --- The map --------------------------------------------------------------------------------

const map = { mode: "svg", leaflet: null, layer: null, cells: null, fitted: false, data: null, grid: null };

function pointColor(p) {
  return p.overdue ? OVERDUE_COLOR : (STATUS[p.status]?.[1] ?? "#bfbfbf");
}

function renderLegend(features) {
  const byStatus = countBy(features, (f) => (f.properties.overdue ? "overdue" : f.properties.status));
  const entries = [...OPEN.map((s) => [s, STATUS[s][0], STATUS[s][1]]), ["overdue", "超期", OVERDUE_COLOR]];
  $("map-legend").replaceChildren(
    ...entries
      .filter(([key]) => byStatus[key])
      .map(([key, label, color]) => el("span", {}, el("i", { style: `background:${color}` }), `${label} ${byStatus[key]}`)),
  );
}

/** Open issues by category, as bars: what the streets need most now. */
function renderByCategory(features) {
  const counts = Object.entries(countBy(features, (f) => f.properties.category))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 6);
  const most = counts.length ? counts[0][1] : 1;
  $("by-category").replaceChildren(
    ...(counts.length ? [] : [el("li", { class: "empty" }, "—")]),
    ...counts.map(([code, n]) =>
      el("li", {}, el("span", { class: "label" }, categoryName(code)),
        el("span", { class: "bar" }, el("i", { style: `width:${(100 * n) / most}%` })),
        el("b", {}, n)),
    ),
  );
}

function renderMap(collection) {
  map.data = collection;
  const box = $("map");
  if (!collection) {
    box.replaceChildren(el("p", { class: "empty" }, "—"));
    renderByCategory([]);
    return;
  }
  const features = collection.features.filter((f) => OPEN.includes(f.properties.status));
  renderLegend(features);
  renderByCategory(features);
  if (map.mode === "leaflet") renderLeaflet(features);
  else renderScatter(box, features);
}

/** The points on a plain SVG when no base map can be reached: an equirectangular projection. */
function renderScatter(box, features) {
  const width = Math.max(box.clientWidth, 300);
  const height = Math.max(box.clientHeight, 200);
  if (!features.length && !map.grid?.features?.length) {
    box.replaceChildren(el("p", { class: "empty good" }, "暂无未结问题"));
    return;
  }
  // Fitted to the grid when there is one (a point 8,000 km away must not squash the zone).
  const bounds = cellsBounds(map.grid);
  const drawn = bounds ? features.filter((f) => within(bounds, f.geometry.coordinates)) : features;
  renderOutliers(features.filter((f) => f.properties.outside_grid || !drawn.includes(f)));
  const corners = drawn.map((f) => f.geometry.coordinates);
  if (bounds) corners.push([bounds[0], bounds[1]], [bounds[2], bounds[3]]);
  const lons = corners.map((c) => c[0]);
  const lats = corners.map((c) => c[1]);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const kx = Math.cos((midLat * Math.PI) / 180);
  const x0 = Math.min(...lons) * kx;
  const x1 = Math.max(...lons) * kx;
  const y0 = Math.min(...lats);
  const y1 = Math.max(...lats);
  const pad = 28;
  const scale = Math.min((width - 2 * pad) / Math.max(x1 - x0, 1e-4), (height - 2 * pad) / Math.max(y1 - y0, 1e-4));
  const cx = (width - (x1 - x0) * scale) / 2;
  const cy = (height - (y1 - y0) * scale) / 2;
  const project = ([lon, lat]) => [cx + (lon * kx - x0) * scale, height - cy - (lat - y0) * scale];
  const grid = [];
  for (let i = 1; i < 6; i++) {
    grid.push(svg("line", { x1: (width * i) / 6, y1: 0, x2: (width * i) / 6, y2: height, class: "grid" }));
    grid.push(svg("line", { x1: 0, y1: (height * i) / 6, x2: width, y2: (height * i) / 6, class: "grid" }));
  }
  const cells = bounds ? cellPaths(map.grid, project, svg) : [];
  const dots = [...drawn]
    .sort((a, b) => Number(a.properties.overdue) - Number(b.properties.overdue))
    .map((f) => {
      const [x, y] = project(f.geometry.coordinates);
      const p = f.properties;
      const title = svg("title", {}, `${p.code} ${categoryName(p.category)} ${p.overdue ? "超期" : STATUS[p.status]?.[0] ?? ""}`);
      return svg(
        "g",
        { class: p.overdue ? "dot overdue" : "dot" },
        p.overdue ? svg("circle", { cx: x, cy: y, r: 13, class: "halo", fill: OVERDUE_COLOR }) : null,
        svg("circle", { cx: x, cy: y, r: p.overdue ? 7 : 6, fill: pointColor(p) }),
        title,
      );
    });
  const north = svg("g", { class: "north", transform: `translate(${width - 26},30)` },
    svg("path", { d: "M0,-14 L6,6 L0,2 L-6,6 Z" }), svg("text", { y: 20, "text-anchor": "middle" }, "北"));
  box.replaceChildren(
    svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "未结问题分布（示意图）" },
      ...(bounds ? cells : grid), ...dots, north),
    el("span", { class: "map-note" }, bounds ? "网格底图" : "示意图 · 底图不可用"),
  );
}

/** Open issues outside the grid (or its extent), listed beside the map instead of drawn. */
function renderOutliers(features) {
  const box = $("map-outliers");
  if (!box) return;
  box.hidden = !features.length;
  box.replaceChildren(
    ...(features.length ? [el("b", {}, `网格外 ${features.length} 个：`)] : []),
    ...features.slice(0, 20).map((f) => el("span", { class: "outlier" }, `${f.properties.code} ${categoryName(f.properties.category)}`)),
  );
}

function renderLeaflet(features) {
  const L = window.L;
  if (!map.leaflet) {
    $("map").replaceChildren();
    map.leaflet = L.map("map", { zoomControl: false, attributionControl: true });
    const layer = { maxZoom: 18, attribution: TILE_LAYER.attribution || "" };
    if (TILE_LAYER.subdomains) layer.subdomains = TILE_LAYER.subdomains;
    L.tileLayer(TILES, layer).addTo(map.leaflet);
  }
  if (map.layer) map.layer.remove();
  if (map.cells) map.cells.remove();
  map.cells = map.grid?.features?.length ? leafletCells(L, map.grid).addTo(map.leaflet) : null;
  map.layer = L.layerGroup(
    features.map((f) => {
      const [lon, lat] = f.geometry.coordinates;
      const p = f.properties;
      return L.circleMarker([lat, lon], {
        radius: p.overdue ? 8 : 6, color: "#fff", weight: 1, fillColor: pointColor(p), fillOpacity: 0.9,
      }).bindTooltip(`${p.code} ${categoryName(p.category)}`);
    }),
  ).addTo(map.leaflet);
  if (!map.fitted && map.cells) {
    map.leaflet.fitBounds(map.cells.getBounds(), { padding: [12, 12] });
    map.fitted = true;
  } else if (!map.fitted && features.length) {
    map.leaflet.fitBounds(features.map((f) => [f.geometry.coordinates[1], f.geometry.coordinates[0]]), { padding: [24, 24] });
    map.fitted = true;
  }
}

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms))]);
}

function loadLeaflet() {
  return new Promise((resolve, reject) => {
    const css = el("link", { rel: "stylesheet", href: `${LEAFLET}.css` });
    const script = el("script", { src: `${LEAFLET}.js` });
    script.onload = () => (window.L ? resolve(window.L) : reject(new Error("no Leaflet")));
    script.onerror = () => reject(new Error("Leaflet unreachable"));
    document.head.append(css, script);
  });
}

function probeTile() {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = resolve;
    image.onerror = () => reject(new Error("tiles unreachable"));
    const sub = TILE_LAYER.subdomains ? TILE_LAYER.subdomains[0] : "";
    image.src = TILES.replace("{s}", sub).replace("{z}", "12").replace("{x}", "3374").replace("{y}", "1626");
  });
}

/** Tiles under the grid when the server names some and both Leaflet and the tiles answer
 * within a few seconds; otherwise (and by default) the grid drawn from our own data. */
async function chooseMap() {
  if (MAP_MODE === "svg" || !TILE_LAYER) return;
  try {
    await withTimeout(Promise.all([loadLeaflet(), probeTile()]), 5000);
    map.mode = "leaflet";
    renderMap(map.data);
  } catch {
    map.mode = "svg";
  }
}

// --- Before/after pairs ---------------------------------------------------------------------

const recent = { since: null, cursor: null, path: null, closed: new Map(), shown: "" };
// Photos are shown by their signed links (urls.thumb_signed: no token, see the README's
// "Photos"); a link lives at least half of GRIDPROOF_MEDIA_URL_TTL_SECONDS. Issues are kept
// from the change feed for days, so the feed is read afresh before a kept link runs out.
const LINK_MARGIN_MS = 5 * 60_000;

function recentSince() {
  const day = new Date(Date.now() - RECENT_DAYS * 86_400_000);
  day.setUTCHours(0, 0, 0, 0);
  return day.toISOString();
}

/** When a signed link runs out (ms since the epoch): its `expires`, in Unix seconds. */
function linkExpiry(url) {
  const expires = Number(new URL(url, location.href).searchParams.get("expires"));
  return Number.isFinite(expires) && expires > 0 ? expires * 1000 : 0;
}

function linksRunningOut() {
  const soon = Date.now() + LINK_MARGIN_MS;
  for (const issue of recent.closed.values()) {
    for (const photo of issue.photos) if (photo.urls.thumb_signed && linkExpiry(photo.urls.thumb_signed) < soon) return true;
  }
  return false;
}

/** Follow the change feed of closed issues; cheap when nothing changed (a 304 per poll). */
async function refreshRecent() {
  if (linksRunningOut()) {
    if (recent.path) http.forget(recent.path);
    Object.assign(recent, { since: null, cursor: null, path: null });
    recent.closed.clear();
  }
  recent.since ??= recentSince();
  for (let page = 0; page < 20; page++) {
    let path = `/issues?status=closed&limit=100&updated_since=${encodeURIComponent(recent.since)}`;
    if (recent.cursor) path += `&cursor=${encodeURIComponent(recent.cursor)}`;
    if (recent.path && recent.path !== path) http.forget(recent.path);
    recent.path = path;
    const { data, changed } = await http.get(path, { keep: false });
    if (!changed || !data) return;
    for (const issue of data.items) recent.closed.set(issue.id, issue);
    recent.cursor = data.next_cursor ?? recent.cursor;
    if (!data.has_more) return;
  }
}

async function renderPairs() {
  const issues = [...recent.closed.values()]
    .filter((i) => i.status === "closed")
    .sort((a, b) => Date.parse(b.closed_at) - Date.parse(a.closed_at))
    .slice(0, PAIRS);
  // The links too: the same issue read afresh (new links) is drawn again.
  const key = issues.map((i) => `${i.id}:${i.version}:${i.photos.map((p) => p.urls.thumb_signed).join(" ")}`).join(",");
  if (key === recent.shown) return;
  recent.shown = key;
  if (!issues.length) {
    $("pairs").replaceChildren(el("p", { class: "empty" }, `近${RECENT_DAYS}天暂无结案`));
    return;
  }
  $("pairs").replaceChildren(...issues.map(pairCard));
}

function pairCard(issue) {
  const before = issue.photos.find((p) => p.kind === "before");
  const after = [...issue.photos].reverse().find((p) => p.kind === "after");
  const picture = (photo, label) => {
    const url = photo ? photo.urls.thumb_signed : null;
    return el("figure", {}, url ? el("img", { src: url, alt: `${issue.code} ${label}` }) : el("div", { class: "no-photo" }, "无照片"),
      el("figcaption", {}, label));
  };
  return el(
    "article",
    { class: "pair", "data-code": issue.code },
    el("div", { class: "photos" }, picture(before, "整改前"), picture(after, "整改后")),
    el("p", {}, el("b", {}, categoryName(issue.category)), ` ${unitName(issue.org_unit)}`),
    el("p", { class: "muted" }, `${issue.code} · ${dayAndTime.format(new Date(issue.closed_at))} 结案`),
  );
}

// --- Polling --------------------------------------------------------------------------------

const OPEN_QUERY = OPEN.map((s) => `status=${s}`).join("&");
const PATHS = {
  stats: PERIOD.stats,
  // The compact view: the list shows code, category, unit, address and deadline, nothing more.
  overdue: "/issues?overdue=true&limit=200&view=compact",
  ranking: PERIOD.ranking,
  map: `/issues.geojson?${OPEN_QUERY}&limit=5000&crs=${MAP_CRS}`,
  grid: `/grid.geojson?crs=${MAP_CRS}`,
};
let polls = 0;
let timer = null;

async function cycle() {
  http.cycle = { requests: 0, notModified: 0 };
  const renamed = await refreshNames();
  const [stats, overdue, ranking, geo, cells] = await Promise.all(
    [PATHS.stats, PATHS.overdue, PATHS.ranking, PATHS.map, PATHS.grid].map((path) => http.get(path)),
  );
  map.grid = cells.data;
  setText("period-error", stats.problem ? `统计周期有误：${stats.problem.detail ?? stats.problem.title ?? ""}` : "");
  await refreshRecent();
  renderKpis(stats.data, overdue.data, geo.data);
  renderOverdue(overdue.data);
  if (ranking.changed || renamed || polls === 0) renderRanking(ranking.data);
  if (geo.changed || cells.changed || renamed || polls === 0) renderMap(geo.data);
  await renderPairs();
  polls += 1;
}

async function poll() {
  clearTimeout(timer);
  if (!token()) return showSignIn();
  try {
    await cycle();
    live(true);
  } catch (error) {
    if (error instanceof SignedOut) {
      localStorage.removeItem(TOKEN_KEY);
      return showSignIn("登录已失效，请重新登录");
    }
    console.error(error);
    live(false, error);
  }
  timer = setTimeout(poll, EVERY_MS);
}

function live(ok, error) {
  document.body.dataset.state = ok ? "live" : "error";
  document.body.dataset.polls = String(polls);
  document.body.dataset.notModified = String(http.total.notModified);
  const seconds = EVERY_MS / 1000;
  setText("live-text", ok ? `实时 · 每${seconds}秒刷新` : "连接中断，正在重试…");
  const { requests, notModified } = http.cycle;
  setText(
    "footer",
    ok
      ? `第 ${polls} 次刷新 · 本次 ${requests} 个请求，${notModified} 个未变化（304） · ` +
          `累计 304：${http.total.notModified}/${http.total.requests} · 更新于 ${timeOfDay.format(new Date())}`
      : `刷新失败：${error?.message ?? error}`,
  );
}

// --- Sign-in --------------------------------------------------------------------------------

function showSignIn(message = "") {
  document.body.dataset.state = "signed-out";
  $("sign-out").hidden = true;
  $("sign-in-error").textContent = message;
  const dialog = $("sign-in");
  if (!dialog.open) dialog.showModal();
}

function signedIn(value) {
  localStorage.setItem(TOKEN_KEY, value);
  $("sign-in").close();
  $("sign-out").hidden = false;
  poll();
}

async function signIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch(`${API}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  }).catch(() => null);
  if (!response || !response.ok) {
    $("sign-in-error").textContent = response?.status === 401 ? "用户名或密码错误" : "无法连接服务器";
    return;
  }
  signedIn((await response.json()).token);
}

function tickClock() {
  const now = new Date();
  setText("clock-time", timeOfDay.format(now));
  setText("clock-date", longDate.format(now));
}

function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    localStorage.setItem(TOKEN_KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  $("sign-in-form").addEventListener("submit", signIn);
  $("use-token").addEventListener("click", () => {
    const value = $("sign-in-form").elements.token.value.trim();
    if (value) signedIn(value);
  });
  $("sign-out").addEventListener("click", () => {
    // The token is revoked on the server, not only forgotten here.
    const old = token();
    if (old) fetch(`${API}/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${old}` }, keepalive: true }).catch(() => {});
    localStorage.removeItem(TOKEN_KEY);
    http.etags.clear();
    http.bodies.clear();
    showSignIn();
  });
  $("sign-out").hidden = !token();
  setUpPeriods();
  $("history-close").addEventListener("click", () => $("history").close());
  $("ranking").addEventListener("click", (event) => {
    const button = event.target.closest("button.unit");
    if (button) showHistory(button.dataset.unit).catch((error) => console.error(error));
  });
  tickClock();
  setInterval(tickClock, 1000);
  // The scatter is drawn for the box's size: redraw it when the box changes (window, layout).
  let size = "";
  new ResizeObserver(([entry]) => {
    const now = `${Math.round(entry.contentRect.width)}x${Math.round(entry.contentRect.height)}`;
    if (now !== size && map.mode === "svg" && map.data) renderMap(map.data);
    size = now;
  }).observe($("map"));
  chooseMap();
  poll();
}

start();
