// Small conveniences on every page; every page works without them.
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.id === "project-switcher") { el.form.submit(); }
    if (el.matches("select[data-autosubmit]")) {
      // A preset range replaces custom dates.
      el.form.querySelectorAll("[data-range-date]").forEach(function (d) { d.value = ""; });
      el.form.submit();
    }
  });
})();
