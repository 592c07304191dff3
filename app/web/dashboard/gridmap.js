// The grid cells as the map's base layer (drawn from the service's own data, no tiles needed):
// outlines of every level, the finest cells shaded by their open issues, names on hover.

const RANK = { district: 0, office: 1, community: 2, grid: 3 };

function rings(geometry) {
  return geometry.type === "Polygon" ? geometry.coordinates : geometry.coordinates.flat();
}

/** [minLon, minLat, maxLon, maxLat] of the cells, or null without a grid. */
export function cellsBounds(grid) {
  const features = grid?.features ?? [];
  if (!features.length) return null;
  const b = [Infinity, Infinity, -Infinity, -Infinity];
  for (const f of features) {
    for (const [lon, lat] of rings(f.geometry).flat()) {
      b[0] = Math.min(b[0], lon); b[1] = Math.min(b[1], lat);
      b[2] = Math.max(b[2], lon); b[3] = Math.max(b[3], lat);
    }
  }
  return b;
}

export function within(bounds, [lon, lat]) {
  return lon >= bounds[0] && lat >= bounds[1] && lon <= bounds[2] && lat <= bounds[3];
}

/** The shade of a cell with n open issues, against the busiest cell's `most`. */
export function shade(n, most) {
  return n > 0 ? `rgba(250, 140, 22, ${(0.12 + (0.55 * n) / most).toFixed(3)})` : "rgba(143, 168, 200, 0.05)";
}

/** SVG paths of the cells: the finest level filled, then coarser outlines over them. */
export function cellPaths(grid, project, svg) {
  const features = grid?.features ?? [];
  const finest = Math.max(...features.map((f) => RANK[f.properties.level] ?? 0));
  const most = Math.max(1, ...features.map((f) => f.properties.open_issues ?? 0));
  return [...features]
    .sort((a, b) => (RANK[b.properties.level] ?? 0) - (RANK[a.properties.level] ?? 0))
    .map((f) => {
      const p = f.properties;
      const d = rings(f.geometry)
        .map((ring) => `M${ring.map((point) => project(point).map((v) => v.toFixed(1)).join(",")).join("L")}Z`)
        .join("");
      const filled = (RANK[p.level] ?? 0) === finest;
      const open = p.open_issues ?? 0;
      return svg(
        "path",
        {
          d,
          class: `cell level-${p.level}`,
          "data-code": p.code,
          "fill-rule": "evenodd",
          fill: filled ? shade(open, most) : "none",
        },
        svg("title", {}, `${p.name}（${p.code}）· 未结 ${open}`),
      );
    });
}

/** Leaflet's layer of the same cells, for when a tile layer is in use. */
export function leafletCells(L, grid) {
  const features = grid?.features ?? [];
  const finest = Math.max(...features.map((f) => RANK[f.properties.level] ?? 0));
  const most = Math.max(1, ...features.map((f) => f.properties.open_issues ?? 0));
  return L.geoJSON(grid, {
    style: (f) => {
      const filled = (RANK[f.properties.level] ?? 0) === finest;
      return { color: "#8fa8c8", weight: filled ? 0.6 : 1.6, fill: filled, fillColor: "#fa8c16",
        fillOpacity: filled ? Math.min(0.67, (0.55 * (f.properties.open_issues ?? 0)) / most) : 0 };
    },
    onEachFeature: (f, layer) => layer.bindTooltip(`${f.properties.name} · 未结 ${f.properties.open_issues ?? 0}`),
  });
}
