// The console's one script: the theme switch, the overview's live figures,
// and the usage charts (drawn by plotly.js, shipped with the gateway).
"use strict";

(function () {
  const THEME_KEY = "interlock-console-theme";
  const root = document.documentElement;

  function currentTheme() {
    const chosen = root.dataset.theme;
    if (chosen) return chosen;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function showTheme(button) {
    const dark = currentTheme() === "dark";
    button.setAttribute("aria-pressed", String(dark));
    button.textContent = dark ? "Light theme" : "Dark theme";
  }

  const saved = window.localStorage.getItem(THEME_KEY);
  if (saved === "dark" || saved === "light") root.dataset.theme = saved;

  document.addEventListener("DOMContentLoaded", function () {
    const button = document.getElementById("theme");
    if (button) {
      showTheme(button);
      button.addEventListener("click", function () {
        root.dataset.theme = currentTheme() === "dark" ? "light" : "dark";
        window.localStorage.setItem(THEME_KEY, root.dataset.theme);
        showTheme(button);
        redrawCharts();
      });
    }
    showLocalTimes();
    startLive();
    drawUsageCharts();
  });

  // Times come as Unix seconds; shown in the reader's own zone.
  function showLocalTimes() {
    document.querySelectorAll("time[data-unix]").forEach(function (element) {
      const seconds = Number(element.dataset.unix);
      if (!Number.isFinite(seconds) || seconds <= 0) return;
      const when = new Date(seconds * 1000);
      element.dateTime = when.toISOString();
      element.textContent = when.toLocaleString();
    });
  }

  // -- formatting, as the server formats the first render ----------------
  function format(value, kind) {
    if (value === null || value === undefined) return "—";
    if (kind === "percent") return (value * 100).toFixed(1) + " %";
    if (kind === "ms") return value.toLocaleString("en-US", { maximumFractionDigits: 2 }) + " ms";
    if (kind === "usd") {
      return "$" + value.toLocaleString("en-US", {
        minimumFractionDigits: Math.abs(value) < 1 ? 4 : 2,
        maximumFractionDigits: Math.abs(value) < 1 ? 4 : 2,
      });
    }
    return value.toLocaleString("en-US", { maximumFractionDigits: 2 });
  }

  function lookup(object, path) {
    return path.split(".").reduce(function (at, part) {
      return at === null || at === undefined ? undefined : at[part];
    }, object);
  }

  // -- charts ------------------------------------------------------------
  const drawn = [];  // [element, traces, layout] to redraw on a theme change

  function layoutFor(layout) {
    const style = getComputedStyle(root);
    const ink = style.getPropertyValue("--ink").trim();
    const grid = style.getPropertyValue("--line").trim();
    return Object.assign({
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: ink, family: "system-ui, sans-serif", size: 12 },
      margin: { l: 56, r: 16, t: 28, b: 48 },
      xaxis: { gridcolor: grid, automargin: true },
      yaxis: { gridcolor: grid, rangemode: "tozero", automargin: true },
      showlegend: false,
    }, layout);
  }

  function draw(element, traces, layout) {
    if (!window.Plotly) return;
    window.Plotly.react(element, traces, layoutFor(layout), { displayModeBar: false, responsive: true });
    const known = drawn.findIndex(function (entry) { return entry[0] === element; });
    if (known >= 0) drawn[known] = [element, traces, layout];
    else drawn.push([element, traces, layout]);
  }

  function redrawCharts() {
    drawn.slice().forEach(function (entry) { draw(entry[0], entry[1], entry[2]); });
  }

  function drawUsageCharts() {
    const data = document.getElementById("chart-data");
    if (!data) return;
    const charts = JSON.parse(data.textContent);
    charts.forEach(function (chart) {
      const element = document.getElementById(chart.id);
      if (!element) return;
      draw(element, [{
        type: "bar",
        x: chart.x,
        y: chart.y,
        marker: { color: getComputedStyle(root).getPropertyValue("--accent").trim() },
        hovertemplate: "%{x}: %{y}<extra></extra>",
      }], {
        title: { text: chart.title, font: { size: 14 } },
        // Days, models and keys are names: a day is not a point in time here.
        xaxis: { type: "category", gridcolor: getComputedStyle(root).getPropertyValue("--line").trim() },
        yaxis: { title: { text: chart.unit }, rangemode: "tozero" },
      });
    });
  }

  // -- the overview, live ------------------------------------------------
  function startLive() {
    const tiles = document.querySelector("[data-live-url]");
    if (!tiles) return;
    const url = tiles.dataset.liveUrl;
    const chart = document.getElementById("rate-chart");
    const times = [];
    const rates = [];
    const note = document.getElementById("window");

    async function poll() {
      try {
        const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
        if (response.status === 401) {
          window.location.assign("/console/login?next=/console");
          return;
        }
        if (!response.ok) return;
        const figures = await response.json();
        document.querySelectorAll("[data-live]").forEach(function (element) {
          element.textContent = format(lookup(figures, element.dataset.live), element.dataset.format);
        });
        if (note && figures.window_s) {
          note.textContent = "Over the last " + figures.window_s + " s, from the gateway's own metrics; refreshed every 2 s.";
        }
        if (chart && figures.requests_per_s !== null) {
          times.push(new Date());
          rates.push(figures.requests_per_s);
          if (times.length > 150) { times.shift(); rates.shift(); }
          // Copies: Plotly.react redraws only data it has not seen.
          draw(chart, [{ type: "scatter", mode: "lines+markers", x: times.slice(), y: rates.slice(), line: { width: 2 } }],
               { yaxis: { title: { text: "requests/s" }, rangemode: "tozero" } });
        }
        tiles.dataset.updated = String(Date.now());
        tiles.dataset.polls = String(Number(tiles.dataset.polls || 0) + 1);
      } catch (error) {
        // The gateway restarting or the network down: try again at the next tick.
      }
    }
    poll();
    window.setInterval(poll, 2000);
  }
})();
