/* Small glue for every dashboard page (no inline scripts: the CSP allows files only).
   - the phone menu toggle;
   - a failed HTMX request shows an error banner and clears the stale results it would replace;
   - forms marked data-needs-dates="custom" (the overview) wait for both dates of a custom range. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  document.addEventListener("click", function (event) {
    var button = event.target.closest(".menu-toggle");
    if (!button) return;
    var header = document.getElementById(button.getAttribute("aria-controls"));
    var open = header.classList.toggle("menu-open");
    button.setAttribute("aria-expanded", open ? "true" : "false");
  });

  function banner() { return document.getElementById("request-error"); }

  // The heading and first paragraph of an error page (ours are in the layout), else the status.
  function describe(xhr) {
    var text = "";
    if (xhr && xhr.responseText && /<html/i.test(xhr.responseText)) {
      var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
      var title = doc.querySelector(".error-page h1");
      var lead = doc.querySelector(".error-page .lead");
      if (title) text = title.textContent.trim() + (lead ? ": " + lead.textContent.trim() : "");
    }
    if (!text && xhr && xhr.status) text = "The server answered " + xhr.status + (xhr.statusText ? " " + xhr.statusText : "") + ".";
    return text || "The server could not be reached.";
  }

  function fail(event) {
    var detail = event.detail || {};
    var box = banner();
    if (box) {
      box.textContent = "Could not update this page. " + describe(detail.xhr) + " The results shown before were cleared; try again.";
      box.hidden = false;
    }
    // Clear what the request would have replaced, so stale results never pass for the answer.
    var target = detail.target;
    if (target && target.id !== "request-error" && target !== document.body) {
      target.innerHTML = "";
      var note = document.createElement("p");
      note.className = "empty-state small stale-cleared";
      note.textContent = "Nothing to show: the last request failed.";
      target.appendChild(note);
    }
  }

  document.addEventListener("htmx:responseError", fail);
  document.addEventListener("htmx:sendError", fail);
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.detail && event.detail.successful && banner()) banner().hidden = true;
  });

  // The overview's "Custom range" waits until both dates are picked (no eval'd trigger filter).
  document.addEventListener("htmx:confirm", function (event) {
    var form = event.detail.elt;
    if (!form || !form.dataset || !form.dataset.needsDates) return;
    var range = form.elements.range, start = form.elements.start, end = form.elements.end;
    if (range && range.value === form.dataset.needsDates && !(start.value && end.value)) {
      event.preventDefault();
    }
  });
})();
