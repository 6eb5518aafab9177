// Draws the wattlens HTML report from the JSON in #wl-data with uPlot. Any error is written
// into #wl-errors and the body's data-status, so that a headless browser can check the page.
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push(String(e.message || e));
    document.getElementById("wl-errors").textContent = errors.join("\n");
    document.body.dataset.status = "errors";
  });
  var started = performance.now();
  var data = JSON.parse(document.getElementById("wl-data").textContent);
  var root = document.getElementById("wl-root");
  var COLORS = ["#4878d0", "#ee854a", "#6acc65", "#d65f5f", "#956cb4", "#8c613c", "#dc7ec0",
                "#797979", "#d5bb67", "#82c6e2", "#1f77b4", "#aec7e8"];

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function add(parent, tag, attrs, text) { var e = el(tag, attrs, text); parent.appendChild(e); return e; }
  function joules(mj) {
    var j = mj / 1000;
    if (Math.abs(j) >= 100) return j.toFixed(1) + " J";
    if (Math.abs(j) >= 1) return j.toFixed(2) + " J";
    return (mj).toFixed(2) + " mJ";
  }
  function withCi(e) {
    if (e.coverage === "unresolved") return "< " + joules(e.high);
    if (e.coverage === "uncovered") return "uncovered";
    var half = (e.high - e.low) / 2;
    var pct = e.mj > 0 ? (100 * half / e.mj).toFixed(1) : "?";
    return joules(e.mj) + " ±" + pct + "% (" + e.coverage + ")";
  }
  function width() { return Math.min(root.clientWidth || 1200, 1250); }

  // Bars with 95% CI whiskers; a bound (unresolved) is a dashed line at its upper end.
  function barChart(parent, items, title) {
    if (!items.length) { add(parent, "p", { class: "note" }, "nothing to chart"); return; }
    var xs = items.map(function (_, i) { return i; });
    var ys = items.map(function (it) { return it.est.coverage === "unresolved" ? null : it.est.mj / 1000; });
    var whiskers = {
      hooks: {
        draw: function (u) {
          var ctx = u.ctx;
          ctx.save();
          ctx.lineWidth = 1.5 * devicePixelRatio;
          items.forEach(function (it, i) {
            var x = u.valToPos(i, "x", true);
            var hi = u.valToPos(it.est.high / 1000, "y", true);
            var half = 0.25 * (u.valToPos(1, "x", true) - u.valToPos(0, "x", true));
            if (it.est.coverage === "unresolved") {
              ctx.strokeStyle = "#d65f5f";
              ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
              ctx.beginPath(); ctx.moveTo(x - half, hi); ctx.lineTo(x + half, hi); ctx.stroke();
              ctx.setLineDash([]);
              ctx.fillStyle = "#d65f5f";
              ctx.font = (11 * devicePixelRatio) + "px sans-serif";
              ctx.fillText("bound", x - half, hi - 4 * devicePixelRatio);
            } else {
              var lo = u.valToPos(it.est.low / 1000, "y", true);
              ctx.strokeStyle = "#222";
              ctx.beginPath();
              ctx.moveTo(x, lo); ctx.lineTo(x, hi);
              ctx.moveTo(x - half / 2, lo); ctx.lineTo(x + half / 2, lo);
              ctx.moveTo(x - half / 2, hi); ctx.lineTo(x + half / 2, hi);
              ctx.stroke();
            }
          });
          ctx.restore();
        },
      },
    };
    var top = Math.max.apply(null, items.map(function (it) { return it.est.high / 1000; })) * 1.1 || 1;
    var host = add(parent, "div");
    new uPlot({
      title: title, width: width(), height: 300, plugins: [whiskers],
      legend: { show: false },
      scales: { x: { time: false, range: [-0.6, items.length - 0.4] }, y: { range: [0, top] } },
      axes: [
        { values: function (u, splits) { return splits.map(function (s) { return Number.isInteger(s) && items[s] ? items[s].label : ""; }); },
          rotate: items.length > 8 ? -30 : 0, size: items.length > 8 ? 90 : 40, space: 10 },
        { label: "joules (dynamic + static share)" },
      ],
      series: [{}, { label: "J", fill: "rgba(72,120,208,0.6)", stroke: "#4878d0",
                     paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
    }, [xs, ys], host);
  }

  function table(parent, header, rows) {
    var t = add(parent, "table");
    var tr = add(t, "tr");
    header.forEach(function (h) { add(tr, "th", {}, h); });
    rows.forEach(function (r) {
      var row = add(t, "tr");
      r.forEach(function (c) {
        if (c instanceof Node) { var td = add(row, "td"); td.appendChild(c); }
        else add(row, "td", typeof c === "number" ? { class: "num" } : {}, String(c));
      });
    });
    return t;
  }

  function timeline(parent, tl) {
    if (!tl) { add(parent, "p", { class: "note" }, "no readings to draw"); return; }
    var sync = uPlot.sync("wl-time");
    var series = [{ label: "s" }];
    var values = [tl.t_s];
    var bands = [];
    series.push({ label: "idle", stroke: "#999", width: 1, points: { show: false } });
    values.push(tl.t_s.map(function () { return tl.idle_w; }));
    tl.layers.forEach(function (l, i) {
      series.push({ label: l.name, stroke: COLORS[i % COLORS.length], width: 1,
                    fill: COLORS[i % COLORS.length] + "99", points: { show: false } });
      values.push(l.top_w);
      bands.push({ series: [values.length - 1, values.length - 2] });
    });
    series.push({ label: "NVML samples", stroke: "#000", width: 1, spanGaps: true, points: { show: false } });
    values.push(tl.sample_w);
    series.push({ label: "energy counter", stroke: "#d62728", width: 2, spanGaps: true, points: { show: false } });
    values.push(tl.counter_w);
    var host = add(parent, "div");
    new uPlot({
      title: "Power: samples, the energy counter, and the attributed power stacked by op class over idle",
      width: width(), height: 340, bands: bands,
      cursor: { sync: { key: sync.key }, drag: { x: true, y: false } },
      scales: { x: { time: false } },
      axes: [{ label: "seconds" }, { label: "W" }],
      series: series,
    }, values, host);
    var busySeries = [{ label: "s" }];
    var busyValues = [tl.t_s];
    tl.layers.forEach(function (l, i) {
      busySeries.push({ label: l.name, stroke: COLORS[i % COLORS.length], width: 1, points: { show: false } });
      busyValues.push(l.busy);
    });
    var lanes = add(parent, "div");
    new uPlot({
      title: "Kernel lanes, binned: each op class's busy share of each bin",
      width: width(), height: 200,
      cursor: { sync: { key: sync.key }, drag: { x: true, y: false } },
      scales: { x: { time: false } },
      axes: [{ label: "seconds" }, { label: "busy share" }],
      series: busySeries,
    }, busyValues, lanes);
  }

  function icicle(parent, regions) {
    if (!regions.length) { add(parent, "p", { class: "note" }, "no regions"); return; }
    var byDepth = {};
    regions.forEach(function (r) {
      var d = r.path.split("/").length - 1;
      (byDepth[d] = byDepth[d] || []).push(r);
    });
    var total = (byDepth[0] || regions).reduce(function (s, r) { return s + Math.max(r.cost.mj, 0); }, 0) || 1;
    var box = add(parent, "div", { class: "icicle" });
    Object.keys(byDepth).sort().slice(0, 4).forEach(function (d) {
      var row = add(box, "div", { class: "row" });
      byDepth[d].slice(0, 40).forEach(function (r, i) {
        var cell = add(row, "div", { class: "cell", title: r.path + ": " + withCi(r.cost) },
                       r.path.split("/").pop() + " " + joules(r.cost.mj));
        cell.style.flex = String(Math.max(r.cost.mj, 0) / total);
        cell.style.background = COLORS[i % COLORS.length] + "aa";
      });
    });
  }

  function device(d) {
    var sec = add(root, "section");
    add(sec, "h2", {}, "GPU " + d.index + ": " + d.name);
    if (d.problem) { add(sec, "p", {}, "Not attributed: " + d.problem); return; }
    var q = d.quality;
    add(sec, "h2", {}, "Measurement quality");
    table(sec, ["", ""], [
      ["closure", "the counter measured " + q.counter_j.toFixed(1) + " J = idle " + q.idle_j.toFixed(1) +
        " J + attributed dynamic " + q.dynamic_j.toFixed(1) + " J + profiler " + q.profiler_j.toFixed(1) +
        " J, unattributed " + q.residual_pct.toFixed(2) + "%"],
      ["measured (95% CI within ±10%)", q.kernel_measured_pct.toFixed(1) + "% of kernel busy time, " +
        q.op_measured_pct.toFixed(1) + "% of op-class busy time"],
      ["sensor profile", data.sensor_profile],
      ["idle power", q.idle_w.toFixed(1) + " ±" + q.idle_half_w.toFixed(1) + " W"],
      ["replay closure", q.replay_closure ? q.replay_closure.ratio.toFixed(3) + " [" +
        q.replay_closure.low.toFixed(3) + ", " + q.replay_closure.high.toFixed(3) + "]" : "no kernel replay"],
      ["profiler's own cost", "the program ran an estimated " + q.profiler_slowdown_pct.toFixed(1) + "% slower"],
    ]);
    add(sec, "h2", {}, "Power over time");
    add(sec, "p", { class: "note" }, "Drag across a chart to zoom both; double-click to zoom out.");
    timeline(sec, d.timeline);
    add(sec, "h2", {}, "Energy per op class");
    barChart(sec, d.ops.map(function (o) { return { label: o.name, est: o.cost }; }), "Op classes (whiskers: 95% CI)");
    add(sec, "h2", {}, "Energy per kernel (the costliest " + d.kernels.length + ")");
    barChart(sec, d.kernels.map(function (k, i) { return { label: "#" + (i + 1), est: k.cost }; }),
             "Kernels (whiskers: 95% CI; dashed: a bound the sensors could not resolve)");
    table(sec, ["#", "kernel", "op", "launches", "energy"], d.kernels.map(function (k, i) {
      return [i + 1, k.name.length > 90 ? k.name.slice(0, 89) + "~" : k.name, k.op, k.launches, withCi(k.cost)];
    }));
    if (d.requests.length) {
      add(sec, "h2", {}, "Requests (NVTX ranges): mean energy over each instance's wall-clock window");
      barChart(sec, d.requests.map(function (r) { return { label: r.name, est: r.mean }; }), "Mean J per request");
      table(sec, ["range", "count", "mean"], d.requests.map(function (r) { return [r.name, r.count, withCi(r.mean)]; }));
    }
    add(sec, "h2", {}, "Regions (busy-time view)");
    icicle(sec, d.regions);
    add(sec, "h2", {}, "Waste");
    if (!d.waste.length) { add(sec, "p", {}, "No finding."); }
    else {
      var most = Math.max.apply(null, d.waste.map(function (w) { return w.energy.high; })) || 1;
      table(sec, ["kind", "what", "times", "energy", ""], d.waste.map(function (w) {
        var cell = el("div");
        var bar = add(cell, "span", { class: "bar" });
        bar.style.width = Math.max(1, 300 * w.energy.mj / most) + "px";
        add(cell, "div", { class: "fix" }, "fix: " + w.fix);
        return [w.kind, w.what, w.times, withCi(w.energy), cell];
      }));
    }
  }

  add(root, "h1", {}, "wattlens report");
  var sub = add(root, "div", { class: "sub" }, data.command + " on " + (data.host || "an unknown host") +
                ", " + data.spans + " spans. Energies: dynamic plus a static share of busy time; " +
                "requests: dynamic plus idle power over their wall time. ");
  if (data.simulated) add(sub, "span", { class: "sim" }, "simulated GPU");
  data.devices.forEach(device);
  if (document.body.dataset.status !== "errors") {
    document.body.dataset.status = "drawn";
    document.body.dataset.drawMs = String(Math.round(performance.now() - started));
  }
})();
