/**
 * A pipeline as a picture: the jobs in columns by level (upstream on the left), a box per
 * job with its last run's status, an arrow per link (dashed for "on failure", dotted for
 * "on completion"). Plain SVG, no layout library: pipelines are a handful of jobs.
 */
import { IPipeline } from './api';
import { badgeFor } from './output';

const SVG_NS = 'http://www.w3.org/2000/svg';
const W = 120; // a box
const H = 40;
const GAP_X = 36; // between columns: room for the arrows
const GAP_Y = 12;
const PAD = 6;

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: { [key: string]: string | number } = {},
  ...children: (Node | string)[]
): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    node.setAttribute(k, String(v));
  }
  node.append(...children);
  return node;
}

function clip(text: string, max = 16): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The graph of *pipeline*, *focus* (a job id) outlined; a click on a box calls *onPick*
 * with that job's name.
 */
export function pipelineGraph(pipeline: IPipeline, focus: string, onPick: (name: string) => void): SVGSVGElement {
  const levels = new Map<number, IPipeline['nodes']>();
  for (const node of pipeline.nodes) {
    levels.set(node.level, [...(levels.get(node.level) ?? []), node]);
  }
  const where = new Map<string, { x: number; y: number }>();
  let rows = 1;
  for (const [level, nodes] of levels) {
    nodes.forEach((node, i) => where.set(node.id, { x: PAD + level * (W + GAP_X), y: PAD + i * (H + GAP_Y) }));
    rows = Math.max(rows, nodes.length);
  }
  const columns = Math.max(1, ...[...levels.keys()].map(l => l + 1));
  const width = 2 * PAD + columns * W + (columns - 1) * GAP_X;
  const height = 2 * PAD + rows * H + (rows - 1) * GAP_Y;
  const root = svg('svg', {
    class: 'jp-HermesCron-graph',
    'data-role': 'pipeline-graph',
    // as wide as it needs, narrower when the panel is: it scales down, never scrolls
    width: '100%',
    style: `max-width: ${width}px`,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `pipeline of ${pipeline.nodes.length} jobs`
  });
  root.append(
    svg(
      'defs',
      {},
      svg('marker', { id: 'jp-HermesCron-arrow', viewBox: '0 0 8 8', refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: 'auto' },
        svg('path', { d: 'M0,0 L8,4 L0,8 z', class: 'jp-HermesCron-graphArrow' }))
    )
  );
  const names = new Map(pipeline.nodes.map(n => [n.id, n.name]));
  for (const edge of pipeline.edges) {
    const a = where.get(edge.from);
    const b = where.get(edge.to);
    if (!a || !b) {
      continue;
    }
    const x1 = a.x + W;
    const y1 = a.y + H / 2;
    const x2 = b.x;
    const y2 = b.y + H / 2;
    const bend = Math.max(GAP_X / 2, (x2 - x1) / 2);
    root.append(
      svg(
        'path',
        {
          class: 'jp-HermesCron-graphEdge',
          'data-from': names.get(edge.from) ?? edge.from,
          'data-to': names.get(edge.to) ?? edge.to,
          'data-on': edge.on,
          d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
          'marker-end': 'url(#jp-HermesCron-arrow)'
        },
        svg('title', {}, `${names.get(edge.to)} runs after ${names.get(edge.from)}${edge.on === 'success' ? '' : ` (on ${edge.on})`}`)
      )
    );
  }
  for (const node of pipeline.nodes) {
    const at = where.get(node.id)!;
    const badge = node.last_status ? badgeFor(node.last_status) : { label: 'no runs', tone: 'muted' };
    const box = svg(
      'g',
      {
        class: 'jp-HermesCron-graphNode',
        'data-job': node.name,
        'data-status': node.last_status ?? 'none',
        'data-state': node.state,
        'data-focus': String(node.id === focus),
        transform: `translate(${at.x},${at.y})`,
        tabindex: 0
      },
      svg('title', {}, `${node.name}: ${badge.label.toLowerCase()}, ${node.state}${node.note ? `\n${node.note}` : ''}`),
      svg('rect', { width: W, height: H, rx: 5, 'data-tone': badge.tone }),
      svg('text', { x: 8, y: 16, class: 'jp-HermesCron-graphName' }, clip(node.name)),
      svg('text', { x: 8, y: 31, class: 'jp-HermesCron-graphStatus', 'data-tone': badge.tone }, badge.label)
    );
    box.addEventListener('click', () => onPick(node.name));
    box.addEventListener('keydown', (ev: KeyboardEvent) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        onPick(node.name);
      }
    });
    root.append(box);
  }
  return root;
}
