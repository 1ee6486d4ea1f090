/* Tollway console: draws the overview charts from the data-* attributes of each <canvas data-chart> (no inline
   script: the Content-Security-Policy allows only files served by Tollway). The numbers are also in the tables
   below each chart, so the page says everything without JavaScript. */
(function () {
  "use strict";
  var palette = ["#1f5fbf", "#e07b24", "#2e9e57", "#b3261e", "#7a4fc1", "#8c6d3f", "#c2417f", "#5a6475", "#1b9aaa"];

  function money(value) {
    return "$" + Number(value).toLocaleString(undefined, { maximumFractionDigits: 4 });
  }

  function draw(canvas) {
    var days = JSON.parse(canvas.getAttribute("data-days"));
    var series = JSON.parse(canvas.getAttribute("data-series"));
    var isMoney = canvas.getAttribute("data-unit") === "usd";
    var datasets = series.map(function (s, i) {
      return {
        label: s.label,
        data: s.values.map(Number),
        backgroundColor: palette[i % palette.length],
        borderColor: palette[i % palette.length],
        stack: "all"
      };
    });
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: days.map(function (d) { return d.slice(5); }), datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { stacked: true },
          y: { stacked: true, beginAtZero: true, ticks: { callback: function (v) { return isMoney ? money(v) : v; } } }
        },
        plugins: {
          legend: { position: "bottom" },
          tooltip: { callbacks: { label: function (c) { return c.dataset.label + ": " + (isMoney ? money(c.raw) : c.raw); } } }
        }
      }
    });
    canvas.setAttribute("data-drawn", String(days.length));
  }

  function start() {
    if (!window.Chart) { return; }
    Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
