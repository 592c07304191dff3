// 上报: category tiles, photos (the original files), the phone's position, description, quantity.
import { add, categories, fill, categoryName, field, formatBytes, h, t, toast } from "./core.js";
import * as outbox from "./outbox.js";

const MAX_PHOTOS = 10;
// Kept while the user switches tabs: a half-made report is not lost by looking at the outbox.
const draft = { category: null, files: [], description: "", quantity: "", onTheSpot: false, after: [] };
const position = { state: "idle", coords: null, reason: "" };
let watchId = null;

export function reportView(root) {
  const form = h("form", { class: "report", novalidate: true });
  add(root, form);
  const urls = [];

  const tiles = h("div", { class: "tiles" });
  const unitLabel = h("span", { class: "unit", id: "quantity-unit" });
  const previews = h("ul", { class: "previews", "aria-label": t("chosenPhotos") });
  const afterPreviews = h("ul", { class: "previews", "aria-label": t("chosenAfterPhotos") });
  const locationBox = h("div", { class: "location-text", role: "status", "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });

  const drawTiles = (rows) => {
    fill(
      tiles,
      ...rows.map((c) => {
        const input = h("input", { type: "radio", name: "category", value: c.code, checked: draft.category === c.code, onchange: () => pick(c) });
        return h("label", { class: "tile" }, input, h("span", { text: categoryName(c) }));
      }),
    );
    const chosen = rows.find((c) => c.code === draft.category);
    unitLabel.textContent = chosen ? chosen.unit : "";
    performance.mark("gp-report-ready");
    document.body.dataset.ready = "report";
  };
  const pick = (c) => {
    draft.category = c.code;
    unitLabel.textContent = c.unit;
    error.textContent = "";
  };

  const drawList = (list, files, altKey) =>
    fill(
      list,
      ...files.map((file, i) => {
        const url = URL.createObjectURL(file);
        urls.push(url);
        return h(
          "li",
          { class: "preview" },
          h("img", { src: url, alt: t(altKey, { n: i + 1 }) }),
          h("span", { class: "size", text: formatBytes(file.size) }),
          h("button", { type: "button", class: "remove", "aria-label": t(altKey === "newPhotoAlt" ? "removePhoto" : "removeAfterPhoto", { n: i + 1 }), text: "×", onclick: () => (files.splice(i, 1), drawPreviews()) }),
        );
      }),
      files.length ? null : h("li", { class: "empty", text: t(altKey === "newPhotoAlt" ? "noPhotos" : "noAfterPhotos") }),
    );
  const drawPreviews = () => {
    for (const url of urls.splice(0)) URL.revokeObjectURL(url);
    drawList(previews, draft.files, "newPhotoAlt");
    drawList(afterPreviews, draft.after, "newAfterPhotoAlt");
  };
  const addFiles = (input, files = draft.files) => {
    files.push(...input.files); // the File objects themselves: never re-encoded
    input.value = "";
    if (files.length > MAX_PHOTOS) {
      files.length = MAX_PHOTOS;
      toast(t("tooManyPhotos"), "error");
    }
    error.textContent = "";
    drawPreviews();
  };

  const drawLocation = () => {
    const p = position;
    if (p.state === "ok") {
      const { latitude, longitude, accuracy } = p.coords;
      locationBox.className = "location-text ok";
      locationBox.textContent = `${latitude.toFixed(5)}, ${longitude.toFixed(5)} · ${t("accuracy", { m: Math.round(accuracy) })}`;
    } else {
      locationBox.className = `location-text ${p.state === "locating" ? "" : "warn"}`;
      locationBox.textContent = {
        locating: t("locating"),
        denied: t("locationDenied"),
        failed: t("locationFailed", { reason: p.reason }),
        unsupported: t("noGeolocation"),
      }[p.state] || t("locating");
    }
  };

  const camera = h("input", { type: "file", accept: "image/*", capture: "environment", multiple: true, class: "file", id: "photo-camera", "aria-label": t("photos"), onchange: (e) => addFiles(e.target) });
  const gallery = h("input", { type: "file", accept: "image/*", multiple: true, class: "file", id: "photo-gallery", "aria-label": t("fromGallery"), onchange: (e) => addFiles(e.target) });
  const description = h("textarea", { name: "description", rows: 3, maxLength: 2000, placeholder: t("descriptionHint"), oninput: (e) => (draft.description = e.target.value) });
  description.value = draft.description;
  const quantity = h("input", { name: "quantity", type: "number", inputmode: "decimal", min: "0", step: "any", value: draft.quantity, "aria-describedby": "quantity-unit", oninput: (e) => (draft.quantity = e.target.value) });
  const submit = h("button", { type: "submit", class: "primary big", text: t("submit") });
  // 立行立改: fixed on the spot, so the report carries after-photos too and waits for verification.
  const afterCamera = h("input", { type: "file", accept: "image/*", capture: "environment", multiple: true, class: "file", id: "after-camera", "aria-label": t("afterPhotos"), onchange: (e) => addFiles(e.target, draft.after) });
  const afterBox = h(
    "div",
    { class: "on-the-spot", hidden: !draft.onTheSpot },
    h("p", { class: "muted", text: t("onTheSpotHint") }),
    afterCamera,
    h("label", { for: afterCamera.id, class: "button secondary big", text: t("takeAfterPhoto") }),
    afterPreviews,
  );
  const spot = h("input", { type: "checkbox", id: "on-the-spot", checked: draft.onTheSpot, onchange: (e) => ((draft.onTheSpot = e.target.checked), (afterBox.hidden = !draft.onTheSpot)) });

  add(form, 
    h("fieldset", { class: "group", role: "radiogroup" }, h("legend", { text: t("category") }), tiles),
    h(
      "section",
      { class: "group" },
      h("h2", { text: t("photos") }),
      h("div", { class: "row" }, camera, h("label", { for: camera.id, class: "button primary big", text: t("takePhoto") }), gallery, h("label", { for: gallery.id, class: "button secondary big", text: t("fromGallery") })),
      previews,
      h("label", { class: "check", for: spot.id }, spot, h("span", { text: t("onTheSpot") })),
      afterBox,
    ),
    h(
      "section",
      { class: "group" },
      h("h2", { text: t("location") }),
      locationBox,
      h("button", { type: "button", class: "secondary", text: t("refreshLocation"), "aria-label": t("refreshLocation"), onclick: () => startLocating(drawLocation, true) }),
    ),
    field(t("description"), description),
    h("div", { class: "field" }, h("label", { for: (quantity.id = "quantity"), text: t("quantity") }), h("div", { class: "qty" }, quantity, unitLabel)),
    h("div", { class: "submit-bar" }, error, submit),
  );

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const rows = await categories().catch(() => []);
    const category = rows.find((c) => c.code === draft.category);
    if (!category) return fail(t("pickCategory"), tiles);
    if (!draft.files.length) return fail(t("needPhoto"), previews);
    if (draft.onTheSpot && !draft.after.length) return fail(t("needAfter"), afterPreviews);
    submit.disabled = true;
    try {
      await queueReport(category);
      location.hash = "#/outbox";
    } catch (err) {
      fail(t("storageFull", { reason: err && err.message }), submit);
    } finally {
      submit.disabled = false;
    }
  });
  const fail = (message, near) => {
    error.textContent = message;
    near.scrollIntoView({ block: "center" });
  };

  drawPreviews();
  const stopLocating = startLocating(drawLocation);
  categories()
    .then(drawTiles)
    .catch((err) => fill(tiles, h("p", { class: "error", text: t("loadFailed", { reason: err.status ? err.message : t("needNetwork") }) })));
  return () => {
    stopLocating();
    for (const url of urls) URL.revokeObjectURL(url);
  };
}

