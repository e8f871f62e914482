// Timeline: runs as bars on one time axis, one row per job, coloured by status; coming
// slots as ticks, skipped (s) and missed (m) runs as marks. The window shown ([t0, t1],
// epoch seconds) is the model's `window`: the wheel zooms around the pointer, a drag pans,
// the +/- and arrow buttons (and keys) do too. A click on a bar sets `selected` (its run
// id): Python opens that run below. Rows come ready from Python (`rows`).

const NS = "http://www.w3.org/2000/svg";
const LEFT = 150;
const ROW = 20;

function svg(tag, attrs) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function button(text, title, onClick) {
  const b = document.createElement("button");
  b.className = "hc-tl-button";
  b.textContent = text;
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function fmt(t) {
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function render({ model, el: root }) {
  root.classList.add("hc-timeline-widget");
  root.tabIndex = 0;
  const bar = document.createElement("div");
  bar.className = "hc-tl-bar";
  const label = document.createElement("span");
  label.className = "hc-tl-range";
  const plot = document.createElement("div");
  plot.className = "hc-tl-plot";
  root.append(bar, plot);

  const win = () => model.get("window") || [model.get("start"), model.get("end")];
  function setWindow(t0, t1) {
    const lo = model.get("start") - (model.get("end") - model.get("start"));
    const hi = model.get("end") + (model.get("end") - model.get("start"));
    const span = Math.max(60, Math.min(t1 - t0, hi - lo));
    if (t0 < lo) t0 = lo;
    if (t0 + span > hi) t0 = hi - span;
    model.set("window", [t0, t0 + span]);
    model.save_changes();
  }
  function zoom(factor, at) {
    const [t0, t1] = win();
    const c = at === undefined ? (t0 + t1) / 2 : at;
    setWindow(c - (c - t0) * factor, c + (t1 - c) * factor);
  }
  function pan(fraction) {
    const [t0, t1] = win();
    const d = (t1 - t0) * fraction;
    setWindow(t0 + d, t1 + d);
  }
  bar.append(
    button("\u2212", "zoom out (-)", () => zoom(1.5)),
    button("+", "zoom in (+)", () => zoom(1 / 1.5)),
    button("\u2190", "earlier (\u2190)", () => pan(-0.25)),
    button("\u2192", "later (\u2192)", () => pan(0.25)),
    button("reset", "the whole range", () => setWindow(model.get("start"), model.get("end"))),
    label,
  );
  root.addEventListener("keydown", (e) => {
    const act = { "+": () => zoom(1 / 1.5), "=": () => zoom(1 / 1.5), "-": () => zoom(1.5),
      ArrowLeft: () => pan(-0.25), ArrowRight: () => pan(0.25) }[e.key];
    if (act) { act(); e.preventDefault(); }
  });

  let width = 760;
  function draw() {
    const rows = model.get("rows") || [];
    const [t0, t1] = win();
    const now = model.get("now");
    width = Math.max(400, root.clientWidth || 760);
    const plotW = width - LEFT - 10;
    const height = 20 + rows.length * ROW + 20;
    const x = (t) => LEFT + ((t - t0) / (t1 - t0)) * plotW;
    label.textContent = `${fmt(t0)} \u2013 ${fmt(t1)}`;
    const s = svg("svg", { width, height, class: "hc-tl-svg" });
    const clip = svg("clipPath", { id: `hc-clip-${model.cid || "x"}` });
    clip.append(svg("rect", { x: LEFT, y: 0, width: plotW, height }));
    s.append(clip);
    const body = svg("g", { "clip-path": `url(#hc-clip-${model.cid || "x"})` });
    // five ticks of the axis
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      const gx = x(t);
      s.append(svg("line", { x1: gx, x2: gx, y1: 14, y2: height - 18, stroke: "#eee" }));
      const tx = svg("text", { x: gx, y: height - 5, "font-size": 10, fill: "#666",
        "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" });
      tx.textContent = fmt(t);
      s.append(tx);
    }
    rows.forEach((row, i) => {
      const y = 16 + i * ROW;
      const name = svg("text", { x: LEFT - 6, y: y + 14, "text-anchor": "end",
        "font-size": 11, fill: "#333" });
      name.textContent = row.name.length > 22 ? row.name.slice(0, 21) + "\u2026" : row.name;
      s.append(name);
      for (const r of row.runs) {
        const end = r.b;
        if (end < t0 || r.a > t1) continue;
        let node;
        if (r.kind === "skipped" || r.kind === "missed") {
          node = svg("text", { x: x(r.a), y: y + 14, "text-anchor": "middle", "font-size": 12,
            fill: r.colour, class: "hc-tl-run" });
          node.textContent = r.kind === "missed" ? "m" : "s";
        } else {
          node = svg("rect", { x: x(r.a), y: y + 3, width: Math.max(3, x(end) - x(r.a)),
            height: ROW - 6, rx: 2, fill: r.colour, class: "hc-tl-run" });
        }
        node.dataset.run = r.id;
        node.dataset.status = r.status;
        node.dataset.kind = r.kind;
        if (r.id === model.get("selected")) node.setAttribute("stroke", "#000");
        const tip = svg("title");
        tip.textContent = r.tip;
        node.append(tip);
        node.addEventListener("click", (e) => {
          e.stopPropagation();
          model.set("selected", r.id);
          model.save_changes();
        });
        body.append(node);
      }
      for (const t of row.slots) {
        if (t < t0 || t > t1) continue;
        const tick = svg("line", { x1: x(t), x2: x(t), y1: y + 4, y2: y + ROW - 4,
          stroke: "#888", "stroke-dasharray": "2,1", class: "hc-tl-slot" });
        const tip = svg("title");
        tip.textContent = `${row.name} \u00b7 next at ${fmt(t)}`;
        tick.append(tip);
        body.append(tick);
      }
    });
    if (now >= t0 && now <= t1) {
      body.append(svg("line", { x1: x(now), x2: x(now), y1: 10, y2: height - 18,
        stroke: "#1565c0", class: "hc-tl-now" }));
    }
    s.append(body);
    // zoom with the wheel around the pointer, pan with a drag
    s.addEventListener("wheel", (e) => {
      e.preventDefault();
      const at = t0 + ((e.offsetX - LEFT) / plotW) * (t1 - t0);
      zoom(e.deltaY > 0 ? 1.25 : 1 / 1.25, at);
    }, { passive: false });
    s.addEventListener("mousedown", (e) => {
      const startX = e.clientX;
      const [a, b] = win();
      const move = (m) => {
        const dt = ((startX - m.clientX) / plotW) * (b - a);
        model.set("window", [a + dt, b + dt]);
        model.save_changes();
      };
      const up = () => {
        window.removeEventListener("mousemove", move);
        window.removeEventListener("mouseup", up);
      };
      window.addEventListener("mousemove", move);
      window.addEventListener("mouseup", up);
    });
    plot.replaceChildren(s);
    if (!rows.length) {
      const none = document.createElement("div");
      none.className = "hc-tl-empty";
      none.textContent = "no runs in this range";
      plot.append(none);
    }
  }
  model.on("change:rows", draw);
  model.on("change:window", draw);
  model.on("change:selected", draw);
  draw();
}

export default { render };
