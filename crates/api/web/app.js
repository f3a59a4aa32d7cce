// The web interface of `rutella daemon`: plain JavaScript over the JSON API
// (docs/API.md). Everything the network sends (file names, addresses,
// reasons) is put on the page as text, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "rutella.api-token";
  const API = "/api/v1";
  // Longest event the page buffers while reading a stream (one result or
  // download is far smaller): a stream that sends more is dropped.
  const MAX_EVENT = 1 << 20;
  const TICK_MS = 5000;

  const $ = (id) => document.getElementById(id);

  let token = "";
  try {
    token = localStorage.getItem(TOKEN_KEY) || "";
  } catch (_) {
    token = "";
  }
  let running = false;
  let eventsAbort = null;
  let ticker = null;
  let search = null;
  const downloads = new Map();

  class Unauthorized extends Error {}
  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  // ---- small helpers -------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function button(text, cls, onClick) {
    const b = el("button", cls, text);
    b.type = "button";
    b.addEventListener("click", () => {
      b.disabled = true;
      Promise.resolve()
        .then(onClick)
        .catch(shown)
        .finally(() => {
          if (b.isConnected) b.disabled = false;
        });
    });
    return b;
  }

  function size(n) {
    if (typeof n !== "number" || !isFinite(n) || n < 0) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let u = 0;
    while (n >= 1024 && u < units.length - 1) {
      n /= 1024;
      u += 1;
    }
    return u === 0 ? `${n} B` : `${n.toFixed(1)} ${units[u]}`;
  }

  function duration(secs) {
    if (typeof secs !== "number" || !isFinite(secs) || secs < 0) return "";
    secs = Math.round(secs);
    if (secs < 60) return `${secs} s`;
    if (secs < 3600) return `${Math.floor(secs / 60)} min ${secs % 60} s`;
    return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min`;
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  function say(id, text, isError) {
    const p = $(id);
    p.textContent = text || "";
    p.classList.toggle("error", !!isError);
  }

  // Shows an error of a click or form in the status line (a refused token
  // has its own form, so it is not repeated here).
  function shown(err) {
    if (err instanceof Unauthorized) return;
    if (err && err.name === "AbortError") return;
    say("status", `Error: ${err && err.message ? err.message : err}`, true);
  }

  // ---- the API -------------------------------------------------------

  async function reason(res) {
    const text = (await res.text()).trim();
    try {
      const data = JSON.parse(text);
      if (data && typeof data.error === "string") return data.error;
    } catch (_) {
      // a plain text reason
    }
    return text || `${res.status} ${res.statusText}`;
  }

  async function api(method, path, body) {
    if (!token) {
      askToken("");
      throw new Unauthorized("no token");
    }
    const init = { method, headers: { Authorization: `Bearer ${token}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(API + path, init);
    if (res.status === 401) {
      const why = await reason(res);
      refused(why);
      throw new Unauthorized(why);
    }
    if (!res.ok) throw new ApiError(await reason(res), res.status);
    const text = await res.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }

  // Reads a Server-Sent Events stream with fetch() (so that the token
  // travels in a header, never in the address) and calls onEvent(name,
  // data) for each event; resolves when the stream ends.
  async function stream(path, signal, onEvent) {
    const res = await fetch(API + path, {
      headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
      signal,
    });
    if (res.status === 401) {
      const why = await reason(res);
      refused(why);
      throw new Unauthorized(why);
    }
    if (!res.ok || !res.body) throw new ApiError(await reason(res), res.status);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let end;
      while ((end = eventEnd(buf)) !== null) {
        dispatch(buf.slice(0, end.at), onEvent);
        buf = buf.slice(end.at + end.len);
      }
      if (buf.length > MAX_EVENT) {
        reader.cancel().catch(() => {});
        throw new Error("the daemon sent an event too long to read");
      }
    }
  }

  function eventEnd(buf) {
    const m = /\r\n\r\n|\n\n|\r\r/.exec(buf);
    return m ? { at: m.index, len: m[0].length } : null;
  }

  function dispatch(block, onEvent) {
    let name = "message";
    const data = [];
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (data.length === 0) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch (_) {
      return;
    }
    onEvent(name, parsed);
  }

  // ---- the token ----------------------------------------------------

  function askToken(why) {
    stop();
    $("app").hidden = true;
    $("jump").hidden = true;
    $("token-section").hidden = false;
    const error = $("token-error");
    error.hidden = !why;
    error.textContent = why ? `The daemon refused the token: ${why.replace(/\.$/, "")}. Enter it again.` : "";
    $("token-input").value = "";
    $("token-input").focus();
  }

  function refused(why) {
    token = "";
    try {
      localStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // nothing kept
    }
    say("status", "Not connected.", false);
    askToken(why);
  }

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const given = $("token-input").value.trim();
    if (!given) return;
    token = given;
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch (_) {
      // kept for this page only
    }
    connect().catch(shown);
  });

  $("forget-token").addEventListener("click", () => refused(""));

  // ---- start and stop -------------------------------------------------

  async function connect() {
    const status = await api("GET", "/status");
    $("token-section").hidden = true;
    $("app").hidden = false;
    $("jump").hidden = false;
    showStatus(status);
    if (running) return;
    running = true;
    await Promise.all([refreshDownloads(), refreshUploads(), refreshShares(), refreshPeers(), refreshSettings()]);
    followEvents();
    ticker = setInterval(tick, TICK_MS);
  }

  function stop() {
    running = false;
    if (eventsAbort) eventsAbort.abort();
    eventsAbort = null;
    if (ticker) clearInterval(ticker);
    ticker = null;
    if (search) search.abort.abort();
    search = null;
  }

  function tick() {
    if (!running) return;
    refreshStatus().catch(shown);
    refreshUploads().catch(shown);
    for (const d of downloads.values()) {
      if (d.data.state === "running" || d.data.state === "queued") {
        refreshDownloads().catch(shown);
        break;
      }
    }
  }

  // The daemon's event stream, followed again (after a growing pause) when
  // it breaks, until the page stops.
  async function followEvents() {
    let pause = 1000;
    while (running) {
      const abort = new AbortController();
      eventsAbort = abort;
      try {
        await stream("/events", abort.signal, onEvent);
        pause = 1000;
      } catch (err) {
        if (err instanceof Unauthorized || abort.signal.aborted) return;
        say("status", "Lost the daemon's events; trying again…", true);
      }
      if (!running || abort.signal.aborted) return;
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 15000);
      if (running) {
        refreshStatus().catch(shown);
        refreshDownloads().catch(shown);
      }
    }
  }

  function onEvent(name, data) {
    switch (name) {
      case "download_progress":
      case "download_done":
      case "download_failed":
        if (data && data.id !== undefined) showDownload(data);
        break;
      case "peer_joined":
      case "peer_left":
        refreshPeers().catch(shown);
        refreshStatus().catch(shown);
        break;
      case "upload_started":
      case "upload_done":
        refreshUploads().catch(shown);
        break;
      case "reachability":
        refreshStatus().catch(shown);
        break;
      case "lagged":
        // Events were missed: read the lists again.
        refreshDownloads().catch(shown);
        refreshUploads().catch(shown);
        refreshPeers().catch(shown);
        break;
      default:
        break;
    }
  }

  // ---- status --------------------------------------------------------

  async function refreshStatus() {
    showStatus(await api("GET", "/status"));
  }

  function showStatus(s) {
    if (!s) return;
    const parts = [];
    if (s.tcp) parts.push(`node ${s.tcp}`);
    if (typeof s.peers === "number") parts.push(plural(s.peers, "peer", "peers"));
    if (s.reachability && s.reachability.text) parts.push(s.reachability.text);
    if (typeof s.bytes_up === "number" && typeof s.bytes_down === "number") {
      parts.push(`↑ ${size(s.bytes_up)} ↓ ${size(s.bytes_down)}`);
    }
    say("status", parts.join(" · "), false);
  }

  // ---- search ---------------------------------------------------------

  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const query = $("search-input").value.trim();
    if (query) startSearch(query).catch(shown);
  });

  async function startSearch(query) {
    if (search) {
      search.abort.abort();
      const old = search.id;
      search = null;
      api("DELETE", `/searches/${encodeURIComponent(old)}`).catch(() => {});
    }
    $("results").replaceChildren();
    say("search-info", `Searching for “${query}”…`, false);
    let created;
    try {
      created = await api("POST", "/searches", { query });
    } catch (err) {
      if (!(err instanceof Unauthorized)) say("search-info", `Search failed: ${err.message}`, true);
      return;
    }
    const s = { id: created.id, query, abort: new AbortController(), items: new Map(), done: false };
    search = s;
    try {
      await stream(`/searches/${encodeURIComponent(s.id)}/events`, s.abort.signal, (name, data) => {
        if (search !== s) return;
        if (name === "result") showResult(s, data);
        else if (name === "done") {
          s.done = true;
          const answered = data && typeof data.peers_answered === "number" ? data.peers_answered : 0;
          say(
            "search-info",
            `${plural(s.items.size, "file", "files")} for “${query}”; ${plural(answered, "peer", "peers")} answered.`,
            false,
          );
        }
      });
    } catch (err) {
      if (err instanceof Unauthorized || s.abort.signal.aborted) return;
      if (search === s) say("search-info", `Search stopped: ${err.message}`, true);
      return;
    }
    if (search === s && !s.done) {
      say("search-info", `${plural(s.items.size, "file", "files")} for “${query}”.`, false);
    }
  }

  function peersText(peers) {
    if (peers.length === 0) return "no peer";
    if (peers.length === 1) return `on ${peers[0]}`;
    return `same file on ${peers.length} peers`;
  }

  function showResult(s, r) {
    if (!r || typeof r.index !== "number") return;
    let item = s.items.get(r.index);
    if (!item) {
      const li = el("li", "result");
      li.dataset.index = String(r.index);
      const name = el("span", "name");
      const meta = el("span", "meta");
      const get = el("button", "get", "Download");
      get.type = "button";
      get.addEventListener("click", () => startDownload(s, item, get));
      const text = el("div", "text");
      text.append(name, meta);
      li.append(text, get);
      item = { li, name, meta, get };
      s.items.set(r.index, item);
      $("results").append(li);
      if (!s.done) say("search-info", `Searching for “${s.query}”… ${plural(s.items.size, "file", "files")} so far.`, false);
    }
    item.data = r;
    const peers = Array.isArray(r.peers) ? r.peers : [];
    item.name.textContent = r.name || "(no name)";
    item.name.title = r.hash || "";
    const bits = [];
    bits.push(typeof r.size === "number" ? size(r.size) : "size unknown");
    bits.push(peersText(peers));
    if (r.network) bits.push(r.network);
    item.meta.textContent = bits.join(" · ");
    item.meta.title = peers.join(", ");
    item.li.classList.toggle("several", peers.length > 1);
  }

  async function startDownload(s, item, get) {
    get.disabled = true;
    get.textContent = "Starting…";
    try {
      const d = await api("POST", "/downloads", { search: s.id, index: item.data.index });
      get.textContent = "In downloads";
      if (d && d.id !== undefined) showDownload(d);
      else await refreshDownloads();
    } catch (err) {
      get.disabled = false;
      get.textContent = "Download";
      if (!(err instanceof Unauthorized)) say("search-info", `Could not download ${item.data.name}: ${err.message}`, true);
    }
  }

  // ---- downloads --------------------------------------------------------

  async function refreshDownloads() {
    const list = await api("GET", "/downloads");
    if (!Array.isArray(list)) return;
    const seen = new Set();
    for (const d of list) {
      if (!d || d.id === undefined) continue;
      seen.add(String(d.id));
      showDownload(d);
    }
    for (const [id, d] of downloads) {
      // A cancelled download is forgotten by the daemon; the page shows it
      // until it is removed here.
      if (!seen.has(id) && d.data.state !== "cancelled") {
        d.li.remove();
        downloads.delete(id);
      }
    }
    // The daemon's queue order.
    const ul = $("downloads");
    for (const d of list) {
      const entry = d && downloads.get(String(d.id));
      if (entry) ul.append(entry.li);
    }
    $("downloads-empty").hidden = downloads.size > 0;
  }

  function downloadPath(id, action) {
    return `/downloads/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;
  }

  async function downloadAction(id, action) {
    const d = await api("POST", downloadPath(id, action));
    if (d && d.id !== undefined) showDownload(d);
    else await refreshDownloads();
  }

  // Moves a download one place up (-1) or down (+1) in the daemon's list:
  // queued downloads start in its order.
  async function moveDownload(id, step) {
    const entry = downloads.get(String(id));
    if (!entry) return;
    const rows = [...$("downloads").children];
    const at = Math.max(0, rows.indexOf(entry.li) + step);
    await api("POST", `${downloadPath(id)}/move`, { position: at });
    await refreshDownloads();
  }

  async function removeDownload(id) {
    const entry = downloads.get(String(id));
    if (!entry || entry.data.state !== "cancelled") {
      try {
        await api("DELETE", downloadPath(id));
      } catch (err) {
        // Already gone from the daemon's list: remove it here too.
        if (!(err instanceof ApiError && err.status === 404)) throw err;
      }
    }
    if (entry) entry.li.remove();
    downloads.delete(String(id));
    $("downloads-empty").hidden = downloads.size > 0;
  }

  function showDownload(d) {
    const key = String(d.id);
    let e = downloads.get(key);
    // The daemon forgets a cancelled download: a progress event sent just
    // before the cancel must not bring it back to life.
    if (e && e.data.state === "cancelled") return;
    if (!e) {
      const li = el("li", "download");
      li.dataset.id = key;
      const head = el("div", "head");
      const name = el("span", "name");
      const state = el("span", "state");
      head.append(name, state);
      const bar = el("div", "bar");
      const progress = el("progress");
      progress.max = 100;
      const pct = el("span", "pct");
      bar.append(progress, pct);
      const meta = el("div", "meta");
      const sources = el("div", "sources");
      const result = el("div", "result-line");
      const actions = el("div", "actions");
      li.append(head, bar, meta, sources, result, actions);
      e = { li, name, state, progress, pct, meta, sources, result, actions, shownState: null };
      downloads.set(key, e);
      $("downloads").append(li);
      $("downloads-empty").hidden = true;
    }
    e.data = d;
    e.name.textContent = d.name || "(no name)";
    const st = typeof d.state === "string" ? d.state : "unknown";
    e.state.textContent = st;
    e.li.className = `download state-${st.replace(/[^a-z]/g, "")}`;

    const total = typeof d.size === "number" && d.size > 0 ? d.size : null;
    const done = typeof d.done === "number" ? d.done : 0;
    let percent = null;
    if (st === "done") percent = 100;
    else if (total !== null) percent = Math.min(done >= total ? 100 : 99, Math.floor((done * 100) / total));
    if (percent === null) {
      e.progress.removeAttribute("value");
      e.pct.textContent = "";
    } else {
      e.progress.value = percent;
      e.pct.textContent = `${percent}%`;
    }
    e.progress.setAttribute("aria-label", `${d.name || "download"}: ${percent === null ? "progress unknown" : `${percent}%`}`);

    const bits = [];
    bits.push(total !== null ? `${size(done)} of ${size(total)}` : size(done));
    if (st === "running") {
      if (typeof d.speed_bps === "number") bits.push(`${size(d.speed_bps)}/s`);
      const left = duration(d.eta_secs);
      if (left) bits.push(`${left} left`);
    }
    e.meta.textContent = bits.join(" · ");

    const srcs = Array.isArray(d.sources) ? d.sources : [];
    e.sources.textContent = srcs.length
      ? `from ${srcs.map((s) => (s && s.path ? `${s.addr} (${s.path})` : s && s.addr)).join(", ")}`
      : "";

    if (d.error) {
      e.result.textContent = d.error;
      e.result.className = "result-line error";
    } else if (d.file) {
      e.result.textContent = `→ ${d.file}`;
      e.result.className = "result-line";
    } else {
      e.result.textContent = "";
      e.result.className = "result-line";
    }

    if (e.shownState !== st) {
      e.shownState = st;
      const id = d.id;
      const acts = [];
      if (st === "running" || st === "queued") acts.push(button("Pause", "pause", () => downloadAction(id, "pause")));
      if (st === "paused") acts.push(button("Resume", "resume", () => downloadAction(id, "resume")));
      if (st === "running" || st === "queued" || st === "paused") {
        acts.push(button("Cancel", "cancel", () => downloadAction(id, "cancel")));
        acts.push(button("Up", "up", () => moveDownload(id, -1)));
        acts.push(button("Down", "down", () => moveDownload(id, 1)));
      } else {
        acts.push(button("Remove", "remove", () => removeDownload(id)));
      }
      e.actions.replaceChildren(...acts);
    }
  }

  // ---- uploads, shares, peers -----------------------------------------

  async function refreshUploads() {
    const list = await api("GET", "/uploads");
    const ul = $("uploads");
    const items = (Array.isArray(list) ? list : []).map((u) => {
      const li = el("li");
      li.append(el("span", "name", u.name));
      const bits = [`to ${u.peer}`];
      if (typeof u.size === "number" && typeof u.sent === "number") bits.push(`${size(u.sent)} of ${size(u.size)}`);
      else if (typeof u.size === "number") bits.push(size(u.size));
      if (typeof u.speed_bps === "number") bits.push(`${size(u.speed_bps)}/s`);
      if (typeof u.secs === "number") bits.push(`for ${duration(u.secs)}`);
      li.append(el("span", "meta", bits.join(" · ")));
      return li;
    });
    ul.replaceChildren(...items);
    $("uploads-empty").hidden = items.length > 0;
  }

  async function refreshShares() {
    const list = await api("GET", "/shares");
    const items = (Array.isArray(list) ? list : []).map((s) => {
      const li = el("li");
      li.append(el("span", "name", s.path));
      const bits = [];
      if (typeof s.files === "number") bits.push(plural(s.files, "file", "files"));
      if (typeof s.bytes === "number") bits.push(size(s.bytes));
      li.append(el("span", "meta", bits.join(" · ")));
      li.append(
        button("Stop sharing", "remove", async () => {
          await api("DELETE", "/shares", { path: s.path });
          say("share-info", `No longer sharing ${s.path}.`, false);
          await refreshShares();
        }),
      );
      return li;
    });
    if (items.length === 0) items.push(el("li", "info", "No shared folders."));
    $("shares").replaceChildren(...items);
  }

  $("share-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const path = $("share-input").value.trim();
    if (!path) return;
    say("share-info", `Sharing ${path}…`, false);
    api("POST", "/shares", { path })
      .then(() => {
        $("share-input").value = "";
        say("share-info", `Sharing ${path}.`, false);
        return refreshShares();
      })
      .catch((err) => {
        if (!(err instanceof Unauthorized)) say("share-info", `Could not share ${path}: ${err.message}`, true);
      });
  });

  async function refreshPeers() {
    const list = await api("GET", "/peers");
    const items = (Array.isArray(list) ? list : []).map((p) => {
      const li = el("li");
      li.append(el("span", "name", p.addr));
      if (p.kind) li.append(el("span", "meta", p.kind));
      return li;
    });
    if (items.length === 0) items.push(el("li", "info", "No peers yet."));
    $("peers").replaceChildren(...items);
  }

  $("peer-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const addr = $("peer-input").value.trim();
    if (!addr) return;
    say("peer-info", `Joining ${addr}…`, false);
    api("POST", "/peers", { addr })
      .then(() => {
        $("peer-input").value = "";
        say("peer-info", `Joined ${addr}.`, false);
        return refreshPeers();
      })
      .catch((err) => {
        if (!(err instanceof Unauthorized)) say("peer-info", `Could not join ${addr}: ${err.message}`, true);
      });
  });

  // ---- limits ---------------------------------------------------------

  function kib(bps) {
    return typeof bps === "number" ? String(Math.max(1, Math.round(bps / 1024))) : "";
  }

  function limitText(bps) {
    return typeof bps === "number" ? `${size(bps)}/s` : "none";
  }

  function showSettings(s) {
    if (!s) return;
    $("upload-limit").value = kib(s.upload_limit_bps);
    $("download-limit").value = kib(s.download_limit_bps);
    $("upload-slots").value = typeof s.upload_slots === "number" ? String(s.upload_slots) : "";
    $("max-downloads").value = typeof s.max_downloads === "number" ? String(s.max_downloads) : "";
    return s;
  }

  async function refreshSettings() {
    showSettings(await api("GET", "/settings"));
  }

  function readLimit(id) {
    const raw = $(id).value.trim();
    if (raw === "") return null;
    const n = Number(raw);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${raw} is not a number of KiB/s above 0`);
    return Math.round(n * 1024);
  }

  $("limits-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    let patch;
    try {
      patch = {
        upload_limit_bps: readLimit("upload-limit"),
        download_limit_bps: readLimit("download-limit"),
      };
      const slots = $("upload-slots").value.trim();
      if (slots !== "") {
        const n = Number(slots);
        if (!Number.isInteger(n) || n < 1) throw new Error(`${slots} is not a number of upload slots`);
        patch.upload_slots = n;
      }
      const most = $("max-downloads").value.trim();
      if (most === "") patch.max_downloads = null;
      else {
        const n = Number(most);
        if (!Number.isInteger(n) || n < 1) throw new Error(`${most} is not a number of downloads`);
        patch.max_downloads = n;
      }
    } catch (err) {
      say("limits-info", err.message, true);
      return;
    }
    const save = $("limits-save");
    save.disabled = true;
    api("PATCH", "/settings", patch)
      .then((s) => {
        showSettings(s);
        const now = s || patch;
        say(
          "limits-info",
          `Saved: upload ${limitText(now.upload_limit_bps)}, download ${limitText(now.download_limit_bps)}` +
            (typeof now.upload_slots === "number" ? `, ${plural(now.upload_slots, "upload slot", "upload slots")}` : "") +
            (typeof now.max_downloads === "number" ? `, ${plural(now.max_downloads, "download", "downloads")} at once.` : ", downloads at once: no limit."),
          false,
        );
      })
      .catch((err) => {
        if (!(err instanceof Unauthorized)) say("limits-info", `Not saved: ${err.message}`, true);
      })
      .finally(() => {
        save.disabled = false;
      });
  });

  // ---- go ---------------------------------------------------------------

  if (token) connect().catch(shown);
  else askToken("");
})();
