// Time-series charts for the console's pages, drawn with uPlot (from the npm registry,
// served under /console/vendor/). A chart keeps its own data; pages push points.

import uPlot from "/console/vendor/uplot/uPlot.esm.js";
import { el } from "./lib.js";

const COLOURS = ["#1f5fa8", "#1e7d32", "#b3261e", "#8a5a00", "#6a3fa0", "#00838f"];

/**
 * A line chart: lineChart({title, series: [{label, unit?, scale?}], span, ranges, height, id}).
 * span: the x axis shows the last `span` seconds up to now; ranges: {scale: [min, max]}
 * for a fixed y range (percentages: [0, 100]).
 *   c.set(times, [values per series])   replaces the data (times in Unix seconds)
 *   c.push(time, [value per series], keep)   appends a point, keeping the last `keep`
 * The element is c.element; null values leave gaps.
 */
export function lineChart({ title, series, span = 3600, ranges = {}, height = 200, id = null }) {
  const box = el("div", { class: "chart", id });
  const element = el("div", { class: "panel chart-panel" }, el("h2", {}, title), box);
  let data = [[], ...series.map(() => [])];
  let plot = null;
  const scales = { x: { time: true } };
  for (const s of series) {
    const scale = s.scale || "y";
    if (!scales[scale]) scales[scale] = ranges[scale] ? { auto: false, range: ranges[scale] } : { auto: true };
  }
  const axes = [{}];
  const seen = new Set();
  for (const s of series) {
    const scale = s.scale || "y";
    if (seen.has(scale)) continue;
    axes.push({ scale, side: seen.size ? 1 : 3, label: s.unit || "", grid: { show: !seen.size } });
    seen.add(scale);
  }

  function draw() {
    const width = Math.max(320, box.clientWidth || 600);
    if (!plot) {
      plot = new uPlot({
        width, height, scales, axes, legend: { live: false },
        series: [{}, ...series.map((s, i) => ({
          label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, scale: s.scale || "y",
          spanGaps: false, points: { show: true, size: 4 },
        }))],
      }, data, box);
    } else {
      plot.setData(data, false);
    }
    const now = Date.now() / 1000;
    plot.setScale("x", { min: now - span, max: now });
    box.dataset.points = String(data[0].length);
  }

  return {
    element,
    set(times, values) {
      data = [times, ...values];
      draw();
    },
    push(time, values, keep = 120) {
      data[0].push(time);
      values.forEach((v, i) => data[i + 1].push(v));
      if (data[0].length > keep) data = data.map((column) => column.slice(-keep));
      draw();
    },
    resize() { if (plot) plot.setSize({ width: Math.max(320, box.clientWidth || 600), height }); },
  };
}
