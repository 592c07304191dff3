// Shared by every screen: storage, words (中文 first, English second), DOM, the API client.

// --- Device storage (localStorage, JSON) ------------------------------------------------------
export const store = {
  get(key, fallback = null) {
    try {
      const raw = localStorage.getItem("gp." + key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem("gp." + key, JSON.stringify(value));
    } catch {
      /* full or blocked: the app still works for this session */
    }
  },
  del(key) {
    try {
      localStorage.removeItem("gp." + key);
    } catch {
      /* ignore */
    }
  },
};

// --- Words ------------------------------------------------------------------------------------
const WORDS = {
  zh: {
    app: "网格上报",
    loading: "加载中…",
    navigation: "导航",
    switchLang: "English",
    switchLangLabel: "Switch to English",
    signOut: "退出",
    signOutLabel: "退出登录",
    username: "用户名",
    password: "密码",
    signIn: "登录",
    signingIn: "正在登录…",
    signInTitle: "网格员登录",
    expired: "登录已过期，请重新登录。待传的内容已保存在手机上，不会丢失。",
    badLogin: "用户名或密码错误",
    needNetwork: "需要网络连接",
    wrongUserOutbox: "待传中有 {n} 件属于 {user}，需 {user} 登录后才能上传。",
    notForRole: "此应用供网格员和督查员使用。请在电脑上使用 {role} 功能。",
    tabReport: "上报",
    tabTasks: "任务",
    tabReview: "审核",
    tabOutbox: "待传",
    category: "类别",
    photos: "照片",
    chosenPhotos: "已选的照片",
    takePhoto: "拍照",
    fromGallery: "从相册选择",
    removePhoto: "移除第 {n} 张照片",
    noPhotos: "还没有照片，请拍照。",
    location: "位置",
    locating: "正在定位…",
    accuracy: "精度 ±{m} 米",
    refreshLocation: "刷新位置",
    locationDenied: "未获得定位权限。将使用照片自带的 GPS 位置（如果有）。",
    locationFailed: "无法定位（{reason}）。将使用照片自带的 GPS 位置（如果有）。",
    noGeolocation: "此浏览器不支持定位。将使用照片自带的 GPS 位置（如果有）。",
    description: "描述",
    descriptionHint: "例如：电线杆上小广告约十张",
    quantity: "数量",
    submit: "提交",
    pickCategory: "请选择类别",
    needPhoto: "请至少拍一张照片",
    tooManyPhotos: "最多 10 张照片",
    queued: "已保存到待传，正在上传",
    queuedOffline: "已保存到待传，联网后自动上传",
    storageFull: "手机存储空间不足，无法保存：{reason}",
    outboxTitle: "待传",
    outboxEmpty: "没有待传的内容。",
    outboxCount: "{n} 件待传",
    stateQueued: "排队中",
    stateSending: "上传中",
    stateRetry: "等待重试（{when}）",
    stateFailed: "失败",
    stateDone: "已完成",
    stateWaitingUser: "等待 {user} 登录",
    stateBlocked: "等待照片上传",
    offline: "当前离线，联网后自动上传",
    remove: "删除",
    removeItem: "删除这一项：{what}",
    retryNow: "立即重试",
    clearDone: "清除已完成",
    kindReport: "上报",
    kindPhotos: "照片",
    kindAction: "操作",
    photoCount: "{n} 张照片，{size}",
    reportDone: "已上报 {code}",
    photosDone: "照片已上传（{code}）",
    actionDone: "已完成：{action}",
    progress: "已发送 {sent} / {total}",
    attempts: "第 {n} 次尝试",
    lastError: "上次错误：{reason}",
    newReport: "再报一件",
    tasksTitle: "我的任务",
    tasksEmpty: "没有派给本单位的任务。",
    overdueBy: "已超期 {d}",
    dueIn: "剩余 {d}",
    noDeadline: "无期限",
    cachedAt: "离线：显示 {time} 的数据",
    loadFailed: "加载失败：{reason}",
    retry: "重试",
    refresh: "刷新",
    back: "返回",
    before: "整改前",
    after: "整改后",
    afterPhotos: "整改后照片",
    afterHint: "拍摄整改后的同一位置，照片会先进入待传再上传。",
    uploadAfter: "上传整改后照片",
    afterQueued: "整改后照片已加入待传",
    afterWaiting: "{n} 张整改后照片在待传中",
    needAfter: "请先上传整改后照片",
    reviewTitle: "审核",
    queueIntake: "待受理",
    queueVerify: "待验收",
    queueEmpty: "没有待处理的问题。",
    note: "备注",
    noteFor: "{action}说明",
    needNote: "请填写备注",
    needDeadline: "请选择整改期限",
    office: "派往单位",
    deadline: "整改期限",
    duplicateOf: "重复于哪个问题",
    confirm: "确认",
    cancel: "取消",
    actionSent: "已{action}",
    queuedAction: "已加入待传：{action}",
    versionConflict: "问题已被他人更新，已刷新，请再看一下。",
    reportedAt: "上报于 {time}",
    reportedBy: "上报人 {who}",
    unit: "责任单位 {unit}",
    rework: "返工 {n} 次",
    enlarge: "查看大图：{what}",
    close: "关闭",
    photoAlt: "{kind}照片 {n}",
    newPhotoAlt: "新照片 {n}",
    status_reported: "待受理",
    status_accepted: "已受理",
    status_dispatched: "整改中",
    status_rectified: "待验收",
    status_closed: "已办结",
    status_rejected: "不予受理",
    status_duplicate: "重复",
    act_accept: "受理",
    act_reject: "不予受理",
    act_mark_duplicate: "标记重复",
    act_dispatch: "派遣",
    act_return: "退回",
    act_extend_deadline: "延期",
    act_submit_rectification: "提交整改",
    act_verify_pass: "验收通过",
    act_verify_fail: "验收不通过",
    act_reopen: "重新派遣",
    err_network: "网络不通，稍后自动重试",
    err_server: "服务器暂时出错（{status}），稍后自动重试",
    err_photo_too_large: "照片过大 (最大 {mb} MB)",
    err_unsupported_media_type: "不是可接受的照片格式（只接受 JPEG、PNG、WebP、HEIC、AVIF）",
    err_image_unreadable: "照片已损坏或不完整，无法读取",
    err_image_too_many_pixels: "照片像素过多",
    err_too_many_files: "照片太多，一次最多 10 张",
    err_location_required: "没有位置：请允许手机定位，或使用带 GPS 的照片",
    err_forbidden: "没有权限：{detail}",
    err_not_found: "问题不存在或无权查看",
    err_invalid_transition: "问题状态已变化，此操作不可用",
    err_after_photo_required: "请先上传整改后照片",
    err_photo_not_allowed: "当前状态不能添加此类照片",
    err_idempotency_conflict: "重复提交冲突，请删除后重新上报",
    err_validation_error: "填写有误：{detail}",
    err_unauthenticated: "登录已过期，请重新登录",
    undo: "撤销",
    removeAsk: "删除这一项？",
    removeAskText: "{what} 还没有上传。删除后，它的照片也从手机上删掉。",
    removed: "已删除：{what}",
    chosenAfterPhotos: "已选的整改后照片",
    removeAfterPhoto: "移除第 {n} 张整改后照片",
    noAfterPhotos: "还没有整改后照片。",
    newAfterPhotoAlt: "整改后新照片 {n}",
    onTheSpot: "立行立改（已当场整改）",
    onTheSpotHint: "当场已整改：再拍整改后的同一位置。提交后由他人验收。",
    takeAfterPhoto: "拍整改后照片",
    moreBefore: "补充整改前照片",
    uploadBefore: "上传补充照片",
    beforeQueued: "补充照片已加入待传",
    pickDuplicate: "请选择重复的原问题",
    noNearby: "{m} 米内没有其他未办结的问题。",
    metresAway: "相距 {m} 米",
    search: "搜索",
    searchHint: "编号或描述",
    allUnits: "全部单位",
    unitFilter: "单位",
    sortBy: "排序",
    sort_reported: "最早上报",
    sort_deadline: "期限最近",
    onlyOverdue: "只看超期",
    queueExtension: "延期申请",
    queueWorking: "整改中",
    queueOverdue: "已超期",
    showMore: "显示更多（还有 {n} 件）",
    mineTitle: "我的上报",
    mineEmpty: "还没有上报。",
    changed: "有更新",
    tabMine: "我的上报",
    seeMine: "在我的上报中查看",
    seeMineList: "查看我的上报",
    metres: "{m} 米",
    kilometres: "{km} 公里",
    mapLabel: "{what} 所在位置的地图",
    mapIssue: "问题位置",
    mapPhone: "你的位置",
    distanceFromYou: "距你 {d}",
    noPosition: "未获得你的位置",
    where: "位置和导航",
    navWith: "{app}导航",
    app_amap: "高德地图",
    app_baidu: "百度地图",
    extensionAsked: "延期申请：申请延至 {time}",
    act_request_extension: "申请延期",
    act_approve_extension: "批准延期",
    act_refuse_extension: "不批准延期",
    needOverrideNote: "照片有异常标记：验收通过前请填写说明",
    flaggedTitle: "照片异常，请核实：",
    overrideNote: "验收说明（照片有异常，通过需填写）",
    rectifiedQuantity: "整改数量",
    badQuantity: "整改数量须为不小于 0 的数字",
    returnedBy: "{who} 退回（{time}）：",
    flaggedChip: "照片异常",
    days: "{n}天",
    hours: "{n}小时",
    minutes: "{n}分钟",
    inSeconds: "{n} 秒后",
  },
  en: {
    app: "Grid report",
    loading: "Loading…",
    navigation: "Navigation",
    switchLang: "中文",
    switchLangLabel: "切换到中文",
    signOut: "Sign out",
    signOutLabel: "Sign out",
    username: "Username",
    password: "Password",
    signIn: "Sign in",
    signingIn: "Signing in…",
    signInTitle: "Grid worker sign-in",
    expired: "Your session expired; sign in again. The outbox is kept on this phone.",
    badLogin: "Wrong username or password",
    needNetwork: "A network connection is needed",
    wrongUserOutbox: "{n} item(s) in the outbox belong to {user}; they upload once {user} signs in.",
    notForRole: "This app is for grid workers and supervisors. Use a computer for the {role} tools.",
    tabReport: "Report",
    tabTasks: "Tasks",
    tabReview: "Review",
    tabOutbox: "Outbox",
    category: "Category",
    photos: "Photos",
    chosenPhotos: "Chosen photos",
    takePhoto: "Take photo",
    fromGallery: "From gallery",
    removePhoto: "Remove photo {n}",
    noPhotos: "No photos yet; take one.",
    location: "Location",
    locating: "Locating…",
    accuracy: "accuracy ±{m} m",
    refreshLocation: "Refresh location",
    locationDenied: "Location permission denied. The photo's own GPS (if any) will be used.",
    locationFailed: "No position ({reason}). The photo's own GPS (if any) will be used.",
    noGeolocation: "This browser has no location. The photo's own GPS (if any) will be used.",
    description: "Description",
    descriptionHint: "e.g. about ten flyposters on a lamp post",
    quantity: "Quantity",
    submit: "Submit",
    pickCategory: "Choose a category",
    needPhoto: "Take at least one photo",
    tooManyPhotos: "At most 10 photos",
    queued: "Saved to the outbox, uploading",
    queuedOffline: "Saved to the outbox; it uploads when the network returns",
    storageFull: "Not enough storage on this phone: {reason}",
    outboxTitle: "Outbox",
    outboxEmpty: "Nothing waiting to upload.",
    outboxCount: "{n} waiting",
    stateQueued: "Queued",
    stateSending: "Uploading",
    stateRetry: "Retrying {when}",
    stateFailed: "Failed",
    stateDone: "Done",
    stateWaitingUser: "Waiting for {user} to sign in",
    stateBlocked: "Waiting for photos to upload",
    offline: "Offline; uploads resume when the network returns",
    remove: "Remove",
    removeItem: "Remove this item: {what}",
    retryNow: "Retry now",
    clearDone: "Clear finished",
    kindReport: "Report",
    kindPhotos: "Photos",
    kindAction: "Action",
    photoCount: "{n} photo(s), {size}",
    reportDone: "Reported as {code}",
    photosDone: "Photos uploaded ({code})",
    actionDone: "Done: {action}",
    progress: "Sent {sent} of {total}",
    attempts: "attempt {n}",
    lastError: "Last error: {reason}",
    newReport: "Report another",
    tasksTitle: "My tasks",
    tasksEmpty: "Nothing is dispatched to your unit.",
    overdueBy: "Overdue by {d}",
    dueIn: "{d} left",
    noDeadline: "No deadline",
    cachedAt: "Offline: showing data from {time}",
    loadFailed: "Could not load: {reason}",
    retry: "Retry",
    refresh: "Refresh",
    back: "Back",
    before: "Before",
    after: "After",
    afterPhotos: "After-photos",
    afterHint: "Photograph the same spot after the fix; photos go through the outbox.",
    uploadAfter: "Upload after-photos",
    afterQueued: "After-photos added to the outbox",
    afterWaiting: "{n} after-photo(s) in the outbox",
    needAfter: "Upload an after-photo first",
    reviewTitle: "Review",
    queueIntake: "To accept and dispatch",
    queueVerify: "To verify",
    queueEmpty: "Nothing waiting.",
    note: "Note",
    noteFor: "Note for {action}",
    needNote: "Please write a note",
    needDeadline: "Please choose a deadline",
    office: "Dispatch to",
    deadline: "Deadline",
    duplicateOf: "Duplicate of which issue",
    confirm: "Confirm",
    cancel: "Cancel",
    actionSent: "{action}: done",
    queuedAction: "Added to the outbox: {action}",
    versionConflict: "Someone else changed this issue; it has been reloaded.",
    reportedAt: "Reported {time}",
    reportedBy: "by {who}",
    unit: "Unit {unit}",
    rework: "Reworked {n}×",
    enlarge: "Enlarge {what}",
    close: "Close",
    photoAlt: "{kind} photo {n}",
    newPhotoAlt: "New photo {n}",
    status_reported: "Reported",
    status_accepted: "Accepted",
    status_dispatched: "Dispatched",
    status_rectified: "Rectified",
    status_closed: "Closed",
    status_rejected: "Rejected",
    status_duplicate: "Duplicate",
    act_accept: "Accept",
    act_reject: "Reject",
    act_mark_duplicate: "Mark duplicate",
    act_dispatch: "Dispatch",
    act_return: "Return",
    act_extend_deadline: "Extend deadline",
    act_submit_rectification: "Submit rectification",
    act_verify_pass: "Pass",
    act_verify_fail: "Fail",
    act_reopen: "Reopen",
    err_network: "No network; retrying automatically",
    err_server: "Server error ({status}); retrying automatically",
    err_photo_too_large: "Photo too large (max {mb} MB)",
    err_unsupported_media_type: "Not an accepted photo format (JPEG, PNG, WebP, HEIC, AVIF only)",
    err_image_unreadable: "The photo is damaged or incomplete",
    err_image_too_many_pixels: "The photo has too many pixels",
    err_too_many_files: "Too many photos; at most 10 at once",
    err_location_required: "No location: allow the phone's location or use a photo with GPS",
    err_forbidden: "Not allowed: {detail}",
    err_not_found: "No such issue, or not yours to see",
    err_invalid_transition: "The issue's status changed; this action is no longer possible",
    err_after_photo_required: "Upload an after-photo first",
    err_photo_not_allowed: "Photos of this kind cannot be added now",
    err_idempotency_conflict: "Conflicting resubmission; remove it and report again",
    err_validation_error: "Invalid input: {detail}",
    err_unauthenticated: "Session expired; sign in again",
    undo: "Undo",
    removeAsk: "Remove this item?",
    removeAskText: "{what} has not been uploaded. Its photos are removed from the phone too.",
    removed: "Removed: {what}",
    chosenAfterPhotos: "Chosen after-photos",
    removeAfterPhoto: "Remove after-photo {n}",
    noAfterPhotos: "No after-photos yet.",
    newAfterPhotoAlt: "New after-photo {n}",
    onTheSpot: "Fixed on the spot (立行立改)",
    onTheSpotHint: "Fixed already: photograph the same spot after the fix. Someone else verifies it.",
    takeAfterPhoto: "Take after-photo",
    moreBefore: "More before-photos",
    uploadBefore: "Upload before-photos",
    beforeQueued: "Before-photos added to the outbox",
    pickDuplicate: "Choose the issue this one duplicates",
    noNearby: "No other open issue within {m} m.",
    metresAway: "{m} m away",
    search: "Search",
    searchHint: "Code or text",
    allUnits: "All units",
    unitFilter: "Unit",
    sortBy: "Sort",
    sort_reported: "Oldest report",
    sort_deadline: "Nearest deadline",
    onlyOverdue: "Overdue only",
    queueExtension: "Extension requests",
    queueWorking: "Being fixed",
    queueOverdue: "Overdue",
    showMore: "Show more ({n} left)",
    mineTitle: "My reports",
    mineEmpty: "No reports yet.",
    changed: "Updated",
    tabMine: "My reports",
    seeMine: "See it in My reports",
    seeMineList: "See my reports",
    metres: "{m} m",
    kilometres: "{km} km",
    mapLabel: "Map of where {what} is",
    mapIssue: "The issue",
    mapPhone: "You",
    distanceFromYou: "{d} from you",
    noPosition: "Your position is unknown",
    where: "Where it is",
    navWith: "Navigate with {app}",
    app_amap: "AMap",
    app_baidu: "Baidu Maps",
    extensionAsked: "Extension asked: until {time}",
    act_request_extension: "Ask for more time",
    act_approve_extension: "Approve extension",
    act_refuse_extension: "Refuse extension",
    needOverrideNote: "The photos are flagged: write a note before passing",
    flaggedTitle: "Flagged photos — check before deciding:",
    overrideNote: "Note (flagged photos: needed to pass)",
    rectifiedQuantity: "Quantity rectified",
    badQuantity: "The quantity must be a number of at least 0",
    returnedBy: "Returned by {who} ({time}):",
    flaggedChip: "Flagged",
    days: "{n} d",
    hours: "{n} h",
    minutes: "{n} min",
    inSeconds: "in {n} s",
  },
};

export let lang = store.get("lang", "zh") === "en" ? "en" : "zh";

export function setLang(value) {
  lang = value;
  store.set("lang", value);
  document.documentElement.lang = value === "en" ? "en" : "zh-CN";
}

export function t(key, vars = {}) {
  const text = WORDS[lang][key] ?? WORDS.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : ""));
}

