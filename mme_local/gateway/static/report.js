/* The capacity report: draws the plan embedded in the page (#plan) with the live page's charts. */
"use strict";
(function () {
  var C = MMECharts;
  var plan = JSON.parse(document.getElementById("plan").textContent);
  var chosen = plan.chosen ? plan.chosen.label : null;
  function $(id) { return document.getElementById(id); }

  var w = plan.workload;
  $("workload").textContent = w.requests.toLocaleString() + " requests to " +
    w.models.toLocaleString() + " models over " + C.fmtTime(w.duration_s, true);
  $("verdict").textContent = chosen ? "Chosen: " + chosen + " (" + plan.chosen.why + ")."
                                    : "No candidate.";

  /* Two bar charts side by side: hit ratio and added p99, one bar per candidate. */
  function candidateBars(container) {
    var W = 900, H = 230, half = W / 2, left = 64, bottom = 150;
    var svg = C.svgElement("svg", { viewBox: "0 0 " + W + " " + H, width: "100%",
                                    "data-chart": "candidates" }, container);
    var charts = [
      { key: "hit_ratio", title: "predicted hit ratio", max: 1, fmt: function (v) { return v.toFixed(3); },
        target: plan.targets.hit_ratio, x0: 0 },
      { key: "wait_p99_s", title: "added p99 (ms)", fmt: function (v) { return (v * 1000).toFixed(0); },
        target: plan.targets.p99_s, x0: half }
    ];
    charts.forEach(function (chart) {
      var max = chart.max || 0;
      plan.candidates.forEach(function (c) { max = Math.max(max, c[chart.key]); });
      if (chart.target) { max = Math.max(max, chart.target); }
      max = max || 1;
      var plotW = half - left - 20, n = plan.candidates.length;
      var slot = plotW / n;
      C.svgText(svg, chart.x0 + left, 12, chart.title);
      C.svgElement("line", { x1: chart.x0 + left, x2: chart.x0 + left + plotW, y1: bottom,
                             y2: bottom, stroke: "#c7cdd5" }, svg);
      plan.candidates.forEach(function (c, i) {
        var h = (bottom - 24) * c[chart.key] / max;
        var x = chart.x0 + left + i * slot + slot * 0.15;
        var color = c.label === chosen ? "var(--hit)" : c.meets ? "var(--cold)" : "#aab2bd";
        var bar = C.svgElement("rect", { x: x, y: bottom - h, width: slot * 0.7, height: h,
                                         fill: color, "data-candidate": c.label }, svg);
        C.svgElement("title", {}, bar).textContent = c.label + ": " + chart.fmt(c[chart.key]);
        if (n <= 24) {
          var lx = x + slot * 0.35, label = C.svgText(svg, lx, bottom + 12, c.label, "end");
          label.setAttribute("transform", "rotate(-35 " + lx + " " + (bottom + 12) + ")");
        }
      });
      if (chart.target) {
        var ty = bottom - (bottom - 24) * chart.target / max;
        C.svgElement("line", { x1: chart.x0 + left, x2: chart.x0 + left + plotW, y1: ty, y2: ty,
                               stroke: "var(--error)", "stroke-dasharray": "4 3" }, svg);
        C.svgText(svg, chart.x0 + left + plotW, ty - 3, "target " + chart.fmt(chart.target), "end");
      }
    });
  }

  function table() {
    var cols = [
      ["label", "candidate"], ["hit_ratio", "hit ratio", 3], ["cold_starts_per_hour", "cold starts/h", 0],
      ["loads", "loads", 0], ["unloads", "unloads", 0], ["not_ready", "429s", 0],
      ["rejected_loads", "507s", 0], ["errors", "errors", 0],
      ["wait_p50_s", "added p50 ms", "ms"], ["wait_p99_s", "added p99 ms", "ms"],
      ["peak_host_bytes", "peak host", "bytes"], ["peak_gpu_bytes", "peak GPU", "bytes"],
      ["price_per_hour", "$/h", 3], ["meets", "meets"]
    ];
    var tr = document.createElement("tr");
    cols.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c[1];
      if (c.length > 2) { th.className = "num"; }
      tr.appendChild(th);
    });
    $("candidates").tHead.appendChild(tr);
    var body = $("candidates").tBodies[0];
    plan.candidates.forEach(function (row) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-candidate", row.label);
      if (row.label === chosen) { tr.className = "chosen"; }
      cols.forEach(function (c) {
        var td = document.createElement("td");
        var v = row[c[0]];
        td.setAttribute("data-field", c[0]);
        if (c.length > 2) { td.className = "num"; }
        if (v === null || v === undefined) { td.textContent = "-"; }
        else if (c[2] === "ms") { td.textContent = (v * 1000).toFixed(0); }
        else if (c[2] === "bytes") { td.textContent = C.fmtBytes(v); }
        else if (typeof c[2] === "number") { td.textContent = Number(v).toFixed(c[2]); }
        if (c[0] === "price_per_hour" && v !== null && row.price_verified === false) {
          td.textContent += "*";  // written from memory until a --prices file replaces it
        }
        else if (typeof v === "boolean") { td.textContent = v ? "yes" : "no"; }
        else { td.textContent = String(v); }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  candidateBars($("candidates-chart"));
  table();
  C.legend($("timeline-legend"), C.TIMELINE_LEGEND);
  if (plan.chosen) {
    $("chosen-label").textContent = chosen;
    C.timeline($("timeline"), plan.chosen.timeline);
    C.budgetBars($("budgets"), plan.chosen.budgets);
  }
  var notes = (plan.prices ? ["prices: " + plan.prices.source + ", " + plan.prices.region +
                              ", as of " + plan.prices.as_of] : []).concat(plan.notes);
  notes.forEach(function (n) {
    var li = document.createElement("li");
    li.textContent = n;
    $("notes").appendChild(li);
  });
  document.body.setAttribute("data-rendered", "yes");
})();
