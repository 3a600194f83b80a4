// The console's only script (served from /console/static, allowed by its CSP as 'self').
// Every page works without it; it adds copy buttons, select-all, confirmations and live refresh.
"use strict";

function copyButtons(root) {
  root.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      var note = document.querySelector('[data-copied-for="' + button.dataset.copy + '"]');
      var done = function () { if (note) { note.textContent = "Copied."; } };
      field.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () {
          if (note) { note.textContent = "Selected: press Ctrl+C (⌘C) to copy."; }
        });
      } else {
        if (note) { note.textContent = "Selected: press Ctrl+C (⌘C) to copy."; }
      }
    });
  });
}

function selectAll(root) {
  root.querySelectorAll("input[data-select-all]").forEach(function (box) {
    box.addEventListener("change", function () {
      box.form.querySelectorAll('input[name="ids"]').forEach(function (c) { c.checked = box.checked; });
    });
  });
}

function confirmations(root) {
  root.querySelectorAll("[data-confirm]").forEach(function (button) {
    button.addEventListener("click", function (event) {
      if (!window.confirm(button.dataset.confirm)) { event.preventDefault(); }
    });
  });
}

// An element with data-refresh="<url>" is replaced every 1.5 s by the element of the same id
// in a fresh copy of that page, until the fresh one no longer asks to be refreshed.
function refresh(element) {
  window.setTimeout(function () {
    fetch(element.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(element.id);
        if (!fresh) { return; }
        element.replaceWith(fresh);
        enhance(fresh);
        if (fresh.dataset.refresh) { refresh(fresh); }
      })
      .catch(function () { window.setTimeout(function () { refresh(element); }, 5000); });
  }, 1500);
}

function enhance(root) {
  copyButtons(root);
  selectAll(root);
  confirmations(root);
}

document.addEventListener("DOMContentLoaded", function () {
  enhance(document);
  document.querySelectorAll("[data-refresh]").forEach(refresh);
});
