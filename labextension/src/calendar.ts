/**
 * A job's last 90 days as a heatmap (`GET /jobs/{id}/calendar`): weeks as columns,
 * Monday at the top, each day's cell coloured by its outcome (every run succeeded,
 * some failed, all failed, only skipped/cancelled, running) and titled with its counts.
 */
import { Widget } from '@lumino/widgets';

import { CronAPI, CronError } from './api';
import { calendar, ICalendar, ICalendarDay } from './across';
import { h } from './dom';

/** What a day's cell says: its outcome, for the colour. */
export function dayOutcome(d: ICalendarDay): string {
  if (!d.total) {
    return 'none';
  }
  if (d.failed && d.succeeded) {
    return 'mixed';
  }
  if (d.failed) {
    return 'failed';
  }
  if (d.succeeded) {
    return 'succeeded';
  }
  if (d.running) {
    return 'running';
  }
  return 'skipped';
}

export function dayTitle(d: ICalendarDay): string {
  if (!d.total) {
    return `${d.day}: no runs`;
  }
  const parts = (['succeeded', 'failed', 'cancelled', 'skipped', 'running'] as const).filter(k => d[k]).map(k => `${d[k]} ${k}`);
  return `${d.day}: ${d.total} run${d.total === 1 ? '' : 's'} (${parts.join(', ')})`;
}

export class CalendarSection extends Widget {
  private _job: string | null = null;
  private _seq = 0;
  private _timer: number | null = null;

  constructor(private readonly api: CronAPI, private readonly days = 90) {
    super();
    this.addClass('jp-HermesCron-calendar');
    this.node.dataset.role = 'calendar';
  }

  setJob(jobId: string | null): void {
    if (jobId === this._job) {
      return;
    }
    this._job = jobId;
    this.node.replaceChildren();
    if (jobId) {
      void this.load();
    }
  }

  /** Read it again soon (a burst of run events means one request). */
  refreshSoon(): void {
    if (this._timer !== null) {
      return;
    }
    this._timer = window.setTimeout(() => {
      this._timer = null;
      void this.load();
    }, 300);
  }

  async load(): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const seq = ++this._seq;
    try {
      const cal = await calendar(this.api, job, this.days);
      if (seq === this._seq && this._job === job) {
        this._render(cal);
      }
    } catch (err: any) {
      if (seq === this._seq && this._job === job && !(err instanceof CronError && err.status === 404)) {
        this.node.replaceChildren(h('div', { class: 'jp-HermesCron-error' }, `calendar: ${err?.message ?? err}`));
      }
    }
  }

  private _render(cal: ICalendar): void {
    const grid = h('div', { class: 'jp-HermesCron-calGrid', 'data-role': 'calendar-grid' });
    if (cal.days.length) {
      // Monday = row 1; the first column starts at the first day's weekday
      const weekday = (day: string) => (new Date(`${day}T00:00:00Z`).getUTCDay() + 6) % 7;
      const first = weekday(cal.days[0].day);
      cal.days.forEach((d, i) => {
        const n = first + i;
        grid.append(
          h('span', {
            class: 'jp-HermesCron-calDay',
            'data-day': d.day,
            'data-total': String(d.total),
            'data-outcome': dayOutcome(d),
            'data-level': String(d.total ? Math.min(4, Math.ceil(Math.log2(d.total + 1))) : 0),
            style: `grid-column:${Math.floor(n / 7) + 1};grid-row:${(n % 7) + 1}`,
            title: dayTitle(d)
          })
        );
      });
    }
    const total = cal.days.reduce((a, d) => a + d.total, 0);
    const failed = cal.days.reduce((a, d) => a + d.failed, 0);
    this.node.replaceChildren(
      h(
        'div',
        { class: 'jp-HermesCron-sectionTitle' },
        `Last ${cal.days.length} days `,
        h('span', { class: 'jp-HermesCron-muted', 'data-role': 'calendar-summary' }, `${total} runs, ${failed} failed (${cal.tz})`)
      ),
      grid,
      h(
        'div',
        { class: 'jp-HermesCron-calLegend' },
        ...(['succeeded', 'mixed', 'failed', 'skipped', 'none'] as const).map(o =>
          h('span', { class: 'jp-HermesCron-tlLegendItem' }, h('span', { class: 'jp-HermesCron-calDay', 'data-outcome': o, 'data-level': '2' }), o === 'mixed' ? 'some failed' : o === 'none' ? 'no runs' : o)
        )
      )
    );
  }
}
