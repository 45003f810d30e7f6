/* Charts shared by the live page and the capacity report: hand-written SVG, no libraries.
 *
 * timeline(el, t): requests per second by outcome (stacked), loaded models, memory, with a
 *   mark for every load, eviction and runtime event; each mark's reason shows on hover.
 * budgetBars(el, budgets): one bar per budget, used (solid) and reserved (light) vs the limit.
 */
"use strict";
var MMECharts = (function () {
  var SVG = "http://www.w3.org/2000/svg";
  var OUTCOME_LABELS = { hit: "hit", cold: "cold", not_ready: "429", error: "error" };
  var MARK_COLORS = {
    "load": "#3b73c4", "load failed": "#cf3b3b", "eviction": "#e08a1e",
    "deleted from disk": "#9a7b4f", "runtime down": "#cf3b3b", "runtime restart": "#cf3b3b",
    "runtime up": "#2e9d5b"
  };

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var key in attrs) { node.setAttribute(key, attrs[key]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(parent, x, y, content, anchor) {
    var node = el("text", { x: x, y: y, "text-anchor": anchor || "start" }, parent);
    node.textContent = content;
    return node;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) { return "-"; }
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(n >= 100 ? 0 : 1)) + " " + units[i];
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  /* Wall-clock time for the live page; seconds from the start for a simulated plan. */
  function fmtTime(at, relative) {
    if (relative) {
      var s = Math.round(at);
      return s >= 3600 ? (s / 3600).toFixed(1) + " h" : s >= 120 ? Math.round(s / 60) + " min" : s + " s";
    }
    var d = new Date(at * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fmtValue(value, unit) {
    if (value === null || value === undefined) { return "-"; }
    return unit === "bytes" ? fmtBytes(value) : String(value);
  }

  function budgetBars(container, budgets) {
    container.textContent = "";
    budgets.forEach(function (b) {
      var row = document.createElement("div");
      row.className = "budget";
      row.setAttribute("data-budget", b.name);
      row.setAttribute("data-used", b.used === null ? "" : b.used);
      row.setAttribute("data-reserved", b.reserved === null || b.reserved === undefined ? "" : b.reserved);
      row.setAttribute("data-limit", b.limit === null ? "" : b.limit);
      var label = document.createElement("div");
      label.className = "label";
      label.textContent = b.name;
      row.appendChild(label);
      var svg = el("svg", { viewBox: "0 0 300 14", preserveAspectRatio: "none",
                            width: "100%", height: "14" }, row);
      var used = b.used || 0, reserved = b.reserved || 0;
      var scale = b.limit ? b.limit : Math.max(1, used + reserved);
      var wUsed = Math.min(300, 300 * used / scale);
      var wRes = Math.min(300 - wUsed, 300 * reserved / scale);
      el("rect", { x: 0, y: 0, width: 300, height: 14, fill: "#eef0f3" }, svg);
      var over = b.limit && used > b.limit;
      el("rect", { x: 0, y: 0, width: wUsed, height: 14,
                   fill: over ? "var(--error)" : "var(--memory)" }, svg);
      if (wRes > 0) {
        el("rect", { x: wUsed, y: 0, width: wRes, height: 14, fill: "var(--reserved)" }, svg);
      }
      var caption = document.createElement("div");
      caption.className = "text";
      var words = fmtValue(b.used, b.unit) + " used";
      if (b.reserved !== null && b.reserved !== undefined) {
        words += ", " + fmtValue(b.reserved, b.unit) + " reserved";
      }
      words += b.limit ? " of " + fmtValue(b.limit, b.unit) : " (no limit)";
      if (b.note) { words += " \u2014 " + b.note; }
      caption.textContent = words;
      row.appendChild(caption);
      container.appendChild(row);
    });
  }

  /* t: {samples: [{at, hit, cold, not_ready, error, loaded, host, gpu}], events: [{at, kind,
   *     target_model, reason}], start, end, period, relative, memoryLabel} */
  function timeline(container, t) {
    container.textContent = "";
    var W = 900, left = 52, right = 12, plotW = W - left - right;
    var panels = [
      { name: "requests/s", h: 110 }, { name: "loaded", h: 60 }, { name: "memory", h: 60 }
    ];
    var gap = 16, top = 8, H = top;
    panels.forEach(function (p) { p.y = H; H += p.h + gap; });
    H += 10;
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: "100%",
                          "data-chart": "timeline" }, container);
    var start = t.start, end = Math.max(t.end, t.start + t.period);
    function x(at) { return left + plotW * (at - start) / (end - start); }
    var samples = t.samples;
    var barW = Math.max(1, plotW * t.period / (end - start) - 0.5);

    // Panel 1: requests per second, stacked by outcome.
    var p = panels[0];
    var peak = 1;
    samples.forEach(function (s) {
      peak = Math.max(peak, (s.hit + s.cold + s.not_ready + s.error) / t.period);
    });
    axis(svg, p, left, plotW, peak, function (v) { return v.toFixed(v < 10 ? 1 : 0); });
    samples.forEach(function (s) {
      var y = p.y + p.h;
      ["hit", "cold", "not_ready", "error"].forEach(function (k) {
        var v = s[k] / t.period;
        if (!v) { return; }
        var h = p.h * v / peak;
        y -= h;
        var bar = el("rect", { x: x(s.at - t.period), y: y, width: barW, height: h,
                               fill: "var(--" + k + ")" }, svg);
        el("title", {}, bar).textContent =
          fmtTime(s.at, t.relative) + ": " + s[k] + " " + OUTCOME_LABELS[k];
      });
    });

    // Panel 2: loaded models (a step line).
    p = panels[1];
    var maxLoaded = 1;
    samples.forEach(function (s) { maxLoaded = Math.max(maxLoaded, s.loaded); });
    axis(svg, p, left, plotW, maxLoaded, function (v) { return v.toFixed(0); });
    line(svg, samples, x, function (s) { return p.y + p.h - p.h * s.loaded / maxLoaded; },
         "var(--loaded)", true);

    // Panel 3: memory (host, and each GPU where measured).
    p = panels[2];
    var maxMem = 1;
    samples.forEach(function (s) {
      if (s.host !== null) { maxMem = Math.max(maxMem, s.host); }
      (s.gpu || []).forEach(function (g) { maxMem = Math.max(maxMem, g); });
    });
    // Headroom over the peak; the budget is drawn only when it is in range, else named.
    maxMem *= 1.25;
    var limitInRange = t.memoryLimit && t.memoryLimit <= maxMem;
    axis(svg, p, left, plotW, maxMem, fmtBytes);
    var withHost = samples.filter(function (s) { return s.host !== null; });
    line(svg, withHost, x, function (s) { return p.y + p.h - p.h * s.host / maxMem; },
         "var(--memory)", false);
    var gpus = 0;
    samples.forEach(function (s) { gpus = Math.max(gpus, (s.gpu || []).length); });
    for (var g = 0; g < gpus; g++) {
      var withGpu = samples.filter(function (s) { return s.gpu && s.gpu[g] !== undefined; });
      line(svg, withGpu, x, function (s) { return p.y + p.h - p.h * s.gpu[g] / maxMem; },
           "var(--gpu)", false);
    }
    if (limitInRange) {
      var ly = p.y + p.h - p.h * t.memoryLimit / maxMem;
      el("line", { x1: left, x2: left + plotW, y1: ly, y2: ly, stroke: "var(--error)",
                   "stroke-dasharray": "4 3" }, svg);
    } else if (t.memoryLimit) {
      text(svg, left + plotW, p.y + 10, "budget " + fmtBytes(t.memoryLimit), "end");
    }

    // Time axis.
    var ticks = 6;
    for (var i = 0; i <= ticks; i++) {
      var at = start + (end - start) * i / ticks;
      text(svg, x(at), H - 2, fmtTime(at, t.relative), i === 0 ? "start" : i === ticks ? "end" : "middle");
    }

    // Marks: a thin line over every panel, and a wide hover target with the reason. When
    // there are too many to tell apart, those of a kind within a few pixels become one tick
    // above the first panel, its hover listing the first few.
    var shown = t.events.filter(function (e) { return e.at >= start && e.at <= end; });
    var dense = shown.length > 60;
    if (dense) { shown = merge(shown, x, 4, t.relative); }
    var marksTop = panels[0].y, marksBottom = dense ? marksTop + 6 : panels[2].y + panels[2].h;
    shown.forEach(function (e) {
      var ex = x(e.at), color = MARK_COLORS[e.kind] || "#555";
      var group = el("g", { "class": "mark", "data-kind": e.kind,
                            "data-model": e.target_model || "" }, svg);
      if (!dense) {
        el("line", { x1: ex, x2: ex, y1: marksTop, y2: marksBottom, stroke: color,
                     "stroke-opacity": 0.55, "stroke-width": 1 }, group);
      }
      el("path", { d: "M" + (ex - 4) + "," + marksTop + " l8,0 l-4,6 z", fill: color }, group);
      el("rect", { x: ex - 3, y: marksTop, width: 6, height: marksBottom - marksTop,
                   fill: "transparent" }, group);
      el("title", {}, group).textContent = e.title || (fmtTime(e.at, t.relative) + " " + e.kind +
        (e.target_model ? " " + e.target_model : "") + ": " + e.reason);
    });
  }

  /* Marks of one kind closer than `px` pixels, as one mark whose title lists up to five. */
  function merge(events, x, px, relative) {
    var groups = {}, order = [];
    events.forEach(function (e) {
      var key = e.kind + "@" + Math.round(x(e.at) / px);
      if (!groups[key]) { groups[key] = []; order.push(key); }
      groups[key].push(e);
    });
    return order.map(function (key) {
      var group = groups[key], first = group[0];
      var lines = group.slice(0, 5).map(function (e) {
        return fmtTime(e.at, relative) + " " + e.kind + (e.target_model ? " " + e.target_model : "") +
          ": " + e.reason;
      });
      if (group.length > 5) { lines.push("\u2026 and " + (group.length - 5) + " more"); }
      return { at: first.at, kind: first.kind, target_model: group.length === 1 ? first.target_model : null,
               title: lines.join("\n") };
    });
  }

  function axis(svg, p, left, plotW, max, fmt) {
    el("line", { x1: left, x2: left + plotW, y1: p.y + p.h, y2: p.y + p.h,
                 stroke: "#c7cdd5" }, svg);
    el("line", { x1: left, x2: left + plotW, y1: p.y, y2: p.y, stroke: "#eef0f3" }, svg);
    text(svg, left - 4, p.y + 9, fmt(max), "end");
    text(svg, left - 4, p.y + p.h, "0", "end");
    text(svg, left + 4, p.y + 10, p.name);
  }

  function line(svg, points, x, y, color, step) {
    if (!points.length) { return; }
    var d = "";
    points.forEach(function (s, i) {
      var px = x(s.at), py = y(s);
      if (i === 0) { d += "M" + px + "," + py; }
      else if (step) { d += " H" + px + " V" + py; }
      else { d += " L" + px + "," + py; }
    });
    el("path", { d: d, fill: "none", stroke: color, "stroke-width": 1.5 }, svg);
  }

  function legend(container, items) {
    container.textContent = "";
    items.forEach(function (item) {
      var span = document.createElement("span");
      var swatch = document.createElement("i");
      swatch.style.background = item[1];
      span.appendChild(swatch);
      span.appendChild(document.createTextNode(item[0]));
      container.appendChild(span);
    });
  }

  var TIMELINE_LEGEND = [
    ["hit", "var(--hit)"], ["cold", "var(--cold)"], ["429", "var(--not_ready)"],
    ["error", "var(--error)"], ["loaded models", "var(--loaded)"],
    ["host memory", "var(--memory)"], ["GPU memory", "var(--gpu)"],
    ["load", MARK_COLORS["load"]], ["eviction", MARK_COLORS["eviction"]],
    ["runtime", MARK_COLORS["runtime down"]]
  ];

  return {
    budgetBars: budgetBars, timeline: timeline, legend: legend, fmtBytes: fmtBytes,
    fmtTime: fmtTime, TIMELINE_LEGEND: TIMELINE_LEGEND, svgElement: el, svgText: text
  };
})();
