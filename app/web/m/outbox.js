// The outbox: every report, photo upload and queued action waits here (IndexedDB) until the
// server has it. Items hold the form fields, the original photo blobs and an Idempotency-Key
// fixed when the item is made, so a retry can never create a second issue. No token is ever
// stored here: items are sent with the signed-in user's token, and only for their owner.
import { api, ApiError, hooks, problemText, session, upload, uuid } from "./core.js";

const DB_NAME = "gridproof";
const STORE = "outbox";
const BACKOFF_S = [5, 15, 30, 60, 120, 300];
const KEEP_DONE = 20;

let dbPromise = null;
function db() {
  dbPromise ||= new Promise((resolve, reject) => {
    const open = indexedDB.open(DB_NAME, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: "id" });
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
  });
  return dbPromise;
}

async function tx(mode, work) {
  const database = await db();
  return new Promise((resolve, reject) => {
    const transaction = database.transaction(STORE, mode);
    const request = work(transaction.objectStore(STORE));
    transaction.oncomplete = () => resolve(request ? request.result : undefined);
    transaction.onerror = () => reject(transaction.error);
    transaction.onabort = () => reject(transaction.error);
  });
}

async function everything() {
  const all = (await tx("readonly", (s) => s.getAll())) || [];
  return all.sort((a, b) => a.created_at - b.created_at);
}

/** The outbox as the user sees it: without the items removed a moment ago (still undoable). */
export async function items() {
  return (await everything()).filter((i) => !i.removed_at);
}

const put = (item) => tx("readwrite", (s) => s.put(item));

const getOne = (id) => tx("readonly", (s) => s.get(id));

export async function remove(id) {
  if (current && current.id === id) current.controller.abort();
  await tx("readwrite", (s) => s.delete(id));
  progress.delete(id);
  changed();
}

// Removing is undoable for a while: the item (with its photos) stays, marked, unsent, until then.
export const UNDO_MS = 6000;

export async function removeSoon(id) {
  const item = await getOne(id);
  if (!item) return;
  item.removed_at = Date.now();
  await put(item);
  if (current && current.id === id) current.controller.abort();
  progress.delete(id);
  changed();
  setTimeout(purge, UNDO_MS + 100);
}

export async function undoRemove(id) {
  const item = await getOne(id);
  if (!item) return false;
  delete item.removed_at;
  if (item.state === "queued") item.next_at = 0;
  await put(item);
  changed();
  kick();
  return true;
}

/** Delete for good what was removed longer ago than the undo window (also after a restart). */
export async function purge() {
  const gone = (await everything()).filter((i) => i.removed_at && Date.now() - i.removed_at >= UNDO_MS);
  for (const item of gone) await tx("readwrite", (s) => s.delete(item.id));
  if (gone.length) changed();
}

// --- Listeners and live progress (kept in memory: bytes sent are not worth a disk write) -----
const listeners = new Set();
export const progress = new Map(); // id → {sent, total}

export function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function changed() {
  for (const listener of listeners) listener();
}

// --- Making items ------------------------------------------------------------------------------
function newItem(kind, data) {
  return {
    id: uuid(),
    kind,
    owner: session.user.username,
    idempotency_key: uuid(),
    created_at: Date.now(),
    state: "queued",
    attempts: 0,
    next_at: 0,
    error: null,
    result: null,
    ...data,
  };
}

/** Photos as stored: the original File blobs, untouched. */
const packFiles = (files) => files.map((f) => ({ name: f.name || "photo.jpg", type: f.type, size: f.size, blob: f }));

/** Store a new item; where a browser cannot store a picked File as is, store its bytes. */
async function putNew(item) {
  try {
    await put(item);
  } catch (err) {
    if (!item.files || !item.files.length) throw err;
    for (const f of [...item.files, ...(item.after_files || [])]) f.blob = new Blob([await f.blob.arrayBuffer()], { type: f.type });
    await put(item);
  }
}

