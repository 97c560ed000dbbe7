// Draws every <div class="chart" data-figure="ID"> from the JSON in <script id="ID" type="application/json">.
// Plotly renders labels as text; we never build HTML from data here.
(function () {
  "use strict";
  function draw() {
    document.querySelectorAll(".chart[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source || !window.Plotly) { return; }
      var figure = JSON.parse(source.textContent);
      if (!figure.data || figure.data.length === 0) {
        el.textContent = "No data in this range.";
        el.classList.add("empty");
        return;
      }
      window.Plotly.newPlot(el, figure.data, figure.layout, {displaylogo: false, responsive: true});
      el.dataset.drawn = "1";
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
