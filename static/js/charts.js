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
      config.options = Object.assign(
        { responsive: true, maintainAspectRatio: false, animation: false },
        config.options || {}
      );
      config.options.plugins = Object.assign(
        { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        config.options.plugins || {}
      );
      new Chart(canvas, config);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  // After an HTMX swap the new partial holds fresh canvases and configs.
  document.addEventListener("htmx:afterSettle", function () { draw(document); });
  // Back/forward restores from htmx's history cache: canvases come back blank, so redraw.
  document.addEventListener("htmx:historyRestore", function () { draw(document); });
})();