/** A report; with `after` photos it was fixed on the spot (立行立改: one request, both kinds). */
export async function addReport({ fields, files, after = [], summary }) {
  const item = newItem("report", { fields, files: packFiles(files), after_files: packFiles(after), summary });
  await putNew(item);
  changed();
  kick();
  return item;
}

export async function addPhotos({ issue, kind, files, fields = {} }) {
  const item = newItem("photos", {
    issue_id: issue.id,
    summary: { code: issue.code, kind },
    photo_kind: kind,
    fields,
    files: packFiles(files),
  });
  await putNew(item);
  changed();
  kick();
  return item;
}

/** A transition that waits for the photos queued before it (e.g. submit after after-photos). */
export async function addAction({ issue, action, body = {}, target }) {
  const item = newItem("action", {
    issue_id: issue.id,
    summary: { code: issue.code, action },
    action,
    body,
    target,
  });
  await put(item);
  changed();
  kick();
  return item;
}

export async function retry(id, patch = {}) {
  const all = await items();
  const item = all.find((i) => i.id === id);
  if (!item) return;
  Object.assign(item, patch, { state: "queued", next_at: 0, error: null });
  await put(item);
  changed();
  kick();
}

export async function clearDone() {
  for (const item of await items()) if (item.state === "done") await tx("readwrite", (s) => s.delete(item.id));
  changed();
}

// --- Sending -----------------------------------------------------------------------------------
let running = false;
let again = false;
let timer = 0;
let current = null; // the item being sent: {id, controller}

/** Waiting on an earlier, unfinished photo upload for the same issue. */
export function blocked(item, all) {
  return (
    item.kind === "action" &&
    all.some((o) => o.kind === "photos" && o.issue_id === item.issue_id && o.created_at < item.created_at && o.state !== "done")
  );
}

export function sendable(item, all) {
  return item.state === "queued" && !item.removed_at && session.user && item.owner === session.user.username && !blocked(item, all);
}

/** Process the queue, one item at a time (one bar of signal is better spent on one upload). */
export async function kick() {
  if (running) {
    again = true; // something changed while sending: look once more when done
    return;
  }
  running = true;
  again = false;
  clearTimeout(timer);
  try {
    // One sender across tabs of the app: the others see the same outbox change.
    // (another tab holds the lock: look again later, in case that tab is closed meanwhile).
    if (!navigator.locks) await drain();
    else await navigator.locks.request("gp-outbox", { ifAvailable: true }, (lock) => (lock ? drain() : (timer = setTimeout(kick, 30000))));
  } finally {
    running = false;
    if (again) kick();
  }
}

async function drain() {
  for (;;) {
    if (!session.token || session.expired) break;
    if (navigator.onLine === false) break; // the "online" event starts us again
    const all = await items();
    const now = Date.now();
    const next = all.find((i) => sendable(i, all) && i.next_at <= now);
    if (!next) {
      schedule(all);
      break;
    }
    if (!(await send(next))) break;
  }
}

function schedule(all) {
  const waits = all.filter((i) => sendable(i, all)).map((i) => i.next_at);
  if (waits.length) timer = setTimeout(kick, Math.max(500, Math.min(...waits) - Date.now()));
}

/** Send one item; false when the queue should stop (signed out or token expired). */
async function send(item) {
  item.state = "sending";
  item.attempts += 1;
  await put(item);
  changed();
  let outcome;
  current = { id: item.id, controller: new AbortController() };
  try {
    outcome = await SENDERS[item.kind](item, current.controller.signal);
  } catch (err) {
    outcome = err instanceof ApiError ? { status: err.status, body: err.problem } : { status: 0, body: {} };
  } finally {
    current = null;
  }
  progress.delete(item.id);
  const stored = await getOne(item.id);
  if (!stored) return true; // removed by the user while it was being sent
  if (stored.removed_at) item.removed_at = stored.removed_at; // …or being removed: keep the mark
  const { status, body, retryAfter = 0 } = outcome;
  if (status >= 200 && status < 300) {
    item.state = "done";
    item.done_at = Date.now();
    item.result = outcome.result;
    item.error = null;
    item.files = []; // the server has them; free the phone's storage
    item.after_files = [];
  } else if (status === 401) {
    item.state = "queued";
    item.attempts -= 1;
    session.expired = true;
    hooks.unauthorized();
  } else if (status === 0 || status === 408 || status === 429 || status >= 500) {
    item.state = "queued";
    const wait = Math.max(retryAfter, BACKOFF_S[Math.min(item.attempts - 1, BACKOFF_S.length - 1)]);
    item.next_at = Date.now() + wait * 1000 * (1 + Math.random() * 0.2);
    item.error = errorOf(status, body);
  } else {
    item.state = "failed";
    item.error = errorOf(status, body);
  }
  await put(item);
  await prune();
  changed();
  return status !== 401;
}

