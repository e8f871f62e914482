// LiveOutput: a run's output as a terminal shows it, following the end while the
// reader is at the bottom. Lines arrive already rendered (HTML, escaped by Python,
// without the ::progress:: / ::phase:: marker lines); this file only lays them out,
// keeps the scroll position and draws the header: badge, phase and progress bar, as
// the side panel's output pane does.

const BADGES = {
  succeeded: ["ok", "succeeded"],
  failed: ["bad", "failed"],
  timed_out: ["bad", "timed out"],
  lost: ["bad", "lost"],
  cancelled: ["muted", "cancelled"],
  skipped: ["muted", "skipped"],
  running: ["live", "running"],
  queued: ["live", "queued"],
  waiting: ["muted", "waiting for a run"],
};

// where the reader had scrolled, per model: a view made again (the display replaced
// when the run ends, a notebook re-rendered) opens where the last one was
const scrolled = new WeakMap();

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el: root }) {
  root.classList.add("hc-live");
  const header = el("div", "hc-live-header");
  const title = el("span", "hc-live-title");
  const phase = el("span", "hc-live-phase");
  const bar = el("progress", "hc-live-progress");
  bar.max = 1;
  const percent = el("span", "hc-live-percent");
  const badge = el("span", "hc-badge");
  const link = el("a", "hc-live-artifact", "executed notebook");
  link.target = "_blank";
  // "rev 3 · sha256 1a2b3c4d… · older revision": the job's revision the run ran
  const rev = el("span", "hc-live-rev");
  rev.dataset.role = "run-rev";
  header.append(badge, title, rev, bar, percent, phase, link);

  const term = el("pre", "hc-term");
  const cut = el("div", "hc-cut");
  const follow = el("button", "hc-follow", "\u2193 follow output");
  const error = el("div", "hc-live-error");
  root.append(header, error, term, follow);

  let pinned = model.get("pinned") !== false;
  let shown = []; // the line strings now in the DOM, one <div> each

  const atBottom = () => term.scrollHeight - term.scrollTop - term.clientHeight < 4;

  function setPinned(value) {
    if (value === pinned) return;
    pinned = value;
    follow.style.display = pinned ? "none" : "";
    model.set("pinned", pinned);
    model.save_changes();
  }

  function drawLines() {
    const lines = model.get("lines") || [];
    const dropped = model.get("dropped") || 0;
    // keep the common prefix; rebuild from the first line that changed
    let same = 0;
    if (cut.dataset.dropped === String(dropped)) {
      const n = Math.min(shown.length, lines.length);
      while (same < n && shown[same] === lines[same]) same++;
    } else {
      term.replaceChildren();
      shown = [];
      cut.dataset.dropped = String(dropped);
      cut.textContent = dropped
        ? `\u2026 ${dropped} earlier lines not shown (%cron logs prints them all)`
        : "";
      if (dropped) term.append(cut);
    }
    const offset = dropped ? 1 : 0; // the cut notice is the first child
    while (term.childNodes.length > same + offset) term.lastChild.remove();
    const frag = document.createDocumentFragment();
    for (let i = same; i < lines.length; i++) {
      const line = el("div", "hc-line");
      line.innerHTML = lines[i] || "\u200b";
      frag.append(line);
    }
    term.append(frag);
    shown = lines.slice();
    if (pinned) term.scrollTop = term.scrollHeight;
  }

  function drawHeader() {
    const status = model.get("status") || "waiting";
    const [kind, words] = BADGES[status] || ["muted", status];
    const code = model.get("exit_code");
    const took = model.get("took");
    let text = words;
    if (model.get("done") && code !== null && code !== undefined) text += ` \u00b7 exit ${code}`;
    if (took) text += ` \u00b7 ${took}`;
    badge.className = `hc-badge hc-badge-${kind}`;
    badge.textContent = text;
    const job = model.get("job_name");
    const run = model.get("run_id");
    title.textContent = [job, run].filter(Boolean).join(" \u00b7 ");
    const progress = model.get("progress");
    const ph = model.get("phase");
    phase.textContent = ph || "";
    // the bar stays once the run has ended (full when it succeeded), as in the panel
    if (progress === null || progress === undefined) {
      bar.style.display = "none";
      percent.textContent = "";
    } else {
      bar.style.display = "";
      bar.value = Math.max(0, Math.min(1, progress));
      percent.textContent = `${Math.round(bar.value * 100)}%`;
      bar.title = percent.textContent;
    }
    const url = model.get("artifact_url");
    link.style.display = url && model.get("done") ? "" : "none";
    if (url) link.href = url;
    const err = model.get("error");
    error.textContent = err || "";
    error.style.display = err ? "" : "none";
    const reason = model.get("reason");
    badge.title = reason || "";
    const revision = model.get("revision") || "";
    rev.textContent = revision;
    rev.style.display = revision ? "" : "none";
    rev.classList.toggle("hc-live-older", revision.includes("older revision"));
  }

  term.addEventListener("scroll", () => {
    if (!term.clientHeight) return; // not laid out (detached, hidden): nothing to learn
    scrolled.set(model, term.scrollTop);
    setPinned(atBottom());
  });
  // the view is drawn before it is in the page, where scrollHeight is still 0: place it
  // once it has a size (and again if it changes while following)
  const place = () => {
    if (pinned) term.scrollTop = term.scrollHeight;
    else if (scrolled.has(model)) term.scrollTop = scrolled.get(model);
  };
  const sized = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(place);
  if (sized) sized.observe(term);
  requestAnimationFrame(place);
  follow.addEventListener("click", () => {
    term.scrollTop = term.scrollHeight;
    setPinned(true);
  });
  follow.style.display = pinned ? "none" : "";

  const onLines = () => drawLines();
  const onHeader = () => drawHeader();
  model.on("change:lines", onLines);
  model.on("change:dropped", onLines);
  const headerTraits = ["status", "phase", "progress", "exit_code", "done", "job_name",
                        "run_id", "error", "took", "artifact_url", "reason", "revision"];
  for (const name of headerTraits) {
    model.on(`change:${name}`, onHeader);
  }
  drawHeader();
  drawLines();
  return () => {
    if (sized) sized.disconnect();
    model.off("change:lines", onLines);
    model.off("change:dropped", onLines);
    for (const name of headerTraits) model.off(`change:${name}`, onHeader);
  };
}

export default { render };
