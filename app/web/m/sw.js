// Service worker: the app shell comes from the cache, so /m/ opens with no network at all.
// The server writes a hash of every app file into VERSION, so any change installs a fresh cache.
const VERSION = "__SHELL_VERSION__";
const SHELL_CACHE = "gp-shell-" + VERSION;
// Thumbnails and large views are immutable, but whose eyes they are for is not: one cache per
// token ("gp-photos-" + its SHA-256), so a photo cached for one session is never answered to
// another user (or to the same user's next session); the caches of other tokens are deleted
// as soon as a new one is seen, and a token's own cache when the server refuses it.
// Photos are revalidated (304) while online, so the cache saves the bytes, never the check.
const PHOTO_CACHE = "gp-photos-";
const SHELL = [
  "/m/",
  "/m/app.css",
  "/m/app.js",
  "/m/core.js",
  "/m/outbox.js",
  "/m/report.js",
  "/m/issues.js",
  "/m/mine.js",
  "/m/map.js",
  "/m/manifest.webmanifest",
  "/m/icon.svg",
];
const PHOTO = /^\/api\/v1\/photos\/\d+\/(thumb|large)$/;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(SHELL_CACHE)
      // Through the HTTP cache: the page has just loaded these, so a revalidation (304) is all
      // the slow link carries, not the shell a second time.
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("gp-shell-") && k !== SHELL_CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (request.mode === "navigate" && (url.pathname === "/m" || url.pathname.startsWith("/m/"))) {
    event.respondWith(fromCache(SHELL_CACHE, "/m/", request));
  } else if (url.pathname.startsWith("/m/")) {
    event.respondWith(fromCache(SHELL_CACHE, url.pathname, request));
  } else if (PHOTO.test(url.pathname)) {
    event.respondWith(photo(request));
  } // everything else (the API) goes straight to the network; the outbox handles failures
});

async function fromCache(name, key, request) {
  const cached = await caches.match(key, { cacheName: name });
  return cached || fetch(request);
}

async function photo(request) {
  const auth = request.headers.get("Authorization") || "";
  if (!auth) return fetch(request);
  const name = PHOTO_CACHE + (await hex(auth));
  await forgetPhotos(name);
  const cache = await caches.open(name);
  const cached = await cache.match(request.url);
  // A cached photo is still asked about (If-None-Match: a 304 carries no body), so that a token
  // expired or revoked since gets the server's refusal, not the bytes; offline, the cache answers.
  const headers = new Headers(request.headers);
  if (cached && cached.headers.get("ETag")) headers.set("If-None-Match", cached.headers.get("ETag"));
  let response;
  try {
    response = await fetch(request.url, { headers, cache: "no-store" });
  } catch (err) {
    if (cached) return cached;
    throw err;
  }
  if (response.status === 304 && cached) return cached;
  if (response.ok) await cache.put(request.url, response.clone());
  else if (response.status === 401 || response.status === 403) await caches.delete(name);
  return response;
}

/** Delete every photo cache but `keep` (none: all of them; the page asks on sign-in and out). */
async function forgetPhotos(keep = null) {
  const names = await caches.keys();
  await Promise.all(names.filter((n) => n.startsWith("gp-photos") && n !== keep).map((n) => caches.delete(n)));
}

async function hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "forget-photos") event.waitUntil(forgetPhotos());
});