/** What went wrong, kept as the server said it; shown in words in the current language. */
function errorOf(status, body) {
  const { code, title, detail, max_bytes } = body || {};
  return { status, code, title, detail, max_bytes };
}

export const errorText = (error) => problemText(error.status, error);

function formOf(fields, files, fileField, after = []) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields || {})) {
    if (value !== null && value !== undefined && value !== "") form.append(name, String(value));
  }
  for (const f of files) form.append(fileField, f.blob, f.name);
  for (const f of after) form.append("after_photos", f.blob, f.name);
  return form;
}

/** Every photo an item carries (before and, for 立行立改, after). */
export const filesOf = (item) => [...(item.files || []), ...(item.after_files || [])];

function post(item, path, form, signal) {
  return upload(path, form, {
    signal,
    headers: { "Idempotency-Key": item.idempotency_key },
    onProgress: (sent, total) => {
      progress.set(item.id, { sent, total });
      changed();
    },
  });
}

const SENDERS = {
  async report(item, signal) {
    const response = await post(item, "/api/v1/issues", formOf(item.fields, item.files, "photos", item.after_files || []), signal);
    if (response.status === 201) response.result = { id: response.body.id, code: response.body.code };
    return response;
  },
  async photos(item, signal) {
    const fields = { kind: item.photo_kind, ...item.fields };
    const form = formOf(fields, item.files, "files");
    const response = await post(item, `/api/v1/issues/${item.issue_id}/photos`, form, signal);
    if (response.status === 201) response.result = { code: item.summary.code, photos: response.body.length };
    return response;
  },
  async action(item) {
    // Transitions carry no Idempotency-Key: read the issue first, so a retry after a lost
    // answer sees the issue already moved and counts that as done.
    const issue = await api(`/api/v1/issues/${item.issue_id}`);
    if (!issue.allowed_actions.includes(item.action)) {
      if (issue.status === item.target) return { status: 200, result: { code: issue.code } };
      return { status: 409, body: { code: "invalid_transition" } };
    }
    await api(`/api/v1/issues/${item.issue_id}/transitions`, {
      method: "POST",
      json: { action: item.action, ...item.body },
      headers: { "If-Match": `"${issue.version}"` },
    });
    return { status: 200, result: { code: issue.code } };
  },
};

async function prune() {
  const done = (await items()).filter((i) => i.state === "done");
  for (const item of done.slice(0, Math.max(0, done.length - KEEP_DONE))) {
    await tx("readwrite", (s) => s.delete(item.id));
  }
}

/** On app start: resume what a closed tab left half-sent, and retry when the network returns. */
export async function start() {
  if (navigator.storage && navigator.storage.persist) navigator.storage.persist().catch(() => {});
  await purge();
  for (const item of await everything()) {
    if (item.state === "sending" || item.state === "queued") {
      item.state = "queued";
      item.next_at = 0;
      await put(item);
    }
  }
  window.addEventListener("online", async () => {
    for (const item of await items()) {
      if (item.state === "queued" && item.next_at) {
        item.next_at = 0;
        await put(item);
      }
    }
    changed();
    kick();
  });
  document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && kick());
  changed();
  kick();
}
