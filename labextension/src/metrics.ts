/**
 * A job's metrics in its detail: per metric (the built-ins first, then what its runs
 * reported with `::metric NAME=VALUE`) a sparkline of its latest values (oldest on the
 * left, the last one marked), the last value with its unit, and min / median / max.
 * Plain SVG, as `%cron metrics` draws it (hermes_cron_ext/frontends/render.py).
 */
import { IMetrics, IMetricSeries } from './api';
import { h } from './dom';
import { duration } from './format';

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A value as the other fronts print it (render.format_metric): seconds as a duration,
 * bytes in KB/MB, other numbers to 4 significant digits with their unit; "—" for none. */
export function formatMetric(value: number | null | undefined, unit = ''): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return '—';
  }
  if (unit === 's' && value >= 0) {
    return duration(value);
  }
  if (unit === 'B') {
    let n = value;
    for (const u of ['B', 'KB', 'MB', 'GB']) {
      if (Math.abs(n) < 1024) {
        return u === 'B' ? `${n.toFixed(0)} B` : `${n.toFixed(1)} ${u}`;
      }
      n /= 1024;
    }
    return `${n.toFixed(1)} TB`;
  }
  const text = Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
  return unit ? `${text} ${unit}` : text;
}

/** The series (oldest first) as an SVG line, its last point marked; `data-points` says
 * how many values it draws. */
export function sparkline(values: number[], width = 140, height = 26): SVGSVGElement {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('class', 'jp-HermesCron-sparkline');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.dataset.points = String(values.length);
  if (!values.length) {
    return svg;
  }
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = 3;
  const step = (width - 2 * pad) / Math.max(1, values.length - 1);
  const xy = (i: number, v: number): [number, number] => [
    pad + i * step,
    hi === lo ? height / 2 : pad + ((hi - v) / (hi - lo)) * (height - 2 * pad)
  ];
  const line = document.createElementNS(SVG_NS, 'polyline');
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', 'currentColor');
  line.setAttribute('stroke-width', '1.5');
  line.setAttribute('points', values.map((v, i) => xy(i, v).map(n => n.toFixed(1)).join(',')).join(' '));
  const [lx, ly] = xy(values.length - 1, values[values.length - 1]);
  const dot = document.createElementNS(SVG_NS, 'circle');
  dot.setAttribute('cx', lx.toFixed(1));
  dot.setAttribute('cy', ly.toFixed(1));
  dot.setAttribute('r', '2.5');
  dot.setAttribute('fill', 'currentColor');
  svg.append(line, dot);
  return svg;
}

function metricRow(m: IMetricSeries): HTMLElement {
  const s = m.summary;
  const values = m.points.map(p => p.value);
  const title = `${m.name}: the last ${values.length} of ${m.count} runs, oldest first`;
  return h(
    'div',
    { class: 'jp-HermesCron-metric', 'data-metric': m.name, 'data-builtin': String(m.builtin), title },
    h('span', { class: 'jp-HermesCron-metricName' }, m.name),
    h('span', { class: 'jp-HermesCron-metricLine' }, sparkline(values)),
    h('span', { class: 'jp-HermesCron-metricLast', 'data-role': 'last' }, formatMetric(s.last, m.unit)),
    h(
      'span',
      { class: 'jp-HermesCron-metricRange jp-HermesCron-muted', 'data-role': 'range' },
      `min ${formatMetric(s.min, m.unit)} · median ${formatMetric(s.median, m.unit)} · max ${formatMetric(s.max, m.unit)}`
    )
  );
}

/** The "Metrics" section's content: a row per metric, or why there is none. */
export function metricsSection(answer: IMetrics): (HTMLElement | string)[] {
  if (!answer.metrics.length) {
    return [h('div', { class: 'jp-HermesCron-muted' }, 'No metrics yet: none of its runs has ended.')];
  }
  return [h('div', { class: 'jp-HermesCron-metrics', 'data-role': 'metrics' }, ...answer.metrics.map(metricRow))];
}
