// One job: summary, frames (thumbnails and a full-size viewer), tasks, timeline and live log.
"use strict";

(() => {
  let job = F.initialData();
  const jobId = job.id;
  const base = `/ui/jobs/${encodeURIComponent(jobId)}`;
  const $ = (id) => document.getElementById(id);
  const TICKING = new Set(["queued", "active", "requeueing", "pause-requested", "cancel-requested"]);
  let jobFetchedAt = Date.now();

  // ---- summary and actions ----------------------------------------------------------------

  function stat(label, value, cls = "") {
    return `<div class="stat ${cls}"><div class="label">${label}</div><div class="value">${value}</div></div>`;
  }

  function timing() {
    if (job.elapsed_s === null || job.elapsed_s === undefined) return ["—", "—"];
    const delta = TICKING.has(job.status) ? (Date.now() - jobFetchedAt) / 1000 : 0;
    const left = job.eta_s === null || job.eta_s === undefined ? null : Math.max(0, job.eta_s - delta);
    return [F.duration(job.elapsed_s + delta), left === null ? (job.status === "completed" ? "done" : "—") : F.duration(left)];
  }

  function renderSummary() {
    const [elapsed, left] = timing();
    const sites = job.sites && job.sites.length ? job.sites.map(F.esc).join(", ") : "any";
    $("summary").innerHTML =
      `<div class="big">${F.bar(job.progress, job.status)}</div>` +
      stat("Status", F.badge(job.status), "job-status") +
      stat("Frames", `${job.frames_done} / ${job.frames_total}`, "job-frames") +
      stat("Tasks", `${job.tasks_completed} / ${job.tasks_total}`) +
      stat("Time so far", `<span id="elapsed">${elapsed}</span>`) +
      stat("Time left", `<span id="eta">${left}</span>`) +
      stat("Format", F.esc(job.output_format || ""), "job-format") +
      stat("Priority", job.priority) +
      stat("Sites", sites) +
      stat("Submitted", F.esc(F.when(job.created)));
    $("waiting").hidden = !job.waiting_reason;
    $("waiting").textContent = job.waiting_reason || "";
    for (const button of document.querySelectorAll("#job-actions button[data-action]")) {
      button.disabled = !(job.actions || []).includes(button.dataset.action);
    }
    if (document.activeElement !== $("job-priority")) $("job-priority").value = job.priority;
    renderArtifacts();
  }

  function renderArtifacts() {
    $("artifacts").innerHTML = (job.artifacts || []).map((a) =>
      `<a class="button" href="${base}/artifacts/${encodeURIComponent(a.name)}" download>⬇ ${F.esc(a.name)} ` +
      `<span class="muted">${(a.size / 1048576).toFixed(1)} MB</span></a>`).join("");
  }

  const refreshJob = F.coalesce(async () => {
    try {
      job = await F.call("GET", base);
      jobFetchedAt = Date.now();
      renderSummary();
      if (!job.fresh) setTimeout(refreshJob, 1000);
    } catch (e) {
      $("waiting").hidden = false;
      $("waiting").textContent = e.message;
    }
  }, 500);

  async function act(action) {
    if ((action === "delete" || action === "cancel") && !confirm(`${action === "delete" ? "Delete" : "Cancel"} the job "${job.name}"?`)) return;
    try {
      const { results } = await F.call("POST", "/ui/jobs/actions", { ids: [jobId], action });
      const [result] = results;
      if (!result.ok) { F.toast(result.error, true); return; }
      if (action === "delete") { location.href = "/"; return; }
      F.toast(`The job is now ${result.status}.`);
    } catch (e) { F.toast(e.message, true); }
    refreshJob(); refreshTasks(); refreshTimeline();
  }
  for (const button of document.querySelectorAll("#job-actions button[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }
  $("set-priority").addEventListener("click", async () => {
    const priority = Number($("job-priority").value);
    try {
      const { results } = await F.call("PUT", "/ui/jobs/priority", { ids: [jobId], priority });
      if (results[0].ok) F.toast(`Priority is now ${results[0].priority}.`); else F.toast(results[0].error, true);
    } catch (e) { F.toast(e.message, true); }
    refreshJob();
  });

  // ---- frames: thumbnails and viewer -----------------------------------------------------

  // One page of thumbnails at a time, paged by the Server: a studio's job has 100,000 frames.
  const FRAMES_PER_PAGE = 48;
  let frames = [];  // the frames of the page shown
  let framesTotal = 0;
  let framesPage = 0;  // the page shown
  let framesWanted = 0;  // the page asked for last: shown once its answer is in
  let seenFrames = null;  // the page's frames at its last drawing: the others are new

  function thumbUrl(f) { return `${base}/frames/${f.frame}/thumbnail?v=${f.v}`; }
  function frameUrl(f) { return `${base}/frames/${f.frame}?v=${f.v}`; }
  // What the viewer shows: the frame, or a JPEG of it where browsers cannot draw its type (EXR).
  function viewUrl(f) { return `${base}/frames/${f.frame}/view?v=${f.v}`; }
  function framePages() { return Math.max(1, Math.ceil(framesTotal / FRAMES_PER_PAGE)); }

  function renderFrames() {
    const pages = framePages();
    const fresh = seenFrames;
    $("thumbs").innerHTML = frames.map((f) =>
      `<button class="thumb${fresh && !fresh.has(f.frame) ? " new" : ""}" data-frame="${f.frame}" title="Frame ${f.frame}: ${F.esc(f.name)}">` +
      `<img loading="lazy" src="${thumbUrl(f)}" alt="Frame ${f.frame}"><span>${f.frame}</span></button>`).join("");
    seenFrames = new Set(frames.map((f) => f.frame));
    $("thumbs-empty").hidden = framesTotal > 0;
    $("frames-count").textContent = framesTotal ? `${framesTotal} of ${job.frames_total}` : "";
    $("frames-pager").innerHTML = pages > 1
      ? `<button data-page="-1" ${framesPage === 0 ? "disabled" : ""}>‹</button>${framesPage + 1} / ${pages}` +
        `<button data-page="1" ${framesPage >= pages - 1 ? "disabled" : ""}>›</button>` : "";
  }

  let framesAsked = 0;  // the latest page asked for wins: a slower, older answer is dropped
  async function loadFramePage(page) {
    const ticket = ++framesAsked;
    framesWanted = page;
    const answer = await F.call("GET", `${base}/frames?offset=${page * FRAMES_PER_PAGE}&limit=${FRAMES_PER_PAGE}`);
    if (ticket !== framesAsked) return answer;
    if (page !== framesPage) seenFrames = null;  // another page: none of it is "new"
    framesPage = page;
    frames = answer.frames;
    framesTotal = answer.total;
    renderFrames();
    return answer;
  }
  $("frames-pager").addEventListener("click", (e) => {
    const step = Number(e.target.dataset.page || 0);
    if (step) loadFramePage(Math.min(Math.max(framesWanted + step, 0), framePages() - 1));
  });

  const refreshFrames = F.coalesce(async () => {
    const answer = await loadFramePage(framesWanted);
    if (framesPage > 0 && !frames.length) await loadFramePage(framePages() - 1);  // fewer now
    if (!answer.fresh) setTimeout(refreshFrames, 1000);
  }, 500);

  // The viewer steps through all of the job's frames; `viewerIndex` counts from the first.
  let viewerIndex = null;
  async function showFrame(index) {
    if (!framesTotal) return;
    index = (index + framesTotal) % framesTotal;
    const page = Math.floor(index / FRAMES_PER_PAGE);
    if (page !== framesPage) await loadFramePage(page);  // the thumbnails follow the viewer
    const f = page === framesPage ? frames[index - page * FRAMES_PER_PAGE] : null;
    if (!f) return;  // another page was asked for meanwhile
    viewerIndex = index;
    $("viewer-img").src = viewUrl(f);
    $("viewer-img").alt = `Frame ${f.frame}`;
    $("viewer-title").textContent = `Frame ${f.frame} · ${f.name}` + (f.width ? ` · ${f.width}×${f.height}` : "") + ` · ${viewerIndex + 1} of ${framesTotal}`;
    $("viewer-open").href = frameUrl(f);
    $("viewer").hidden = false;
    const local = index - page * FRAMES_PER_PAGE;
    for (const next of [frames[local + 1], frames[local - 1]]) if (next) new Image().src = viewUrl(next);
  }
  function closeViewer() { $("viewer").hidden = true; viewerIndex = null; }
  $("thumbs").addEventListener("click", (e) => {
    const button = e.target.closest(".thumb");
    if (button) showFrame(framesPage * FRAMES_PER_PAGE + frames.findIndex((f) => f.frame === Number(button.dataset.frame)));
  });
  $("thumbs").addEventListener("error", (e) => {
    if (e.target.tagName === "IMG") e.target.replaceWith(Object.assign(document.createElement("div"), { className: "muted", textContent: "no preview" }));
  }, true);
  $("viewer-prev").addEventListener("click", () => showFrame(viewerIndex - 1));
  $("viewer-next").addEventListener("click", () => showFrame(viewerIndex + 1));
  $("viewer-close").addEventListener("click", closeViewer);
  $("viewer").addEventListener("click", (e) => { if (e.target.classList.contains("viewer-stage")) closeViewer(); });
  document.addEventListener("keydown", (e) => {
    if (viewerIndex === null) return;
    if (e.key === "ArrowRight") { showFrame(viewerIndex + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { showFrame(viewerIndex - 1); e.preventDefault(); }
    else if (e.key === "Escape") closeViewer();
  });

  // ---- tasks: one page at a time, paged, counted and filtered by the Server ------------------

  const PAGE = 100;
  const view = { offset: 0, status: "", q: "" };
  let tasks = [];
  let taskData = null;

  function taskSeconds(t) {
    if (t.running_since) return (Date.now() - Date.parse(t.running_since)) / 1000;
    return t.seconds;
  }

  function renderTasks() {
    const d = taskData;
    $("tasks-body").innerHTML = tasks.map((t) => `<tr data-id="${F.esc(t.id)}" class="${t.id === logTask ? "current" : ""}">
      <td>${F.esc(t.name)}${t.failures ? ` <span class="muted" title="failures">×${t.failures}</span>` : ""}</td>
      <td>${F.badge(t.status)}</td>
      <td class="mono">${F.esc(t.frames)}</td>
      <td class="progress-col">${F.bar(t.status === "completed" ? 1 : t.progress, t.status)}</td>
      <td>${t.worker ? F.esc(t.worker) + (t.manager ? ` <span class="muted">@${F.esc(t.manager)}</span>` : "") : '<span class="muted">—</span>'}</td>
      <td class="num duration">${t.seconds === null && !t.running_since ? "—" : F.duration(taskSeconds(t))}</td>
      <td class="activity" title="${F.esc(t.activity)}">${F.esc(t.activity)}</td>
      <td>${t.worker ? '<button class="small ghost show-log">Log</button>' : ""}</td>
    </tr>`).join("") || `<tr><td colspan="8" class="empty-state small">No task matches.</td></tr>`;
    const statuses = Object.keys(d.counts).sort();
    $("task-filter").innerHTML = [`<button class="chip ${view.status ? "" : "on"}" data-status="">all ${d.total}</button>`]
      .concat(statuses.map((s) => `<button class="chip ${view.status === s ? "on" : ""}" data-status="${F.esc(s)}">${F.esc(s)} ${d.counts[s]}</button>`)).join("");
    const last = Math.min(view.offset + PAGE, d.matching);
    const atStart = view.offset === 0 ? "disabled" : "", atEnd = last >= d.matching ? "disabled" : "";
    $("tasks-pager").innerHTML = d.matching > PAGE
      ? `<button data-to="first" title="First page" ${atStart}>«</button><button data-to="previous" title="Previous page" ${atStart}>‹</button>` +
        `<span id="tasks-range">${view.offset + 1}–${last} of ${d.matching}</span>` +
        `<button data-to="next" title="Next page" ${atEnd}>›</button><button data-to="last" title="Last page" ${atEnd}>»</button>` : "";
    renderLogChoices();
  }

  const refreshTasks = F.coalesce(async () => {
    const params = new URLSearchParams({ offset: view.offset, limit: PAGE, status: view.status, q: view.q });
    taskData = await F.call("GET", `${base}/tasks?${params}`);
    if (!taskData.tasks.length && view.offset > 0 && taskData.matching > 0) {
      view.offset = lastPageOffset(taskData.matching);  // fewer tasks match than before
      refreshTasks();
      return;
    }
    tasks = taskData.tasks;
    renderTasks();
    if (!taskData.fresh) setTimeout(refreshTasks, 1000);
    // The job's start is learnt from its history, which came with the tasks.
    if (job.elapsed_s === null && job.status !== "queued") refreshJob();
  }, 700);

  $("task-filter").addEventListener("click", (e) => {
    if (e.target.dataset.status === undefined) return;
    view.status = e.target.dataset.status; view.offset = 0; refreshTasks();
  });
  function lastPageOffset(matching) { return Math.max(0, Math.floor((matching - 1) / PAGE) * PAGE); }
  $("tasks-pager").addEventListener("click", (e) => {
    const to = e.target.dataset.to;
    if (!to || !taskData) return;
    const offsets = { first: 0, previous: view.offset - PAGE, next: view.offset + PAGE, last: lastPageOffset(taskData.matching) };
    view.offset = Math.max(0, Math.min(offsets[to], lastPageOffset(taskData.matching)));
    refreshTasks();
  });
  let searchTimer = null;
  $("task-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { view.q = $("task-search").value.trim(); view.offset = 0; refreshTasks(); }, 250);
  });
  $("tasks-body").addEventListener("click", (e) => {
    if (!e.target.classList.contains("show-log")) return;
    chooseLog(e.target.closest("tr").dataset.id);
    $("log").scrollIntoView({ behavior: "smooth", block: "center" });
  });

  // ---- timeline ------------------------------------------------------------------------------

  const refreshTimeline = F.coalesce(async () => {
    const response = await fetch(`${base}/timeline.svg`, { credentials: "same-origin" });
    if (!response.ok) return;
    $("timeline").innerHTML = await response.text();
    if (response.headers.get("X-Fresh") === "0") setTimeout(refreshTimeline, 1000);
  }, 2000);

  // ---- log -----------------------------------------------------------------------------------

  let logTask = null;
  let logLength = 0;
  let logChosenByHand = false;

  function renderLogChoices() {
    const ran = tasks.filter((t) => t.worker);
    if (!logChosenByHand) {
      const pick = ran.find((t) => t.status === "active") || ran[ran.length - 1];
      if (pick && pick.id !== logTask) { chooseLog(pick.id, false); return; }
    }
    const options = ran.map((t) => `<option value="${F.esc(t.id)}" ${t.id === logTask ? "selected" : ""}>${F.esc(t.name)} · ${F.esc(t.worker)} · ${F.esc(t.status)}</option>`);
    if (logTask && !ran.some((t) => t.id === logTask)) options.unshift(`<option value="${F.esc(logTask)}" selected>${F.esc(logTask)}</option>`);
    $("log-task").innerHTML = options.join("") || "<option value=''>no task has run yet</option>";
  }

  function chooseLog(taskId, byHand = true) {
    logChosenByHand = logChosenByHand || byHand;
    logTask = taskId;
    logLength = 0;
    $("log").textContent = "";
    renderTasks();
    refreshLog();
  }
  $("log-task").addEventListener("change", () => chooseLog($("log-task").value));

  const refreshLog = F.coalesce(async () => {
    if (!logTask) return;
    const task = logTask;
    const response = await fetch(`${base}/tasks/${encodeURIComponent(task)}/log?offset=${logLength}`, { credentials: "same-origin" });
    if (!response.ok || task !== logTask) return;
    const text = await response.text();
    const box = $("log");
    if (response.headers.get("X-Log-Reset") === "1") box.textContent = "";
    logLength = Number(response.headers.get("X-Log-Length") || 0);
    if (text) box.append(text);
    if ($("log-follow").checked) box.scrollTop = box.scrollHeight;
  }, 400);

  // ---- live ----------------------------------------------------------------------------------

  function everything() { refreshJob(); refreshTasks(); refreshFrames(); refreshTimeline(); refreshLog(); }

  F.live((kind, data) => {
    // A job action (from elsewhere) changes its tasks with nothing but a job event.
    if (kind === "job" && data.id === jobId) { refreshJob(); refreshTasks(); refreshTimeline(); }
    if (data.job_id !== jobId) return;
    if (kind === "task") { refreshTasks(); refreshTimeline(); }
    else if (kind === "frame") refreshFrames();
    else if (kind === "log" && data.task_id === logTask) refreshLog();
  }, everything);

  setInterval(() => {
    const [elapsed, left] = timing();
    if ($("elapsed")) { $("elapsed").textContent = elapsed; $("eta").textContent = left; }
    for (const tr of $("tasks-body").querySelectorAll("tr[data-id]")) {
      const t = tasks.find((x) => x.id === tr.dataset.id);
      if (t && t.running_since) tr.querySelector(".duration").textContent = F.duration(taskSeconds(t));
    }
  }, 1000);

  renderSummary();
  if (!job.fresh) setTimeout(refreshJob, 1000);
  refreshTasks(); refreshFrames(); refreshTimeline();
})();
