/**
 * Backfill from the panel: a dialog that asks for the range (and says how many slots it
 * holds before anything is queued), then a progress bar with the runs' counts and Cancel,
 * read from `GET /backfills/{id}` until the backfill ends.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { CronAPI, IBackfill, IJob } from './api';
import { h } from './dom';
import { formatTime } from './format';

const ACTIVE = ['queued', 'running'];
const POLL_MS = 1000;

function day(offset: number): string {
  const d = new Date(Date.now() + offset * 86_400_000);
  return d.toISOString().slice(0, 10);
}

/** How many of a backfill's slots have a run that ended. */
export function backfillDone(b: IBackfill): number {
  return Object.entries(b.runs ?? {}).reduce((n, [s, k]) => n + (ACTIVE.includes(s) ? 0 : k), 0);
}

/** `12/30 slots done (4 running, 12 succeeded)`, as the CLI and the widget say it. */
export function backfillText(b: IBackfill): string {
  const runs = b.runs ?? {};
  const parts = Object.keys(runs)
    .sort()
    .map(s => `${runs[s]} ${s.replace('_', ' ')}`);
  const made = Object.values(runs).reduce((a, k) => a + k, 0);
  const left = b.slots - made;
  return (
    `${backfillDone(b)}/${b.slots} slots done` +
    (parts.length ? ` (${parts.join(', ')})` : '') +
    (left && b.state === 'cancelled' ? `; ${left} not run` : '')
  );
}

/**
 * Ask for a backfill of *job*: from, to, how many at once. The slot count is previewed
 * (a dry run) as the range changes. Resolves to the started backfill, or null.
 */
export async function askBackfill(api: CronAPI, job: IJob): Promise<IBackfill | null> {
  const from = h('input', { type: 'date', class: 'jp-mod-styled', 'data-field': 'from', value: day(-7) }) as HTMLInputElement;
  const to = h('input', { type: 'date', class: 'jp-mod-styled', 'data-field': 'to', value: day(-1) }) as HTMLInputElement;
  const parallel = h('input', {
    type: 'number',
    min: '1',
    max: '100',
    class: 'jp-mod-styled',
    'data-field': 'max_parallel',
    value: '1'
  }) as HTMLInputElement;
  const preview = h('div', { class: 'jp-HermesCron-muted', 'data-role': 'backfill-preview' }, '…');
  const body = new Widget();
  body.addClass('jp-HermesCron-backfillForm');
  body.node.append(
    h('div', { class: 'jp-HermesCron-muted' }, `One run of ${job.name} per slot of “${job.schedule}” (${job.timezone}) in the range, each told its slot.`),
    h('label', { class: 'jp-HermesCron-row' }, h('span', {}, 'From'), from),
    h('label', { class: 'jp-HermesCron-row' }, h('span', {}, 'To'), to),
    h('label', { class: 'jp-HermesCron-row' }, h('span', {}, 'At most at once'), parallel),
    preview
  );
  const values = () => ({ from: from.value, to: to.value, max_parallel: Number(parallel.value) || 1 });
  let seq = 0;
  const update = async () => {
    const mine = ++seq;
    try {
      const dry = await api.backfill(job.id, { ...values(), dry_run: true });
      if (mine !== seq) {
        return;
      }
      const slots = dry.next ?? [];
      preview.removeAttribute('data-tone');
      preview.textContent = slots.length
        ? `${slots.length} slot${slots.length === 1 ? '' : 's'} would run, ${dry.max_parallel} at a time: ${formatTime(slots[0])}${slots.length > 1 ? ` … ${formatTime(slots[slots.length - 1])}` : ''}`
        : 'no slot of the schedule falls in this range';
      preview.dataset.slots = String(slots.length);
    } catch (err: any) {
      if (mine === seq) {
        preview.dataset.tone = 'bad';
        preview.dataset.slots = '';
        preview.textContent = err?.message ?? String(err);
      }
    }
  };
  for (const input of [from, to, parallel]) {
    input.addEventListener('change', () => void update());
  }
  void update();
  const result = await showDialog({
    title: `Backfill ${job.name}`,
    body,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start' })]
  });
  if (!result.button.accept) {
    return null;
  }
  try {
    const started = await api.backfill(job.id, values());
    if (started.warning) {
      Notification.warning(started.warning, { autoClose: 8000 });
    }
    return started;
  } catch (err: any) {
    Notification.error(`${job.name}: ${err?.message ?? err}`, { autoClose: 8000 });
    return null;
  }
}

/** A backfill as it goes: a bar, the counts, Cancel; polls until the backfill ends. */
export class BackfillProgress extends Widget {
  private _timer: number | null = null;
  private _bar: HTMLProgressElement;
  private _text: HTMLElement;
  private _cancel: HTMLButtonElement;

  constructor(
    private readonly api: CronAPI,
    private _backfill: IBackfill
  ) {
    super();
    this.addClass('jp-HermesCron-backfill');
    this.node.dataset.role = 'backfill';
    this._bar = h('progress', { class: 'jp-HermesCron-backfillBar' }) as HTMLProgressElement;
    this._text = h('span', { class: 'jp-HermesCron-backfillText', 'data-role': 'backfill-text' });
    this._cancel = h(
      'button',
      { class: 'jp-mod-styled jp-mod-warn', 'data-action': 'cancel-backfill', title: 'Stop the slots not run yet' },
      'Cancel'
    ) as HTMLButtonElement;
    this._cancel.addEventListener('click', () => void this.cancel());
    this.node.append(h('div', { class: 'jp-HermesCron-backfillHead' }, this._bar, this._cancel), this._text);
    this._draw();
    this._schedule();
  }

  get backfill(): IBackfill {
    return this._backfill;
  }

  async cancel(): Promise<void> {
    try {
      this._backfill = await this.api.cancelBackfill(this._backfill.id!);
      this._draw();
    } catch (err: any) {
      Notification.error(err?.message ?? String(err), { autoClose: 8000 });
    }
  }

  private _schedule(): void {
    if (this._backfill.state !== 'running' || this.isDisposed) {
      return;
    }
    this._timer = window.setTimeout(async () => {
      this._timer = null;
      try {
        this._backfill = await this.api.getBackfill(this._backfill.id!);
        this._draw();
      } catch {
        // the server away for a moment: try again
      }
      this._schedule();
    }, POLL_MS);
  }

  private _draw(): void {
    const b = this._backfill;
    this._bar.max = Math.max(1, b.slots);
    this._bar.value = backfillDone(b);
    this.node.dataset.state = b.state;
    this._cancel.disabled = this._cancel.hidden = b.state !== 'running';
    this._text.textContent = `Backfill ${b.from?.slice(0, 10) ?? ''} → ${b.to?.slice(0, 10) ?? ''} (${b.state}): ${backfillText(b)}`;
  }

  dispose(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
    super.dispose();
  }
}
