/**
 * Two runs of a job side by side (`GET /diff?a=&b=`): the fields that differ, the
 * metrics, the unified diff of their output (coloured), and for notebooks the changed
 * cells (source diff, changed outputs, images side by side).
 */
import { Widget } from '@lumino/widgets';

import { CronAPI } from './api';
import { diff, IDiff, IDiffCell, IDiffOutput, toneOf } from './across';
import { h } from './dom';
import { formatTime, STATUS_LABEL } from './format';

function show(value: unknown): string {
  if (value === null || value === undefined) {
    return '—';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A unified diff, one coloured line per line. */
export function unifiedDiff(text: string, role = 'unified'): HTMLElement {
  const pre = h('pre', { class: 'jp-HermesCron-unified', 'data-role': role });
  for (const line of text.split('\n')) {
    let kind = 'same';
    if (line.startsWith('+++') || line.startsWith('---')) {
      kind = 'file';
    } else if (line.startsWith('@@')) {
      kind = 'hunk';
    } else if (line.startsWith('+')) {
      kind = 'add';
    } else if (line.startsWith('-')) {
      kind = 'del';
    }
    pre.append(h('div', { class: 'jp-HermesCron-diffLine', 'data-kind': kind }, line || ' '));
  }
  return pre;
}

function runHead(label: string, run: { [key: string]: any }): HTMLElement {
  return h(
    'div',
    { class: 'jp-HermesCron-diffRun', 'data-role': `run-${label}`, 'data-run-id': run.id ?? '' },
    h('b', {}, label.toUpperCase()),
    ' ',
    h('span', { class: 'jp-HermesCron-badge', 'data-tone': toneOf(run.status ?? '') }, STATUS_LABEL[run.status] ?? run.status ?? '?'),
    ' ',
    h('span', { class: 'jp-HermesCron-muted' }, formatTime(run.started_at ?? run.scheduled_for ?? run.queued_at)),
    ' ',
    h('span', { class: 'jp-HermesCron-mono jp-HermesCron-muted' }, run.id ?? '')
  );
}

function outputSide(out: IDiffOutput, value: string | null): HTMLElement {
  if (value === null) {
    return h('div', { class: 'jp-HermesCron-diffSide jp-HermesCron-muted' }, '—');
  }
  if (out.mime.startsWith('image/')) {
    return h('div', { class: 'jp-HermesCron-diffSide' }, h('img', { src: `data:${out.mime};base64,${value}`, alt: out.mime }));
  }
  return h('div', { class: 'jp-HermesCron-diffSide' }, h('pre', {}, value));
}

const MIME_LABEL: { [mime: string]: string } = {
  'application/vnd.jupyter.stdout': 'stdout',
  'application/vnd.jupyter.stderr': 'stderr',
  'application/vnd.jupyter.error': 'error'
};

function cellView(cell: IDiffCell): HTMLElement {
  const where = cell.index !== null && cell.index !== undefined ? `cell ${cell.index}` : `cell ${cell.index_a} (of A)`;
  return h(
    'div',
    { class: 'jp-HermesCron-diffCell', 'data-change': cell.change, 'data-index': String(cell.index ?? '') },
    h('div', { class: 'jp-HermesCron-diffCellHead' }, `${where} · ${cell.cell_type} · ${cell.change}`),
    cell.source ? unifiedDiff(cell.source, 'cell-source') : '',
    ...cell.outputs.map(o =>
      h(
        'div',
        { class: 'jp-HermesCron-diffOutput', 'data-change': o.change, 'data-mime': o.mime },
        h('div', { class: 'jp-HermesCron-muted' }, `output ${o.change} · ${MIME_LABEL[o.mime] ?? o.mime}`),
        h('div', { class: 'jp-HermesCron-diffSides' }, outputSide(o, o.a), outputSide(o, o.b))
      )
    )
  );
}

/** The comparison of two runs, with a close button. */
export class DiffView extends Widget {
  constructor(private readonly api: CronAPI, readonly a: string, readonly b: string, onClose: () => void) {
    super();
    this.addClass('jp-HermesCron-diff');
    this.node.dataset.role = 'run-diff';
    this.node.dataset.a = a;
    this.node.dataset.b = b;
    const close = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-action': 'close-diff', title: 'Close the comparison' }, '×');
    close.onclick = onClose;
    this.node.append(h('div', { class: 'jp-HermesCron-sectionTitle' }, 'Compare runs ', close), h('div', { class: 'jp-HermesCron-muted' }, 'Reading both runs…'));
    void this._load();
  }

  private async _load(): Promise<void> {
    let d: IDiff;
    try {
      d = await diff(this.api, this.a, this.b);
    } catch (err: any) {
      if (!this.isDisposed) {
        this.node.lastElementChild?.replaceWith(h('div', { class: 'jp-HermesCron-error', 'data-role': 'diff-error' }, String(err?.message ?? err)));
      }
      return;
    }
    if (this.isDisposed) {
      return;
    }
    const parts: (HTMLElement | string)[] = [runHead('a', d.a), runHead('b', d.b)];
    parts.push(
      d.fields.length
        ? h(
            'table',
            { class: 'jp-HermesCron-runs', 'data-role': 'diff-fields' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Field'), h('th', {}, 'A'), h('th', {}, 'B'))),
            h('tbody', {}, ...d.fields.map(f => h('tr', { 'data-field': f.field }, h('td', {}, f.field), h('td', { class: 'jp-HermesCron-diffBefore' }, show(f.a)), h('td', { class: 'jp-HermesCron-diffAfter' }, show(f.b)))))
          )
        : h('div', { class: 'jp-HermesCron-muted', 'data-role': 'diff-fields' }, 'Same status, exit code, trigger, parameters and revision.')
    );
    if (d.metrics.length) {
      parts.push(
        h(
          'table',
          { class: 'jp-HermesCron-runs', 'data-role': 'diff-metrics' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Metric'), h('th', {}, 'A'), h('th', {}, 'B'))),
          h('tbody', {}, ...d.metrics.map(m => h('tr', { 'data-metric': m.name }, h('td', {}, `${m.name}${m.unit ? ` (${m.unit})` : ''}`), h('td', {}, show(m.a)), h('td', {}, show(m.b)))))
        )
      );
    }
    const out = d.output;
    parts.push(
      h('div', { class: 'jp-HermesCron-sectionTitle' }, 'Output ', h('span', { class: 'jp-HermesCron-muted', 'data-role': 'diff-counts' }, out.same ? 'the same' : `+${out.added} −${out.removed}${out.truncated ? ' (truncated)' : ''}`))
    );
    if (!out.same) {
      parts.push(unifiedDiff(out.unified));
    }
    if (d.notebook) {
      parts.push(h('div', { class: 'jp-HermesCron-sectionTitle' }, 'Notebook ', h('span', { class: 'jp-HermesCron-muted' }, d.notebook.same ? 'the same' : `${d.notebook.cells.length} changed cell(s)`)));
      parts.push(h('div', { 'data-role': 'diff-cells' }, ...d.notebook.cells.map(cellView)));
    }
    this.node.lastElementChild?.replaceWith(h('div', { class: 'jp-HermesCron-diffBody', 'data-role': 'diff-body' }, ...parts));
    this.node.dataset.loaded = 'true';
  }
}
