/**
 * The "Timeline" tab: the runs of every job (or of one job / one status) as bars on one
 * time axis, one row per job, coloured by outcome; coming slots as ticks; skipped and
 * missed runs marked. Wheel or −/+ zoom, drag or ←/→ pan; each change of the visible
 * range reads that range again (`GET /timeline`, paged by cursor). Clicking a bar opens
 * the run as the run list does.
 */
import { Widget } from '@lumino/widgets';

import { CronAPI, IEvent } from './api';
import { ITimeline, ITimelineRun, timeline, toneOf } from './across';
import { h } from './dom';
import { duration, formatTime, STATUS_LABEL } from './format';

const HOUR = 3600_000;
const MIN_SPAN = 5 * 60_000;
const MAX_SPAN = 90 * 24 * HOUR;
/** pages of 1000 runs read for one range at most */
const MAX_PAGES = 10;
const STEPS = [60_000, 5 * 60_000, 15 * 60_000, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, 24 * HOUR, 7 * 24 * HOUR];

export interface ITimelineOptions {
  api: CronAPI;
  openRun: (runId: string) => void;
}

export class TimelineView extends Widget {
  private _from = Date.now() - 24 * HOUR;
  private _to = Date.now() + 6 * HOUR;
  private _runs: ITimelineRun[] = [];
  private _slots: ITimeline['slots'] = [];
  private _now = Date.now();
  private _seq = 0;
  private _timer: number | null = null;
  private _stale = true;
  private _job: HTMLInputElement;
  private _status: HTMLSelectElement;
  private _range: HTMLSpanElement;
  private _note: HTMLSpanElement;
  private _chart: HTMLDivElement;
  private _drag: { x: number; from: number; to: number; moved: boolean } | null = null;

  constructor(private readonly opts: ITimelineOptions) {
    super();
    this.addClass('jp-HermesCron-timeline');
    this.node.dataset.role = 'timeline-view';
    this.node.tabIndex = 0;
    this._job = h('input', { class: 'jp-mod-styled', type: 'search', placeholder: 'job', 'aria-label': 'Job', 'data-role': 'timeline-job' });
    this._status = h('select', { class: 'jp-mod-styled', 'aria-label': 'Status', 'data-role': 'timeline-status' });
    this._status.append(
      h('option', { value: '' }, 'Any status'),
      ...['succeeded', 'failed', 'timed_out', 'lost', 'cancelled', 'skipped', 'running', 'queued'].map(s => h('option', { value: s }, STATUS_LABEL[s] ?? s))
    );
    let typing: number | null = null;
    this._job.oninput = () => {
      if (typing !== null) {
        window.clearTimeout(typing);
      }
      typing = window.setTimeout(() => this.load(), 300);
    };
    this._status.onchange = () => this.load();
    const button = (label: string, action: string, title: string, fn: () => void) => {
      const b = h('button', { class: 'jp-HermesCron-linkButton jp-HermesCron-tlButton', type: 'button', 'data-action': action, title }, label);
      b.onclick = fn;
      return b;
    };
    this._range = h('span', { class: 'jp-HermesCron-muted', 'data-role': 'timeline-range' });
    this._note = h('span', { class: 'jp-HermesCron-muted', 'data-role': 'timeline-note' });
    const bar = h(
      'div',
      { class: 'jp-HermesCron-timelineBar' },
      this._job,
      this._status,
      button('‹', 'pan-left', 'Earlier (←)', () => this.pan(-0.25)),
      button('−', 'zoom-out', 'Zoom out (wheel)', () => this.zoom(2)),
      button('+', 'zoom-in', 'Zoom in (wheel)', () => this.zoom(0.5)),
      button('›', 'pan-right', 'Later (→)', () => this.pan(0.25)),
      button('Now', 'now', 'The last 24 hours and the next 6', () => this.setRange(Date.now() - 24 * HOUR, Date.now() + 6 * HOUR)),
      this._range,
      this._note
    );
    this._chart = h('div', { class: 'jp-HermesCron-timelineChart', 'data-role': 'timeline-chart' });
    this.node.append(bar, this._chart, legend());
    this._chart.addEventListener('wheel', ev => this._onWheel(ev), { passive: false });
    this._chart.addEventListener('mousedown', ev => this._onDown(ev));
    window.addEventListener('mousemove', this._onMove);
    window.addEventListener('mouseup', this._onUp);
    this.node.addEventListener('keydown', ev => {
      if ((ev.target as HTMLElement)?.tagName === 'INPUT' || (ev.target as HTMLElement)?.tagName === 'SELECT') {
        return;
      }
      const keys: { [k: string]: () => void } = {
        ArrowLeft: () => this.pan(-0.1),
        ArrowRight: () => this.pan(0.1),
        '+': () => this.zoom(0.5),
        '=': () => this.zoom(0.5),
        '-': () => this.zoom(2)
      };
      if (keys[ev.key]) {
        ev.preventDefault();
        keys[ev.key]();
      }
    });
  }