/** Forget the half-made report (on sign-out: the next user must not inherit its photos). */
export function resetDraft() {
  Object.assign(draft, { category: null, files: [], description: "", quantity: "", onTheSpot: false, after: [] });
}

async function queueReport(category) {
  const fields = { category: category.code, description: draft.description.trim() };
  if (draft.quantity !== "") fields.quantity = draft.quantity;
  if (position.state === "ok") {
    fields.lat = position.coords.latitude;
    fields.lon = position.coords.longitude;
    fields.accuracy_m = Math.round(position.coords.accuracy * 10) / 10;
    fields.location_source = "device";
  } // else the server takes the first photo's EXIF GPS, or answers location_required
  const after = draft.onTheSpot ? [...draft.after] : [];
  await outbox.addReport({ fields, files: [...draft.files], after, summary: { category: category.code, on_the_spot: after.length > 0 } });
  resetDraft();
  toast(navigator.onLine === false ? t("queuedOffline") : t("queued"));
}

/** Follow the phone's position while the report screen is open; the newest fix wins. */
function startLocating(onChange, restart = false) {
  if (!("geolocation" in navigator)) {
    position.state = "unsupported";
    onChange();
    return () => {};
  }
  if (restart || watchId === null) {
    if (watchId !== null) navigator.geolocation.clearWatch(watchId);
    if (restart || position.state !== "ok") position.state = "locating";
    watchId = navigator.geolocation.watchPosition(
      (pos) => {
        position.state = "ok";
        position.coords = pos.coords;
        listener();
      },
      (err) => {
        if (position.state === "ok" && err.code !== err.PERMISSION_DENIED) return; // keep the last fix
        position.state = err.code === err.PERMISSION_DENIED ? "denied" : "failed";
        position.reason = err.message || String(err.code);
        position.coords = null;
        listener();
      },
      { enableHighAccuracy: true, maximumAge: 15000, timeout: 30000 },
    );
  }
  let listener = onChange;
  onChange();
  return () => {
    listener = () => {};
    if (watchId !== null) navigator.geolocation.clearWatch(watchId);
    watchId = null;
  };
}
