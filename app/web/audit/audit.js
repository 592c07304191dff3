// The auditor's page: find an issue, read its timeline and photos, see whether its audit chain
// (and its rows, checkpoints and originals) verifies, download the evidence. No inline script:
// the page's CSP is script-src 'self'. The token is kept for this tab only (sessionStorage).

const API = "/api/v1";
const TOKEN_KEY = "gridproof.audit.token";
const $ = (id) => document.getElementById(id);

const STATUS = {
  reported: "已上报", accepted: "已受理", dispatched: "整改中", rectified: "待核查",
  closed: "已结案", rejected: "已驳回", duplicate: "重复",
};
const ACTION = {
  report: "上报", add_photos: "添加照片", accept: "受理", reject: "驳回",
  mark_duplicate: "标记重复", dispatch: "派遣", return: "退回", extend_deadline: "延期",
  submit_rectification: "提交整改", verify_pass: "核查通过", verify_fail: "核查不通过",
  reopen: "重新打开",
};
const SOURCE = { exif: "照片 GPS", device: "手机定位", manual: "手动输入" };

let current = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") el.textContent = value;
    else if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

class Refused extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, as = "json") {
  const response = await fetch(API + path, {
    headers: { Authorization: `Bearer ${token()}` },
    cache: "no-store",
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn();
    throw new Refused(401, { detail: "请重新登录" });
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { /* not JSON */ }
    throw new Refused(response.status, problem);
  }
  return as === "blob" ? response.blob() : response.json();
}

function when(text) {
  if (!text) return "—";
  const moment = new Date(text);
  return Number.isNaN(moment.getTime()) ? text : moment.toLocaleString("zh-CN", { hour12: false });
}

// --- Search ----------------------------------------------------------------------------------

async function search(event) {
  if (event) event.preventDefault();
  const form = new FormData($("search"));
  const params = new URLSearchParams();
  for (const [name, value] of form) if (String(value).trim()) params.set(name, String(value).trim());
  history.replaceState(null, "", `/audit?${params}`);
  $("search-error").textContent = "";
  const body = $("results");
  try {
    const issues = await api(`/audit/issues?${params}`);
    body.replaceChildren(
      ...(issues.length
        ? issues.map((issue) =>
            h(
              "tr",
              { "data-issue": issue.id, tabindex: "0", onclick: () => openIssue(issue.id),
                onkeydown: (e) => { if (e.key === "Enter") openIssue(issue.id); } },
              h("td", { text: issue.code }),
              h("td", { text: STATUS[issue.status] || issue.status }),
              h("td", { text: issue.org_unit }),
              h("td", { text: when(issue.reported_at) }),
              h("td", { text: issue.description || issue.address || "" }),
            ),
          )
        : [h("tr", {}, h("td", { colspan: "5", class: "empty", text: "没有符合条件的问题" }))]),
    );
    if (issues.length === 1) openIssue(issues[0].id);
  } catch (error) {
    $("search-error").textContent =
      error.status === 403 ? "此页面供督查员、审计员和管理员使用" : `查找失败：${error.message}`;
  }
}

// --- One issue -------------------------------------------------------------------------------

async function openIssue(id) {
  for (const row of $("results").querySelectorAll("tr")) {
    row.setAttribute("aria-selected", String(row.dataset.issue === String(id)));
  }
  $("verdict").dataset.state = "unknown";
  $("verdict").textContent = "正在验证审计链…";
  $("problems").replaceChildren();
  try {
    const [issue, events, verdict] = await Promise.all([
      api(`/issues/${id}`),
      api(`/issues/${id}/events`),
      api(`/issues/${id}/verification`),
    ]);
    current = issue;
    renderIssue(issue);
    renderVerdict(verdict);
    renderTimeline(events);
    renderPhotos(issue.photos, verdict.flag_sentences || {});
    $("detail").hidden = false;
  } catch (error) {
    $("search-error").textContent =
      error.status === 404 ? "没有这个问题，或不在您的查看范围内" : `读取失败：${error.message}`;
  }
}

function renderIssue(issue) {
  $("d-code").textContent = issue.code;
  $("d-summary").textContent =
    `${STATUS[issue.status] || issue.status} · ${issue.category} · 责任单位 ${issue.org_unit} · ` +
    `上报人 ${issue.reported_by} · ${when(issue.reported_at)}`;
  $("d-description").textContent = [issue.description, issue.address].filter(Boolean).join(" · ");
}

function renderVerdict(verdict) {
  const box = $("verdict");
  if (verdict.valid) {
    box.dataset.state = "valid";
    box.textContent =
      `审计链验证通过：${verdict.events} 个事件，哈希链完整，` +
      `${verdict.checkpoints} 个签名检查点相符，原始照片与 SHA-256 一致`;
  } else {
    box.dataset.state = "broken";
    box.textContent = verdict.chain_valid
      ? "审计链验证未通过：记录与审计链不符"
      : "审计链验证未通过：哈希链已断裂（事件被改动）";
  }
  $("problems").replaceChildren(...verdict.problems.map((p) => h("li", { text: p })));
}

function renderTimeline(events) {
  $("timeline").replaceChildren(
    ...events.map((e) =>
      h(
        "tr",
        {},
        h("td", { text: String(e.seq) }),
        h("td", { text: when(e.at) }),
        h("td", { text: e.actor }),
        h("td", { text: ACTION[e.action] || e.action }),
        h("td", { text: `${STATUS[e.from_status] || e.from_status || "—"} → ${STATUS[e.to_status] || e.to_status}` }),
        h("td", { text: e.note || "" }),
        h("td", { class: "hash", title: `prev ${e.prev_hash}`, text: e.hash }),
      ),
    ),
  );
}

function renderPhotos(photos, sentences) {
  const columns = { before: $("p-before"), after: $("p-after"), verification: $("p-verification") };
  for (const column of Object.values(columns)) column.replaceChildren();
  for (const photo of photos) {
    // The signed link (no token: the answer was just read, so it lives for hours yet).
    const img = h("img", { alt: `${photo.kind} 照片 ${photo.id}`, src: photo.urls.thumb_signed });
    img.addEventListener("error", () => { img.alt += "（无法加载）"; }, { once: true });
    const place =
      photo.lat === null || photo.lat === undefined
        ? "无位置"
        : `${photo.lat.toFixed(6)}, ${photo.lon.toFixed(6)}（${SOURCE[photo.location_source] || photo.location_source}）`;
    const flags = sentences[String(photo.id)] || photo.flags.map((code) => ({ code, text: code }));
    columns[photo.kind]?.append(
      h(
        "figure",
        { class: "photo", "data-photo": photo.id },
        img,
        h("figcaption", {},
          h("div", { text: `拍摄时间：${photo.taken_at || "无"}` }),
          h("div", { text: `拍摄位置：${place}` }),
          h("div", { text: `上传：${photo.uploaded_by} · ${when(photo.uploaded_at)}` }),
          flags.length
            ? h("ul", { class: "flags" }, flags.map((f) => h("li", { "data-flag": f.code, text: f.text })))
            : h("div", { text: "无异常标记" }),
          h("div", { class: "sha", text: `SHA-256 ${photo.sha256}` }),
        ),
      ),
    );
  }
}

async function download(path, name) {
  try {
    const url = URL.createObjectURL(await api(path, "blob"));
    const link = h("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    $("search-error").textContent = `下载失败：${error.message}`;
  }
}

// --- Signing in ------------------------------------------------------------------------------

function showSignIn() {
  const dialog = $("sign-in");
  $("sign-out").hidden = true;
  $("who").textContent = "";
  if (!dialog.open) dialog.showModal();
}

async function signIn(event) {
  event.preventDefault();
  const form = $("sign-in-form").elements;
  const response = await fetch(`${API}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.username.value, password: form.password.value }),
  });
  if (!response.ok) {
    $("sign-in-error").textContent = response.status === 429 ? "尝试过于频繁，请稍后再试" : "用户名或密码错误";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, (await response.json()).token);
  $("sign-in").close();
  await started();
}

async function started() {
  const me = await api("/auth/me");
  $("who").textContent = `${me.username}（${me.role}）`;
  $("sign-out").hidden = false;
  const params = new URLSearchParams(location.search);
  const form = $("search").elements;
  for (const [name, value] of params) if (form[name]) form[name].value = value;
  if ([...params].length) await search();
}

async function signOut() {
  try {
    await fetch(`${API}/auth/logout`, { method: "POST", headers: { Authorization: `Bearer ${token()}` } });
  } catch { /* offline: the token is forgotten here anyway */ }
  sessionStorage.removeItem(TOKEN_KEY);
  location.assign("/audit");
}

function main() {
  $("search").addEventListener("submit", search);
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("dl-zip").addEventListener("click", () => download(`/issues/${current.id}/evidence.zip`, `${current.code}-evidence.zip`));
  $("dl-comparison").addEventListener("click", () => download(`/issues/${current.id}/comparison.jpg`, `${current.code}-comparison.jpg`));
  $("dl-ledger").addEventListener("click", () => download(`/exports/ledger.csv?q=${encodeURIComponent(current.code)}`, `${current.code}-ledger.csv`));
  if (token()) started().catch(() => showSignIn());
  else showSignIn();
}

main();