// --- DOM --------------------------------------------------------------------------------------
/** h("button", {class: "big", onclick: fn, "aria-label": "…"}, "text", child, …) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const present = (children) => children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false);
/** Replace an element's children, skipping null/false (DOM's replaceChildren would print them). */
export const fill = (el, ...children) => el.replaceChildren(...present(children));
export const add = (el, ...children) => el.append(...present(children));

let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

/** A labelled field: <label for> + control, so the control's accessible name is the label. */
export function field(labelText, control, hint = null) {
  control.id ||= nextId("f");
  return h("div", { class: "field" }, h("label", { for: control.id, text: labelText }), control, hint);
}

let toastTimer = 0;
/** A short message above the tabs; with `undo`, a 撤销 button that calls it (while shown). */
export function toast(message, kind = "info", { undo = null, ms = 4000 } = {}) {
  const el = document.getElementById("toast");
  if (!el) return;
  fill(el, h("span", { text: message }), undo ? h("button", { type: "button", class: "undo", text: t("undo"), onclick: () => (hide(), undo()) }) : null);
  el.className = `toast show ${kind}${undo ? " with-undo" : ""}`;
  const hide = () => (el.className = "toast");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(hide, ms);
}

/** The app's own confirmation (not window.confirm): resolves true for `ok`, false otherwise. */
export function confirmSheet({ title, text = "", ok, danger = true }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const done = (answer) => {
      overlay.remove();
      document.removeEventListener("keydown", onKey);
      if (opener && opener.isConnected) opener.focus();
      resolve(answer);
    };
    const onKey = (e) => e.key === "Escape" && done(false);
    const titleId = nextId("sheet");
    const overlay = h(
      "div",
      { class: "sheet-back", onclick: (e) => e.target === overlay && done(false) },
      h(
        "div",
        { class: "sheet card", role: "alertdialog", "aria-modal": "true", "aria-labelledby": titleId },
        h("h2", { id: titleId, text: title }),
        text ? h("p", { text }) : null,
        h(
          "div",
          { class: "row" },
          h("button", { type: "button", class: "secondary big", text: t("cancel"), onclick: () => done(false) }),
          h("button", { type: "button", class: `${danger ? "danger" : "primary"} big`, "data-confirm": "", text: ok, onclick: () => done(true) }),
        ),
      ),
    );
    document.addEventListener("keydown", onKey);
    add(document.body, overlay);
    overlay.querySelector("button").focus(); // 取消 first: a stray tap keeps the item
  });
}

