// Shared by every page: escaping, formatting, calls to the Dashboard, and live events.
"use strict";

const F = (() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) => (
      { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    if (seconds < 0.05) return "<0.1s";
    if (seconds < 9.95) return `${seconds.toFixed(1)}s`;
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
    if (m) return `${m}m ${String(r).padStart(2, "0")}s`;
    return `${r}s`;
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = (Date.now() - Date.parse(iso)) / 1000;
    if (s < 5) return "just now";
    return `${duration(s)} ago`;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString() : "—";
  }

  function badge(status) {
    return `<span class="badge ${esc(status)}">${esc(status)}</span>`;
  }

  function bar(fraction, status = "") {
    const pct = Math.max(0, Math.min(100, (fraction || 0) * 100));
    return `<div class="progress"><div class="bar ${esc(status)}" role="progressbar" ` +
      `aria-valuenow="${pct.toFixed(0)}" aria-valuemin="0" aria-valuemax="100">` +
      `<span data-width="${pct.toFixed(1)}"></span></div>` +
      `<span class="pct">${pct < 10 && pct > 0 ? pct.toFixed(1) : pct.toFixed(0)}%</span></div>`;
  }

  function toast(message, bad = false) {
    const box = document.createElement("div");
    box.className = "toast" + (bad ? " bad" : "");
    box.textContent = message;
    document.getElementById("toasts").append(box);
    setTimeout(() => box.remove(), bad ? 7000 : 3500);
  }

  async function call(method, url, body) {
    const options = { method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    if (response.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname);
      throw new Error("Logged out.");
    }
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) throw new Error((data && data.detail) || `HTTP ${response.status}`);
    return data;
  }

  // Calls fn at most once at a time and not more often than every `gap` ms (longer when the
  // answer itself is slow, so that a huge job does not keep the Server busy); a call asked
  // for while one runs happens once after it.
  function coalesce(fn, gap = 400) {
    let running = false, pending = false, timer = null, last = -Infinity, minGap = gap;
    async function run() {
      timer = null; running = true; pending = false;
      const started = performance.now();
      try { await fn(); } catch (e) { console.warn(e); }
      minGap = Math.max(gap, (performance.now() - started) * 2);
      last = performance.now();
      running = false;
      if (pending) schedule();
    }
    function schedule() {
      if (running) { pending = true; return; }
      if (timer) return;
      timer = setTimeout(run, Math.max(0, last + minGap - performance.now()));
    }
    return schedule;
  }

  // Live events from the Server, relayed by the Dashboard. Handlers get (kind, data). When the
  // stream cannot be had at all, `poll` (if given) runs every few seconds instead.
  function live(handler, poll) {
    const dot = document.getElementById("live");
    let source = null, fallback = null;
    function state(text, cls) { if (dot) { dot.textContent = text; dot.className = "live " + cls; } }
    function connect() {
      source = new EventSource("/ui/events");
      source.onopen = () => { state("live", "on"); if (fallback) { clearInterval(fallback); fallback = null; } };
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) {
          state("polling", "off");
          if (poll && !fallback) fallback = setInterval(poll, 3000);
          setTimeout(connect, 5000);
        } else {
          state("reconnecting…", "off");
        }
      };
      for (const kind of ["job", "task", "frame", "log", "managers"]) {
        source.addEventListener(kind, (event) => {
          let data = {};
          try { data = JSON.parse(event.data); } catch (e) { /* keep {} */ }
          handler(kind, data);
        });
      }
    }
    connect();
    addEventListener("pagehide", () => source && source.close());
  }

  // The Content-Security-Policy allows no style attributes in markup; a bar's width is set
  // from its data-width here instead, for whatever markup a script puts in the page.
  function applyWidths(root) {
    const bars = root.matches?.("[data-width]") ? [root] : [];
    for (const el of [...bars, ...(root.querySelectorAll?.("[data-width]") || [])]) {
      el.style.width = `${el.dataset.width}%`;
    }
  }
  applyWidths(document.body);
  new MutationObserver((changes) => {
    for (const change of changes) change.addedNodes.forEach(applyWidths);
  }).observe(document.body, { childList: true, subtree: true });

  function initialData() {
    const node = document.getElementById("initial-data");
    return node ? JSON.parse(node.textContent) : null;
  }

  return { esc, duration, ago, when, badge, bar, toast, call, coalesce, live, initialData };
})();
