/* Analyst pages: trace filters and "jump to next error", copy-to-clipboard ids. */
(function () {
  "use strict";

  function trace() { return document.getElementById("trace"); }

  function errorSeqs(root) {
    var raw = (root && root.dataset.errors) || "";
    return raw ? raw.split(",").map(Number) : [];
  }

  function applyKindFilters(root) {
    root.querySelectorAll("#trace-controls input[name=kind]").forEach(function (box) {
      root.classList.toggle("hide-" + box.value, !box.checked);
    });
    var only = root.querySelector("#trace-controls input[name=errors_only]");
    root.classList.toggle("errors-only", !!(only && only.checked));
  }

  function show(seq) {
    var el = document.getElementById("event-" + seq);
    if (!el) return false;
    document.querySelectorAll(".trace .event.jumped").forEach(function (e) { e.classList.remove("jumped"); });
    el.classList.add("jumped");
    el.scrollIntoView({ block: "center" });
    el.focus({ preventScroll: true });
    history.replaceState(null, "", "#event-" + seq);
    return true;
  }

  // The next error after the one last shown; loads the pages up to it when needed.
  var current = -1;
  function nextError() {
    var root = trace();
    var seqs = errorSeqs(root);
    if (!seqs.length) return;
    var next = seqs.find(function (s) { return s > current; });
    if (next === undefined) next = seqs[0];  // wrap around
    current = next;
    if (show(next)) return;
    var more = document.getElementById("trace-more");
    if (!more || typeof htmx === "undefined") { location.href = "?upto=" + next + "#event-" + next; return; }
    htmx.ajax("GET", more.dataset.url + "&upto=" + next, { target: more, swap: "outerHTML" })
      .then(function () { show(next); });
  }

  function copy(button) {
    var text = button.dataset.copy;
    var done = function () {
      button.classList.add("copied");
      button.setAttribute("aria-label", "Copied");
      setTimeout(function () { button.classList.remove("copied"); button.setAttribute("aria-label", "Copy id"); }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else { fallback(text); done(); }
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing else to try */ }
    document.body.removeChild(area);
  }

  document.addEventListener("change", function (event) {
    var root = trace();
    if (root && root.contains(event.target) && event.target.closest("#trace-controls")) applyKindFilters(root);
  });
  document.addEventListener("click", function (event) {
    if (event.target.closest("#next-error")) { event.preventDefault(); nextError(); return; }
    var button = event.target.closest("button.copy-id");
    if (button) { event.preventDefault(); copy(button); }
  });
  // Saved views: filters change the URL through HTMX, so save what the address bar shows now.
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form.js-current-query");
    if (!form) return;
    var params = new URLSearchParams(location.search);
    params.delete("cursor");
    form.querySelector("input[name=query]").value = params.toString();
    var next = form.querySelector("input[name=next]");
    if (next) next.value = location.pathname + location.search;
  }, true);

  document.addEventListener("DOMContentLoaded", function () {
    var root = trace();
    if (!root) return;
    applyKindFilters(root);
    var match = /^#event-(\d+)$/.exec(location.hash);
    if (match) { current = Number(match[1]); show(current); }
  });
})();
