/* The live page: polls live/state every second and live/models every two, renders in place.
 * Only one page of the (sorted, filtered) model table is in the DOM at a time, so a thousand
 * models cost a sort and a filter per refresh, not a thousand rows of layout.
 */
"use strict";
(function () {
  var C = MMECharts;
  var PAGE_SIZE = 100;
  var COLUMNS = [
    { key: "target_model", label: "TargetModel" },
    { key: "state", label: "state" },
    { key: "memory_bytes", label: "host memory", num: true, fmt: C.fmtBytes },
    { key: "gpu_memory_bytes", label: "GPU memory", num: true, fmt: C.fmtBytes, gpu: true },
    { key: "disk_bytes", label: "disk", num: true, fmt: C.fmtBytes },
    { key: "invocations", label: "calls", num: true },
    { key: "cold_starts", label: "cold starts", num: true },
    { key: "not_ready", label: "429s", num: true },
    { key: "warm_p50_ms", label: "warm p50 ms", num: true, fmt: ms },
    { key: "warm_p99_ms", label: "warm p99 ms", num: true, fmt: ms },
    { key: "last_used", label: "last use", num: true, fmt: ago },
    { key: "loads", label: "loads", num: true },
    { key: "unloads", label: "unloads", num: true },
    { key: "artifact_changed", label: "changed", fmt: changed }
  ];
  var view = { rows: [], sortKey: "last_used", sortDir: -1, filter: "", state: "", page: 0,
               gpu: false, instance: 0, instances: 1 };
  var now = Date.now() / 1000;
  var paused = false;
  var marks = { list: [], last: 0 };
  var generation = 0;  // bumped at each change of instance: answers asked before are dropped
  var WINDOW_S = 600;
  var renders = 0;

  function ms(v) { return v === null ? "-" : v.toFixed(v < 10 ? 2 : 1); }
  function ago(v) {
    if (v === null) { return "-"; }
    var s = Math.max(0, Math.round(now - v));
    return s < 120 ? s + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago" : Math.round(s / 3600) + " h ago";
  }
  function changed(v) { return v ? "changed in S3" : ""; }
  function $(id) { return document.getElementById(id); }
  /* The GPU memory column only where the endpoint measures GPUs. */
  function columns() { return COLUMNS.filter(function (col) { return view.gpu || !col.gpu; }); }

  function header() {
    var tr = document.createElement("tr");
    columns().forEach(function (col) {
      var th = document.createElement("th");
      th.textContent = col.label;
      th.setAttribute("data-key", col.key);
      if (col.num) { th.className = "num"; }
      if (col.key === view.sortKey) { th.className += view.sortDir > 0 ? " sorted-asc" : " sorted-desc"; }
      th.onclick = function () {
        if (view.sortKey === col.key) { view.sortDir = -view.sortDir; }
        else { view.sortKey = col.key; view.sortDir = col.num ? -1 : 1; }
        header(); renderModels();
      };
      tr.appendChild(th);
    });
    var thead = $("models").tHead;
    thead.textContent = "";
    thead.appendChild(tr);
  }

  function compare(a, b) {
    var x = a[view.sortKey], y = b[view.sortKey];
    if (x === y) { return a.target_model < b.target_model ? -1 : 1; }
    if (x === null || x === undefined) { return 1; }
    if (y === null || y === undefined) { return -1; }
    return (x < y ? -1 : 1) * view.sortDir;
  }

  function renderModels() {
    var needle = view.filter.toLowerCase();
    var rows = view.rows.filter(function (r) {
      return (!needle || r.target_model.toLowerCase().indexOf(needle) >= 0) &&
             (!view.state || r.state === view.state);
    });
    rows.sort(compare);
    var pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
    view.page = Math.min(view.page, pages - 1);
    var shown = rows.slice(view.page * PAGE_SIZE, (view.page + 1) * PAGE_SIZE);
    var body = document.createElement("tbody");
    shown.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-model", r.target_model);
      if (r.last_error) { tr.title = "last error: " + r.last_error; }
      columns().forEach(function (col) {
        var td = document.createElement("td");
        var v = r[col.key];
        td.setAttribute("data-field", col.key);
        td.setAttribute("data-value", v === null ? "" : String(v));
        if (col.num) { td.className = "num"; }
        if (col.key === "state") {
          var badge = document.createElement("span");
          badge.className = "state state-" + String(v).replace(" ", "-");
          badge.textContent = v;
          td.appendChild(badge);
        } else {
          td.textContent = col.fmt ? col.fmt(v) : v === null ? "-" : String(v);
          if (col.key === "artifact_changed" && v) { td.className = "flag"; }
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    var table = $("models");
    table.replaceChild(body, table.tBodies[0]);
    $("page-info").textContent = rows.length ? (view.page * PAGE_SIZE + 1) + "\u2013" +
      (view.page * PAGE_SIZE + shown.length) + " of " + rows.length +
      (rows.length !== view.rows.length ? " (" + view.rows.length + " in all)" : "") : "no models";
  }

  /* With several instances, a choice of which one the page shows (each has its own cache,
   * budgets and timeline). */
  function renderInstances(count) {
    if (count === view.instances) { return; }
    view.instances = count;
    var select = $("instance");
    select.textContent = "";
    for (var i = 0; i < count; i++) {
      var option = document.createElement("option");
      option.value = String(i);
      option.textContent = "instance " + i + " of " + count;
      select.appendChild(option);
    }
    select.value = String(view.instance);
    select.hidden = count < 2;
  }

  /* Another instance's marks and rows are not this one's: start again from none. */
  function showInstance(index) {
    view.instance = index;
    view.rows = [];
    view.page = 0;
    marks.list = [];
    marks.last = 0;
    tick = 0;  // its models on the next refresh
    generation++;
  }

  function renderState(s) {
    now = s.now;
    renderInstances(s.instances);
    if (s.gpu_measured !== view.gpu) { view.gpu = s.gpu_measured; header(); }
    $("endpoint").textContent = "\u2014 " + s.endpoint_name;
    var rt = $("runtime");
    rt.textContent = s.runtime + " runtime " + (s.runtime_running ? "running" : "down");
    rt.className = "meta " + (s.runtime_running ? "status-ok" : "status-bad");
    var fields = s.sample_fields;
    var samples = s.samples.map(function (row) {
      var o = {};
      fields.forEach(function (f, i) { o[f] = row[i]; });
      return { at: o.at, hit: o.hit, cold: o.cold, not_ready: o.not_ready, error: o.error,
               loaded: o.loaded, host: o.host_bytes, gpu: o.gpu_bytes };
    });
    // Marks arrive once each (?after=); a restarted endpoint numbers from 1 again.
    if (s.last_seq < marks.last) {
      marks.list = [];
      marks.last = 0;  // the next refresh asks for all of them
    } else {
      marks.list = marks.list.concat(s.events).filter(function (e) {
        return e.at >= s.now - WINDOW_S;
      });
      if (marks.list.length > 2000) { marks.list = marks.list.slice(-2000); }
      marks.last = s.last_seq;
    }
    var end = s.now;
    var start = samples.length ? Math.min(samples[0].at - s.period_s, end - 60) : end - 60;
    var memoryLimit = null;
    s.budgets.forEach(function (b) { if (b.name === "host memory") { memoryLimit = b.limit; } });
    C.timeline($("timeline"), { samples: samples, events: marks.list, start: start, end: end,
                                period: s.period_s, relative: false, memoryLimit: memoryLimit });
    C.budgetBars($("budgets"), s.budgets);
    list($("warnings"), s.warnings.map(function (w) { return [w, "warning"]; }), "none");
    list($("restarts"), s.restarts.map(function (e) {
      return [C.fmtTime(e.at, false) + " " + e.kind + ": " + e.reason, ""];
    }), "none");
    var body = document.createElement("tbody");
    s.evictions.slice().reverse().slice(0, 500).forEach(function (e) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-eviction", e.target_model);
      [[C.fmtTime(e.at, false), "at"], [e.target_model, "target_model"], [e.reason, "reason"],
       [e.idle_s.toFixed(1), "idle_s", true], [C.fmtBytes(e.freed_memory_bytes), "freed", true],
       [e.deleted_from_disk ? "yes" : "no", "deleted"]].forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = cell[0];
        td.setAttribute("data-field", cell[1]);
        if (cell[2]) { td.className = "num"; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    var table = $("evictions");
    table.replaceChild(body, table.tBodies[0]);
  }

  function list(ul, items, empty) {
    ul.textContent = "";
    if (!items.length) { items = [[empty, "muted"]]; }
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.textContent = item[0];
      li.className = item[1];
      ul.appendChild(li);
    });
  }

  /* {fields, rows: [[...]]} -> [{field: value}] */
  function objects(table) {
    var fields = table.fields;
    return table.rows.map(function (row) {
      var o = {};
      for (var i = 0; i < fields.length; i++) { o[fields[i]] = row[i]; }
      return o;
    });
  }

  function get(path) {
    return fetch(path, { cache: "no-store" }).then(function (r) {
      if (!r.ok) {
        var error = new Error(path + ": HTTP " + r.status);
        error.status = r.status;
        throw error;
      }
      return r.json();
    });
  }

  var tick = 0;
  /* `force`: even while paused (the instance shown was just changed). */
  function refresh(force) {
    if (paused && !force) { return Promise.resolve(); }
    var wantModels = tick % 2 === 0;
    tick++;
    var asked = generation;
    var which = "instance=" + view.instance;
    return Promise.all([get("live/state?after=" + marks.last + "&" + which),
                        wantModels ? get("live/models?" + which) : null])
      .then(function (got) {
        if (asked !== generation) { return; }  // asked before the instance shown changed
        var started = performance.now();
        renderState(got[0]);
        if (got[1]) { view.rows = objects(got[1]); }
        renderModels();
        renders++;
        document.body.setAttribute("data-renders", String(renders));
        document.body.setAttribute("data-render-ms", (performance.now() - started).toFixed(1));
        $("updated").textContent = "updated " + C.fmtTime(got[0].now, false);
      })
      .catch(function (error) {
        if (asked !== generation) { return; }
        // A link to an instance the endpoint doesn't have: show the first one instead.
        if (error.status === 400 && view.instance !== 0) { showInstance(0); }
        $("updated").textContent = "not answering: " + error.message;
      });
  }

  function loop() { refresh().then(function () { setTimeout(loop, 1000); }); }

  /* ?filter=text&state=loaded&sort=-invocations&instance=1: a view that can be linked to. */
  function fromQuery() {
    var q = new URLSearchParams(window.location.search);
    view.filter = q.get("filter") || "";
    view.instance = /^\d+$/.test(q.get("instance") || "") ? Number(q.get("instance")) : 0;
    view.state = q.get("state") || "";
    var sort = q.get("sort");
    if (sort) {
      view.sortDir = sort.charAt(0) === "-" ? -1 : 1;
      view.sortKey = sort.replace(/^[-+]/, "");
    }
    $("filter").value = view.filter;
    $("state-filter").value = view.state;
  }

  C.legend($("timeline-legend"), C.TIMELINE_LEGEND);
  fromQuery();
  header();
  $("filter").oninput = function (e) { view.filter = e.target.value; view.page = 0; renderModels(); };
  $("state-filter").onchange = function (e) { view.state = e.target.value; view.page = 0; renderModels(); };
  $("prev").onclick = function () { view.page = Math.max(0, view.page - 1); renderModels(); };
  $("next").onclick = function () { view.page++; renderModels(); };
  $("pause").onchange = function (e) { paused = e.target.checked; };
  $("instance").onchange = function (e) { showInstance(Number(e.target.value)); refresh(true); };
  loop();
})();
