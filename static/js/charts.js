/* Draws every <canvas data-chart="ID"> from the Chart.js config in <script id="ID">
   (rendered by json_script), on page load and again after each HTMX swap. */
(function () {
  "use strict";

  function draw(root) {
    if (typeof Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      var existing = Chart.getChart(canvas);
      if (existing) existing.destroy();
      var config = JSON.parse(source.textContent);
      var meta = config.meta || {};
      delete config.meta;
      config.options = Object.assign(
        { responsive: true, maintainAspectRatio: false, animation: false },
        config.options || {}
      );
      config.options.plugins = Object.assign(
        { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        config.options.plugins || {}
      );
      applyMeta(config, meta);
      new Chart(canvas, config);
    });
  }

  // ---- units, stacked totals and drill-down (the chart's `meta` block, see views/overview.py)

  function fmt(value, unit) {
    if (value === null || value === undefined) return "no data";
    var number = typeof value === "number" ? value.toLocaleString(undefined, { maximumFractionDigits: 2 }) : value;
    return unit === "%" ? number + " %" : number + " " + unit;
  }

  function applyMeta(config, meta) {
    var unit = meta.unit || "";
    var plugins = config.options.plugins;
    var tooltip = plugins.tooltip = plugins.tooltip || {};
    tooltip.callbacks = {
      title: function (items) {
        if (!items.length) return "";
        var item = items[0];
        // A previous-period line names its own date, not the current period's.
        if (item.dataset.previous && meta.previous_labels) return meta.previous_labels[item.dataIndex] + " (previous period)";
        return item.label;
      },
      label: function (item) {
        var value = item.parsed && typeof item.parsed === "object" ? (config.options.indexAxis === "y" ? item.parsed.x : item.parsed.y) : item.raw;
        var name = item.dataset.label || item.label || "";
        return (config.type === "doughnut" ? item.label : name) + ": " + fmt(value, unit);
      },
      footer: function (items) {
        if (!meta.total || !items.length) return "";
        var index = items[0].dataIndex;
        var total = 0;
        items[0].chart.data.datasets.forEach(function (dataset) {
          if (!dataset.previous) total += Number(dataset.data[index] || 0);
        });
        return "Total: " + fmt(total, unit);
      }
    };
    if (meta.total) tooltip.mode = "index";
    var drill = meta.drill;
    if (!drill) return;
    config.options.onHover = function (event, elements) {
      event.native.target.style.cursor = elements.length ? "pointer" : "default";
    };
    config.options.onClick = function (event, elements, chart) {
      // Everything under the pointer; a bar wins over the previous period's line drawn on it.
      var under = chart.getElementsAtEventForMode(event, "point", { intersect: true }, true);
      if (!under.length) under = elements;
      if (!under.length) return;
      var hit = under.find(function (e) { return !chart.data.datasets[e.datasetIndex].previous; }) || under[0];
      var url = drillUrl(drill, meta, chart, hit);
      if (url) window.location.assign(url);
    };
  }

  function drillUrl(drill, meta, chart, hit) {
    if (drill.kind === "links") return drill.links[hit.index];
    if (drill.kind !== "day") return null;
    var dataset = chart.data.datasets[hit.datasetIndex];
    var day = dataset.previous && meta.previous_labels ? meta.previous_labels[hit.index] : chart.data.labels[hit.index];
    var params = new URLSearchParams({ start: day, end: day });
    var type = drill.type;
    if (drill.series_types && !dataset.previous && drill.series_types[hit.datasetIndex]) type = drill.series_types[hit.datasetIndex];
    if (type) params.set("type", type);
    return drill.base + "?" + params.toString();
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  // After an HTMX swap the new partial holds fresh canvases and configs.
  document.addEventListener("htmx:afterSettle", function () { draw(document); });
  // Back/forward restores from htmx's history cache: canvases come back blank, so redraw.
  document.addEventListener("htmx:historyRestore", function () { draw(document); });
})();
