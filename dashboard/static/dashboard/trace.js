// The call tree: collapse and expand rows, load children and span details on demand.
// Rows and panels are HTML rendered (and escaped) by the server; this script never builds HTML from data.
(function () {
  "use strict";
  var table = document.querySelector("[data-tree-table]");
  var panel = document.querySelector("[data-span-panel]");
  if (!table) { return; }
  var body = table.tBodies[0];

  function depth(row) { return parseInt(row.dataset.depth || "0", 10); }

  function fragment(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.content;
  }

  function get(url) {
    return fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}}).then(function (r) {
      if (!r.ok) { throw new Error(r.status + " " + r.statusText); }
      return r.text();
    });
  }

  // Show or hide the rows below `row`, keeping the collapsed state of nested rows.
  function refresh(row) {
    var d = depth(row), open = row.dataset.expanded === "1", limit = Infinity;
    for (var r = row.nextElementSibling; r && depth(r) > d; r = r.nextElementSibling) {
      if (!open) { r.hidden = true; continue; }
      var rd = depth(r);
      if (rd > limit) { r.hidden = true; continue; }
      limit = Infinity;
      r.hidden = false;
      if (r.dataset.expanded === "0") { limit = rd; }
    }
  }

  function setOpen(row, open) {
    row.dataset.expanded = open ? "1" : "0";
    var button = row.querySelector("[data-toggle]");
    if (button) { button.textContent = open ? "▾" : "▸"; }
    refresh(row);
  }

  function loaded(row) {
    var next = row.nextElementSibling;
    return next && depth(next) > depth(row);
  }

  function url(params) {
    var u = new URL(table.dataset.childrenUrl, window.location.href);
    Object.keys(params).forEach(function (k) { u.searchParams.set(k, params[k]); });
    return u.toString();
  }

  function toggle(row) {
    if (row.dataset.expanded === "1") { setOpen(row, false); return; }
    if (loaded(row)) { setOpen(row, true); return; }
    row.classList.add("loading");
    get(url({parent: row.dataset.spanId, offset: 0})).then(function (html) {
      row.after(fragment(html));
      row.classList.remove("loading");
      setOpen(row, true);
    }).catch(function (err) { row.classList.remove("loading"); row.title = "Could not load: " + err.message; });
  }

  function more(row) {
    get(url({parent: row.dataset.moreParent, offset: row.dataset.moreOffset})).then(function (html) {
      row.replaceWith(fragment(html));
    });
  }

  function select(row) {
    var id = row.dataset.spanId;
    body.querySelectorAll("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    row.classList.add("selected");
    get(table.dataset.spanUrl + encodeURIComponent(id)).then(function (html) {
      panel.replaceChildren(fragment(html));
      panel.classList.add("open");
      var u = new URL(window.location.href);
      u.searchParams.set("span", id);
      window.history.replaceState(null, "", u.toString());
    });
  }

  panel.addEventListener("click", function (event) {
    if (!event.target.closest("[data-close-panel]")) { return; }
    event.preventDefault();
    panel.classList.remove("open");
    body.querySelectorAll("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    var u = new URL(window.location.href);
    u.searchParams.delete("span");
    window.history.replaceState(null, "", u.toString());
  });

  body.addEventListener("click", function (event) {
    var target = event.target;
    var row = target.closest("tr");
    if (!row) { return; }
    if (target.closest("[data-toggle]")) { toggle(row); return; }
    if (target.closest("[data-more]")) { more(row); return; }
    if (target.closest("[data-span-link]")) { event.preventDefault(); select(row); }
  });

  document.querySelectorAll("[data-tree]").forEach(function (button) {
    button.addEventListener("click", function () {
      var rows = body.querySelectorAll("tr.node[data-children]:not([data-children='0'])");
      var open = button.dataset.tree === "expand-loaded";
      rows.forEach(function (row) {
        if (!open || loaded(row)) { row.dataset.expanded = open ? "1" : "0"; }
        var b = row.querySelector("[data-toggle]");
        if (b) { b.textContent = row.dataset.expanded === "1" ? "▾" : "▸"; }
      });
      body.querySelectorAll("tr").forEach(function (r) { r.hidden = open ? false : depth(r) > 0; });
      if (open) { body.querySelectorAll("tr.node").forEach(function (r) { if (depth(r) === 0) { refresh(r); } }); }
    });
  });
})();
