// Machines: every site (Manager) and its Workers, live; admins can put Workers to sleep.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let data = F.initialData();

  function gb(mb) { return `${(mb / 1024).toFixed(mb >= 10240 ? 0 : 1)} GB`; }

  function meter(fraction, text) {
    const pct = Math.max(0, Math.min(100, fraction * 100));
    return `<span class="meter"><span class="bar"><span data-width="${pct.toFixed(0)}"></span></span>${text}</span>`;
  }

  function gpus(w) {
    if (!w.gpus || !w.gpus.length) return '<span class="muted">none</span>';
    return w.gpus.map((g) => `${F.esc(g.model)}${g.memory_mb ? ` <span class="muted">${gb(g.memory_mb)}</span>` : ""}` +
      `${g.backends && g.backends.length ? ` <span class="muted">(${g.backends.map(F.esc).join(", ")})</span>` : ""}`).join("<br>");
  }

  function actions(site, w) {
    if (!data.admin) return "";
    const buttons = [];
    if (w.status === "asleep") buttons.push(["wake", "Wake"]);
    else if (w.status !== "disabled" && w.status !== "offline") buttons.push(["sleep", "Sleep"]);
    if (w.status === "disabled") buttons.push(["enable", "Enable"]);
    else buttons.push(["disable", "Disable"]);
    return `<div class="worker-actions">${buttons.map(([a, label]) =>
      `<button data-site="${F.esc(site)}" data-worker="${F.esc(w.name)}" data-action="${a}">${label}</button>`).join("")}</div>`;
  }

  function workerRow(site, w) {
    const task = w.task_id
      ? `<span class="mono">${F.esc(w.task_id.slice(0, 8))}</span> ${F.bar(w.progress || 0, "active")}` +
        `<span class="sub activity" title="${F.esc(w.activity)}">${F.esc(w.activity || "")}</span>`
      : '<span class="muted">idle</span>';
    const cpu = w.cpu_count ? meter((w.cpu_percent || 0) / 100, `${Math.round(w.cpu_percent || 0)}% · ${w.cpu_count} cores`) : "—";
    const mem = w.memory_mb ? meter((w.memory_used_mb || 0) / w.memory_mb, `${gb(w.memory_used_mb || 0)} / ${gb(w.memory_mb)}`) : "—";
    return `<tr data-worker="${F.esc(w.name)}">
      <td class="name"><strong>${F.esc(w.name)}</strong><span class="sub">${F.esc(w.platform || "")}${w.tags && w.tags.length ? " · " + w.tags.map(F.esc).join(", ") : ""}</span></td>
      <td class="worker-status">${F.badge(w.status)}</td>
      <td class="progress-col">${task}</td>
      <td>${cpu}</td>
      <td>${mem}</td>
      <td class="gpus">${gpus(w)}</td>
      <td>${F.esc((w.blender_versions || []).join(", ") || w.blender_version || "—")}</td>
      <td title="${F.esc(F.when(w.last_seen))}">${F.ago(w.last_seen)}</td>
      <td>${actions(site, w)}</td>
    </tr>`;
  }

  function render() {
    const needle = $("worker-search").value.trim().toLowerCase();
    const status = $("worker-status").value;
    $("sites-empty").hidden = data.managers.length > 0;
    $("sites").innerHTML = data.managers.map((m) => {
      const workers = m.workers.filter((w) =>
        (!needle || w.name.toLowerCase().includes(needle)) && (!status || w.status === status));
      const busy = m.workers.filter((w) => w.task_id).length;
      const counts = {};
      for (const w of m.workers) counts[w.status] = (counts[w.status] || 0) + 1;
      const summary = Object.entries(counts).map(([s, n]) => `${n} ${F.esc(s)}`).join(" · ");
      return `<section class="card site" data-site="${F.esc(m.name)}">
        <div class="site-head">
          <h2>${F.esc(m.name)}</h2>${F.badge(m.status)}
          <span class="muted">${m.workers.length} Workers${summary ? ` (${summary})` : ""}, ${busy} rendering</span>
          <span class="spacer"></span>
          <span class="muted">${F.esc(m.address || "")} · seen ${F.ago(m.last_seen)}</span>
        </div>
        <div class="table-scroll workers">
          <table><thead><tr><th>Worker</th><th>Status</th><th class="progress-col">Current task</th><th>CPU</th><th>Memory</th><th>GPUs</th><th>Blender</th><th>Last seen</th><th></th></tr></thead>
          <tbody>${workers.map((w) => workerRow(m.name, w)).join("") || '<tr><td colspan="9" class="empty-state small">No Worker.</td></tr>'}</tbody></table>
        </div>
      </section>`;
    }).join("");
  }

  const refresh = F.coalesce(async () => { data = await F.call("GET", "/ui/managers"); render(); }, 800);

  $("sites").addEventListener("click", async (e) => {
    const b = e.target.closest("button[data-action]");
    if (!b) return;
    b.disabled = true;
    try {
      const path = `/ui/managers/${encodeURIComponent(b.dataset.site)}/workers/${encodeURIComponent(b.dataset.worker)}/${b.dataset.action}`;
      const answer = await F.call("POST", path);
      F.toast(`${b.dataset.worker}: ${answer.status || "done"}.`);
    } catch (err) { F.toast(err.message, true); }
    refresh();
  });
  $("worker-search").addEventListener("input", render);
  $("worker-status").addEventListener("change", render);

  render();
  setInterval(render, 5000);  // "last seen" moves on
  F.live((kind) => { if (kind === "managers") refresh(); }, refresh);
})();
