// A small map of the spot from the service's own data (no tile server): the grid cells around
// (/api/v1/grid.geojson, kept for offline use), the issue's point and the phone's position.
import { api, h, store, t } from "./core.js";

const SVG = "http://www.w3.org/2000/svg";
const M_PER_DEG = 111320;
const NEAR_M = 2000; // the phone is drawn when it is this close; farther, only the distance is said

/** Metres between two WGS-84 points (haversine). */
export function distanceM(lat1, lon1, lat2, lon2) {
  const r = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * r) / 2) ** 2 + Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.sin(((lon2 - lon1) * r) / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.sqrt(a));
}

export function formatDistance(m) {
  return m < 1000 ? t("metres", { m: Math.round(m) }) : t("kilometres", { km: (m / 1000).toFixed(m < 10000 ? 1 : 0) });
}

let gridPromise = null;
/** The grid cells the user may see, once per session (and from the last one when offline). */
function gridCells() {
  gridPromise ||= api("/api/v1/grid.geojson")
    .then((body) => {
      const features = (body && body.features) || [];
      if (JSON.stringify(features).length < 400000) store.set("grid", features);
      return features;
    })
    .catch(() => store.get("grid", []) || []);
  return gridPromise;
}

/** Forget the cached cells (sign-out: the next user's scope is another). */
export function forgetGrid() {
  gridPromise = null;
  store.del("grid");
}

const el = (name, attrs = {}, ...children) => {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
};

/** The map: an <svg> that fills in the cells when they arrive. `here`: the phone's coords or null. */
export function spotMap(issue, here) {
  const lat0 = issue.lat;
  const lon0 = issue.lon;
  const kx = M_PER_DEG * Math.cos((lat0 * Math.PI) / 180);
  const xy = ([lon, lat]) => [(lon - lon0) * kx, -(lat - lat0) * M_PER_DEG];
  const away = here ? distanceM(lat0, lon0, here.latitude, here.longitude) : null;
  const near = away !== null && away <= NEAR_M;
  const half = Math.max(150, near ? away * 1.25 : 0); // metres from the centre to the top edge
  const w = half * 1.6;
  const svg = el("svg", { viewBox: `${-w} ${-half} ${2 * w} ${2 * half}`, class: "spot-map", role: "img", "aria-label": t("mapLabel", { what: issue.code }) });
  const cells = el("g", { class: "cells" });
  svg.append(el("rect", { x: -w, y: -half, width: 2 * w, height: 2 * half, class: "ground" }), cells);
  const font = half / 9;
  gridCells().then((features) => {
    for (const f of features) {
      const g = f.geometry || {};
      const polygons = g.type === "Polygon" ? [g.coordinates] : g.type === "MultiPolygon" ? g.coordinates : [];
      const rings = polygons.flat().map((ring) => ring.map(xy));
      const points = rings.flat();
      if (!points.length || !points.some(([x, y]) => Math.abs(x) < w * 1.5 && Math.abs(y) < half * 1.5)) continue;
      const own = issue.grid_cell && issue.grid_cell.code === f.id;
      const d = rings.map((r) => "M" + r.map(([x, y]) => `${x.toFixed(1)} ${y.toFixed(1)}`).join("L") + "Z").join("");
      cells.append(el("path", { d, class: own ? "cell own" : "cell" }));
      const [cx, cy] = points.reduce(([a, b], [x, y]) => [a + x / points.length, b + y / points.length], [0, 0]);
      const name = (f.properties || {}).name;
      if (name && Math.abs(cx) < w * 0.8 && Math.abs(cy) < half * 0.85) cells.append(el("text", { x: cx, y: cy, "font-size": font, class: "cell-name" }, name));
    }
  });
  if (near) {
    const [px, py] = xy([here.longitude, here.latitude]);
    svg.append(el("line", { x1: px, y1: py, x2: 0, y2: 0, class: "route" }));
    svg.append(el("circle", { cx: px, cy: py, r: Math.min(here.accuracy || 0, half), class: "accuracy" }));
    svg.append(el("circle", { cx: px, cy: py, r: half / 28, class: "phone" }));
  }
  svg.append(el("circle", { cx: 0, cy: 0, r: half / 20, class: "spot" }));
  const bar = half > 600 ? 500 : half > 300 ? 200 : 100;
  svg.append(el("line", { x1: w - bar - half / 12, y1: half * 0.88, x2: w - half / 12, y2: half * 0.88, class: "scale" }));
  svg.append(el("text", { x: w - bar / 2 - half / 12, y: half * 0.8, "font-size": font * 0.9, class: "scale-text" }, formatDistance(bar)));
  return h(
    "figure",
    { class: "map" },
    svg,
    h("figcaption", {}, h("span", { class: "legend spot-key", text: t("mapIssue") }), near ? h("span", { class: "legend phone-key", text: t("mapPhone") }) : null, away !== null ? h("b", { class: "distance", text: t("distanceFromYou", { d: formatDistance(away) }) }) : h("span", { class: "muted", text: t("noPosition") })),
  );
}