// --- Identifiers ------------------------------------------------------------------------------
/** A UUID v4; crypto.randomUUID exists only on https, getRandomValues everywhere. */
export function uuid() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((v) => v.toString(16).padStart(2, "0")).join("");
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// --- Formatting -------------------------------------------------------------------------------
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function formatDuration(ms) {
  const minutes = Math.max(1, Math.round(Math.abs(ms) / 60000));
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  if (days) return t("days", { n: days }) + (hours ? " " + t("hours", { n: hours }) : "");
  if (hours) return t("hours", { n: hours }) + (minutes % 60 ? " " + t("minutes", { n: minutes % 60 }) : "");
  return t("minutes", { n: minutes });
}

export function formatTime(iso) {
  const d = new Date(iso);
  const locale = lang === "en" ? "en-GB" : "zh-CN";
  return d.toLocaleString(locale, { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

/** "2026-11-27T18:00" for <input type=datetime-local>, in the phone's zone. */
export function localInputValue(date) {
  const p = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${p(date.getMonth() + 1)}-${p(date.getDate())}T${p(date.getHours())}:${p(date.getMinutes())}`;
}

// --- Session ----------------------------------------------------------------------------------
export const session = {
  token: store.get("token"),
  user: store.get("user"),
  expired: false,
  set(token, user) {
    this.token = token;
    this.user = user;
    this.expired = false;
    store.set("token", token);
    store.set("user", user);
    store.set("lastUser", user.username);
  },
  clear() {
    this.token = null;
    this.user = null;
    store.del("token");
    store.del("user");
  },
};

/** Set by app.js: what to do when the server says the token is no good (401). */
export const hooks = { unauthorized: () => {} };

// --- API --------------------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
  /** Worth retrying later: no network, the server's fault, or asked to slow down. */
  get retryable() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

function authHeaders(extra = {}) {
  // The server's problem texts (and flag sentences) come in the app's language.
  const base = { "Accept-Language": lang === "en" ? "en" : "zh-CN", ...extra };
  return session.token ? { Authorization: `Bearer ${session.token}`, ...base } : base;
}

/** JSON in, JSON out; throws ApiError (status 0 when the network failed). */
export async function api(path, { method = "GET", json, headers = {}, timeout = 20000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: authHeaders(json === undefined ? headers : { "Content-Type": "application/json", ...headers }),
      body: json === undefined ? undefined : JSON.stringify(json),
      signal: controller.signal,
      cache: "no-cache",
    });
  } catch {
    throw new ApiError(0, {});
  } finally {
    clearTimeout(timer);
  }
  const body = await readBody(response.headers.get("content-type"), () => response.text());
  if (!response.ok) {
    if (response.status === 401 && session.token) hooks.unauthorized();
    throw new ApiError(response.status, body || {});
  }
  return body;
}

async function readBody(type, text) {
  const raw = await text();
  if (!raw) return null;
  if (type && type.includes("json")) {
    try {
      return JSON.parse(raw);
    } catch {
      return null;
    }
  }
  return { detail: raw.slice(0, 200) };
}

/**
 * POST multipart with XMLHttpRequest, for its upload progress (bytes sent).
 * Resolves with {status, body, retryAfter}; status 0 when the network failed or stalled.
 */
export function upload(path, form, { headers = {}, onProgress = () => {}, stallMs = 60000, signal } = {}) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    if (signal) signal.addEventListener("abort", () => xhr.abort());
    let last = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - last > stallMs) xhr.abort();
    }, 5000);
    const done = (status) => {
      clearInterval(watchdog);
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = { detail: (xhr.responseText || "").slice(0, 200) };
      }
      resolve({ status, body, retryAfter: Number(xhr.getResponseHeader("Retry-After")) || 0 });
    };
    xhr.open("POST", path);
    for (const [name, value] of Object.entries(authHeaders(headers))) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (e) => {
      last = Date.now();
      onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    };
    xhr.onprogress = () => (last = Date.now());
    xhr.onload = () => done(xhr.status);
    xhr.onerror = () => done(0);
    xhr.onabort = () => done(0);
    xhr.send(form);
  });
}

/** Plain words for an error, from the problem+json `code`, `title` and `detail`. */
export function problemText(status, problem = {}) {
  if (status === 0) return t("err_network");
  const code = problem.code;
  if (code === "photo_too_large") {
    const mb = problem.max_bytes ? Math.round(problem.max_bytes / 1048576) : 25;
    return t("err_photo_too_large", { mb });
  }
  if (code && WORDS.zh["err_" + code]) return t("err_" + code, { detail: problem.detail || "" });
  if (status >= 500 || status === 429) return t("err_server", { status });
  const words = [problem.title, problem.detail].filter(Boolean);
  return words.length ? [...new Set(words)].join(": ") : `HTTP ${status}`;
}

// --- Vocabularies, cached for offline use ----------------------------------------------------
// The contract's order: the campaign's most frequent problems first.
const CATEGORY_ORDER = [
  "flyposter", "banner", "wall_ad", "road_occupation", "outside_store", "bare_soil", "garbage",
  "illegal_building", "construction_site", "road_damage", "street_light", "shared_bike",
  "scattered_coal", "fire_hazard", "other",
];

export async function categories({ refresh = false } = {}) {
  const cached = store.get("categories");
  if (cached && !refresh) return cached;
  const rows = await api("/api/v1/categories");
  const rank = (c) => (CATEGORY_ORDER.includes(c.code) ? CATEGORY_ORDER.indexOf(c.code) : 99);
  rows.sort((a, b) => rank(a) - rank(b));
  store.set("categories", rows);
  return rows;
}

export async function orgUnits({ refresh = false } = {}) {
  const cached = store.get("orgUnits");
  if (cached && !refresh) return cached;
  const rows = await api("/api/v1/org-units");
  store.set("orgUnits", rows);
  return rows;
}

export function categoryName(category) {
  return lang === "en" ? category.name_en : category.name;
}

// --- Authenticated images --------------------------------------------------------------------
const imageURLs = new Map();

/** An <img> whose bytes are fetched with the bearer token (img src cannot send headers). */
export function authImage(path, alt, cls = "thumb") {
  const img = h("img", { class: cls, alt, decoding: "async" });
  const cached = imageURLs.get(path);
  if (cached) img.src = cached;
  else
    fetch(path, { headers: authHeaders() })
      .then((r) => (r.ok ? r.blob() : Promise.reject(r.status)))
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        imageURLs.set(path, url);
        img.src = url;
      })
      .catch(() => img.classList.add("broken"));
  return img;
}

/** Forget every photo this page or the service worker holds (sign-in, sign-out, expiry). */
export function forgetImages() {
  for (const url of imageURLs.values()) URL.revokeObjectURL(url);
  imageURLs.clear();
  if (!("caches" in window)) return Promise.resolve();
  return caches
    .keys()
    .then((names) => Promise.all(names.filter((n) => n.startsWith("gp-photos")).map((n) => caches.delete(n))))
    .catch(() => {});
}