  get range(): [number, number] {
    return [this._from, this._to];
  }

  dispose(): void {
    window.removeEventListener('mousemove', this._onMove);
    window.removeEventListener('mouseup', this._onUp);
    super.dispose();
  }

  /** Show job *name*'s runs alone ('' for every job's). */
  filterJob(name: string): void {
    this._job.value = name;
    this.load();
  }

  setRange(from: number, to: number): void {
    const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, to - from));
    const mid = (from + to) / 2;
    this._from = Math.round(mid - span / 2);
    this._to = Math.round(mid + span / 2);
    this._render();
    this._loadSoon();
  }

  /** Zoom by *factor* (< 1: in) around *at* (a fraction of the width; the middle). */
  zoom(factor: number, at = 0.5): void {
    const span = this._to - this._from;
    const next = Math.min(MAX_SPAN, Math.max(MIN_SPAN, span * factor));
    const pivot = this._from + span * at;
    this._from = Math.round(pivot - next * at);
    this._to = Math.round(this._from + next);
    this._render();
    this._loadSoon();
  }

  /** Move by *fraction* of the visible span (negative: earlier). */
  pan(fraction: number): void {
    const d = Math.round((this._to - this._from) * fraction);
    this._from += d;
    this._to += d;
    this._render();
    this._loadSoon();
  }

  /** A run event: the shown range is read again (soon, once for a burst). */
  onEvent(event: IEvent): void {
    if (!event.type.startsWith('run.') || event.type === 'run.progress') {
      return;
    }
    if (!this.isVisible) {
      this._stale = true;
      return;
    }
    this._loadSoon(500);
  }

  protected onAfterShow(): void {
    if (this._stale) {
      this.load();
    }
  }

  private _loadSoon(delay = 250): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
    }
    this._timer = window.setTimeout(() => {
      this._timer = null;
      this.load();
    }, delay);
  }

  /** Read the visible range (every page of it, up to MAX_PAGES). */
  load(): void {
    void this._load();
  }

  private async _load(): Promise<void> {
    const seq = ++this._seq;
    this._stale = false;
    this.node.dataset.loaded = 'false';
    const query = {
      from: new Date(this._from).toISOString(),
      to: new Date(this._to).toISOString(),
      job: this._job.value.trim() || undefined,
      status: this._status.value || undefined,
      limit: 1000
    };
    const runs: ITimelineRun[] = [];
    let slots: ITimeline['slots'] = [];
    let cursor: string | null = null;
    let pages = 0;
    try {
      do {
        const page: ITimeline = await timeline(this.opts.api, { ...query, cursor });
        if (seq !== this._seq) {
          return;
        }
        if (!pages) {
          slots = page.slots;
          this._now = Date.parse(page.now) || Date.now();
        }
        runs.push(...page.runs);
        cursor = page.cursor;
        pages++;
      } while (cursor && pages < MAX_PAGES);
    } catch (err: any) {
      if (seq === this._seq) {
        this._note.textContent = '';
        this._chart.replaceChildren(h('div', { class: 'jp-HermesCron-error', 'data-role': 'timeline-error' }, String(err?.message ?? err)));
        this.node.dataset.loaded = 'error';
      }
      return;
    }
    this._runs = runs;
    this._slots = slots;
    this.node.dataset.loadedFrom = String(Date.parse(query.from));
    this.node.dataset.loadedTo = String(Date.parse(query.to));
    this._note.textContent = cursor ? ` · the first ${runs.length} runs: zoom in to see every one` : ` · ${runs.length} run${runs.length === 1 ? '' : 's'}`;
    this._render();
    this.node.dataset.loaded = 'true';
  }

  private _x(t: number): number {
    return ((t - this._from) / (this._to - this._from)) * 100;
  }

  private _render(): void {
    this.node.dataset.from = String(this._from);
    this.node.dataset.to = String(this._to);
    this._range.textContent = `${formatTime(new Date(this._from).toISOString())} → ${formatTime(new Date(this._to).toISOString())}`;
    const rows = new Map<string, { name: string; runs: ITimelineRun[]; slots: string[] }>();
    const row = (id: string, name: string) => {
      let r = rows.get(id);
      if (!r) {
        r = { name, runs: [], slots: [] };
        rows.set(id, r);
      }
      return r;
    };
    for (const run of this._runs) {
      row(run.job_id, run.job_name).runs.push(run);
    }
    for (const s of this._slots) {
      row(s.job_id, s.job_name).slots.push(s.at);
    }
    const sorted = Array.from(rows.entries()).sort((a, b) => a[1].name.localeCompare(b[1].name));
    const lines: HTMLElement[] = [this._axis()];
    for (const [id, r] of sorted) {
      const track = h('div', { class: 'jp-HermesCron-tlTrack' });
      for (const at of r.slots) {
        const t = Date.parse(at);
        if (t < this._from || t > this._to) {
          continue;
        }
        track.append(h('span', { class: 'jp-HermesCron-tlSlot', 'data-role': 'slot', style: `left:${this._x(t)}%`, title: `coming: ${formatTime(at)}` }));
      }
      for (const run of r.runs) {
        track.append(this._bar(run));
      }
      lines.push(
        h(
          'div',
          { class: 'jp-HermesCron-tlRow', 'data-job-id': id, 'data-job': r.name },
          h('span', { class: 'jp-HermesCron-tlLabel', title: r.name }, r.name),
          track
        )
      );
    }
    if (!sorted.length) {
      lines.push(h('div', { class: 'jp-HermesCron-empty' }, 'No runs in this range.'));
    }
    const nowX = this._x(this._now);
    if (nowX >= 0 && nowX <= 100) {
      lines.push(h('div', { class: 'jp-HermesCron-tlNow', style: `left:calc(var(--tl-label) + (100% - var(--tl-label)) * ${nowX / 100})`, title: 'now' }));
    }
    this._chart.replaceChildren(...lines);
  }

  private _bar(run: ITimelineRun): HTMLElement {
    const start = Date.parse(run.started_at ?? run.fire_at ?? run.scheduled_for ?? '') || this._now;
    const active = run.status === 'running' || run.status === 'queued';
    const end = run.finished_at ? Date.parse(run.finished_at) : active ? this._now : start;
    const left = Math.max(0, this._x(start));
    const right = Math.min(100, this._x(end));
    const point = run.status === 'skipped' || run.status === 'cancelled' && !run.started_at;
    const label = run.missed ? 'missed' : STATUS_LABEL[run.status] ?? run.status;
    const title = [
      `${run.job_name} · ${label}`,
      `${run.trigger}, ${formatTime(run.started_at ?? run.fire_at)}`,
      run.finished_at && run.started_at ? `took ${duration((Date.parse(run.finished_at) - Date.parse(run.started_at)) / 1000)}` : '',
      run.reason ?? '',
      run.id
    ]
      .filter(Boolean)
      .join('\n');
    const bar = h('span', {
      class: `jp-HermesCron-tlBar${point ? ' jp-mod-point' : ''}`,
      'data-run-id': run.id,
      'data-status': run.status,
      'data-tone': toneOf(run.status, run.missed),
      'data-missed': run.missed ? 'true' : undefined,
      style: point ? `left:${this._x(start)}%` : `left:${left}%;width:max(3px, ${Math.max(0, right - left)}%)`,
      title,
      role: 'button',
      tabindex: '0'
    });
    if (run.missed) {
      bar.textContent = 'm';
    }
    bar.onclick = ev => {
      ev.stopPropagation();
      if (!this._drag?.moved) {
        this.opts.openRun(run.id);
      }
    };
    bar.onkeydown = ev => ev.key === 'Enter' && this.opts.openRun(run.id);
    return bar;
  }

  private _axis(): HTMLElement {
    const span = this._to - this._from;
    const step = STEPS.find(s => span / s <= 8) ?? STEPS[STEPS.length - 1];
    const offset = new Date().getTimezoneOffset() * 60_000;
    const ticks: HTMLElement[] = [];
    for (let t = Math.ceil((this._from - offset) / step) * step + offset; t <= this._to; t += step) {
      const d = new Date(t);
      const text =
        step >= 24 * HOUR || (d.getHours() === 0 && d.getMinutes() === 0)
          ? d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })
          : d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hour12: false });
      ticks.push(h('span', { class: 'jp-HermesCron-tlTick', style: `left:${this._x(t)}%` }, text));
    }
    return h('div', { class: 'jp-HermesCron-tlRow jp-HermesCron-tlAxis' }, h('span', { class: 'jp-HermesCron-tlLabel' }), h('div', { class: 'jp-HermesCron-tlTrack' }, ...ticks));
  }

  private _fraction(clientX: number): number {
    const track = this._chart.querySelector('.jp-HermesCron-tlTrack');
    const box = (track ?? this._chart).getBoundingClientRect();
    return Math.min(1, Math.max(0, (clientX - box.left) / Math.max(1, box.width)));
  }

  private _onWheel(ev: WheelEvent): void {
    ev.preventDefault();
    if (Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      this.pan(ev.deltaX / 1000);
      return;
    }
    this.zoom(ev.deltaY > 0 ? 1.25 : 0.8, this._fraction(ev.clientX));
  }

  private _onDown(ev: MouseEvent): void {
    if (ev.button !== 0) {
      return;
    }
    this._drag = { x: ev.clientX, from: this._from, to: this._to, moved: false };
  }

  private _onMove = (ev: MouseEvent): void => {
    const drag = this._drag;
    if (!drag) {
      return;
    }
    const dx = ev.clientX - drag.x;
    if (Math.abs(dx) < 3 && !drag.moved) {
      return;
    }
    drag.moved = true;
    const track = this._chart.querySelector('.jp-HermesCron-tlTrack');
    const width = track?.getBoundingClientRect().width || 1;
    const d = Math.round((-dx / width) * (drag.to - drag.from));
    this._from = drag.from + d;
    this._to = drag.to + d;
    this._render();
  };

  private _onUp = (): void => {
    const drag = this._drag;
    if (!drag) {
      return;
    }
    if (drag.moved) {
      this._loadSoon();
      // the click that ends a drag is not a bar's click
      window.setTimeout(() => (this._drag = null), 0);
    } else {
      this._drag = null;
    }
  };
}

function legend(): HTMLElement {
  const item = (tone: string, label: string, cls = 'jp-HermesCron-tlBar') =>
    h('span', { class: 'jp-HermesCron-tlLegendItem' }, h('span', { class: `${cls} jp-mod-legend`, 'data-tone': tone }), label);
  return h(
    'div',
    { class: 'jp-HermesCron-tlLegend', 'data-role': 'timeline-legend' },
    item('ok', 'succeeded'),
    item('bad', 'failed'),
    item('run', 'running'),
    item('muted', 'skipped / cancelled'),
    item('warn', 'missed'),
    item('', 'coming', 'jp-HermesCron-tlSlot'),
    h('span', { class: 'jp-HermesCron-muted' }, ' · wheel: zoom, drag: pan, click a bar: its run')
  );
}
