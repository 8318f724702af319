// The jobs page: every job, live; filter, search, select and act on several at once. The
// newest matching jobs are drawn a few hundred at a time ("Show more"): a farm keeps months of
// them, and drawing thousands of rows at every live refresh kept the page busy.
"use strict";

(() => {
  const body = document.getElementById("jobs-body");
  const empty = document.getElementById("jobs-empty");
  const search = document.getElementById("search");
  const statusFilter = document.getElementById("status-filter");
  const selectAll = document.getElementById("select-all");
  const count = document.getElementById("selected-count");
  const more = document.getElementById("jobs-more");
  const PAGE = 500;  // rows drawn at first, and added by each "Show more"
  const RUNNING = new Set(["queued", "active", "requeueing"]);
  const TICKING = new Set(["queued", "active", "requeueing", "pause-requested", "cancel-requested"]);

  let jobs = [];
  let fetchedAt = Date.now();
  let drawn = PAGE;
  const selected = new Set();

  function accept(data) {
    jobs = data.jobs;
    fetchedAt = Date.now();
    const ids = new Set(jobs.map((j) => j.id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    render();
  }

  function matching() {
    const needle = search.value.trim().toLowerCase();
    const status = statusFilter.value;
    return jobs.filter((j) =>
      (!needle || j.name.toLowerCase().includes(needle)) &&
      (!status || (status === "running" ? RUNNING.has(j.status) : j.status === status)));
  }

  // The rows drawn: what "select all" takes.
  function shown() {
    return matching().slice(0, drawn);
  }

  // Time so far counts up and time left down between refreshes (formula: dashboard/timing.py).
  function timing(job) {
    if (job.elapsed_s === null || job.elapsed_s === undefined) return ["—", "—"];
    const delta = TICKING.has(job.status) ? (Date.now() - fetchedAt) / 1000 : 0;
    const left = job.eta_s === null || job.eta_s === undefined ? null : Math.max(0, job.eta_s - delta);
    const leftText = left === null ? (job.status === "completed" ? "done" : "—") : F.duration(left);
    return [F.duration(job.elapsed_s + delta), leftText];
  }

  function row(job) {
    const [elapsed, left] = timing(job);
    const sites = job.sites && job.sites.length ? job.sites.map(F.esc).join(", ") : '<span class="muted">any</span>';
    const checked = selected.has(job.id);
    const waiting = job.waiting_reason ? ` title="${F.esc(job.waiting_reason)}"` : "";
    return `<tr data-id="${F.esc(job.id)}" class="${checked ? "selected" : ""}">
      <td class="check"><input type="checkbox" class="pick" aria-label="Select ${F.esc(job.name)}" ${checked ? "checked" : ""}></td>
      <td class="name"><a href="/jobs/${encodeURIComponent(job.id)}">${F.esc(job.name)}</a><span class="sub">${F.esc(job.id)}</span></td>
      <td class="status"${waiting}>${F.badge(job.status)}${job.waiting_reason ? ' <span class="muted" aria-hidden="true">⚠</span>' : ""}</td>
      <td class="progress-col">${F.bar(job.progress, job.status)}</td>
      <td class="num frames">${job.frames_done} / ${job.frames_total}</td>
      <td class="num">${job.priority}</td>
      <td>${F.esc(job.submitter)}</td>
      <td>${sites}</td>
      <td class="num elapsed">${elapsed}</td>
      <td class="num eta">${left}</td>
    </tr>`;
  }

  function render() {
    const all = matching();
    const list = all.slice(0, drawn);
    body.innerHTML = list.map(row).join("");
    empty.hidden = jobs.length > 0;
    const rest = all.length - list.length;
    more.hidden = rest <= 0;
    more.textContent = `Show ${Math.min(PAGE, rest)} more (${rest} not shown)`;
    const visibleSelected = list.filter((j) => selected.has(j.id)).length;
    selectAll.checked = list.length > 0 && visibleSelected === list.length;
    selectAll.indeterminate = visibleSelected > 0 && visibleSelected < list.length;
    count.textContent = selected.size ? `${selected.size} selected` : "Select jobs to act on them.";
    // An action is offered when at least one selected job allows it (the Server's rules).
    const chosen = jobs.filter((j) => selected.has(j.id));
    for (const button of document.querySelectorAll("#bulkbar button")) {
      const action = button.dataset.action;
      button.disabled = !chosen.length || (action && !chosen.some((j) => (j.actions || []).includes(action)));
    }
  }

  // Only the rows of jobs whose times move, found by id: a farm's history is thousands of
  // rows, and looking each row's job up in the list every second took seconds.
  function tick() {
    const byId = new Map(jobs.filter((j) => TICKING.has(j.status)).map((j) => [j.id, j]));
    if (!byId.size) return;
    for (const tr of body.querySelectorAll("tr")) {
      const job = byId.get(tr.dataset.id);
      if (!job) continue;
      const [elapsed, left] = timing(job);
      tr.querySelector(".elapsed").textContent = elapsed;
      tr.querySelector(".eta").textContent = left;
    }
  }

  // An answer the Dashboard had at hand while it asks the Server again is shown at once and
  // asked for again a moment later (see Dashboard.jobs).
  const refresh = F.coalesce(async () => {
    const data = await F.call("GET", "/ui/jobs");
    accept(data);
    if (!data.fresh) setTimeout(refresh, 1000);
  }, 500);

  body.addEventListener("change", (event) => {
    if (!event.target.classList.contains("pick")) return;
    const id = event.target.closest("tr").dataset.id;
    if (event.target.checked) selected.add(id); else selected.delete(id);
    render();
  });
  selectAll.addEventListener("change", () => {
    for (const job of shown()) {
      if (selectAll.checked) selected.add(job.id); else selected.delete(job.id);
    }
    render();
  });
  const redraw = () => { drawn = PAGE; render(); };
  search.addEventListener("input", redraw);
  statusFilter.addEventListener("change", redraw);
  more.addEventListener("click", () => { drawn += PAGE; render(); });

  async function act(action) {
    const ids = [...selected];
    const names = jobs.filter((j) => selected.has(j.id)).map((j) => j.name);
    if ((action === "delete" || action === "cancel") &&
        !confirm(`${action === "delete" ? "Delete" : "Cancel"} ${ids.length} job(s)?\n${names.join("\n")}`)) return;
    try {
      const { results } = await F.call("POST", "/ui/jobs/actions", { ids, action });
      report(results, action);
      if (action === "delete") for (const r of results) if (r.ok) selected.delete(r.id);
    } catch (e) { F.toast(e.message, true); }
    refresh();
  }

  function report(results, what) {
    const failed = results.filter((r) => !r.ok);
    const done = results.length - failed.length;
    if (done) F.toast(`${what}: ${done} job(s) done.`);
    for (const r of failed) F.toast(`${r.id}: ${r.error}`, true);
  }

  for (const button of document.querySelectorAll("#bulkbar button[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }
  document.getElementById("set-priority").addEventListener("click", async () => {
    const priority = Number(document.getElementById("bulk-priority").value);
    try {
      const { results } = await F.call("PUT", "/ui/jobs/priority", { ids: [...selected], priority });
      report(results, `priority ${priority}`);
    } catch (e) { F.toast(e.message, true); }
    refresh();
  });

  const initial = F.initialData();
  accept(initial);
  if (!initial.fresh) setTimeout(refresh, 1000);
  setInterval(tick, 1000);
  F.live((kind) => { if (kind === "job" || kind === "task") refresh(); }, refresh);
})();
