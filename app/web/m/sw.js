// Service worker: the app shell comes from the cache, so /m/ opens with no network at all.
// The server writes a hash of every app file into VERSION, so any change installs a fresh cache.
const VERSION = "__SHELL_VERSION__";
const SHELL_CACHE = "gp-shell-" + VERSION;
const PHOTO_CACHE = "gp-photos"; // thumbnails and large views: immutable; cleared on sign-out
const SHELL = [
  "/m/",
  "/m/app.css",
  "/m/app.js",
  "/m/core.js",
  "/m/outbox.js",
  "/m/report.js",
  "/m/issues.js",
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
  const cache = await caches.open(PHOTO_CACHE);
  const cached = await cache.match(request.url);
  if (cached) return cached;
  const response = await fetch(request);
  if (response.ok) cache.put(request.url, response.clone());
  return response;
}
