/**
 * The notification outbox in the side panel (`GET /api/cron/notifications`): every
 * delivery, newest first, with its event, job, run, destination (masked by the server:
 * its secrets never reach the browser), status, attempts, last error and next try.
 *
 * - {@link NotificationsView}: the panel's "Notifications" tab, with a status filter, a
 *   job filter (from a job's detail), the counts per status and "More…" paging.
 * - {@link NotificationList}: the list itself; the job detail shows a short one.
 *
 * No event says that a delivery was sent: the list is read again (coalesced, at most
 * every {@link MIN_GAP_MS}) when run and job events arrive on the `/events` feed, once
 * more a little later (the deliveries of an event are planned by the ticker, then sent),
 * and while deliveries are pending: when their next try falls due.
 */
import { Widget } from '@lumino/widgets';

import { CronError, DELIVERY_STATUSES, IEvent, INotification, INotifications } from './api';
import { h } from './dom';
import { ago, countdown, formatTime } from './format';
import { CronModel } from './model';

/** The least time between two reads of the outbox. */
export const MIN_GAP_MS = 2000;
/** The read after the one an event causes: its deliveries were being planned or sent. */
const SETTLE_MS = 4000;
/** The longest wait before a pending delivery is looked at again. */
const MAX_POLL_MS = 60_000;

const STATUS_TONE: { [status: string]: string } = { sent: 'ok', failed: 'bad', pending: 'muted', sending: 'muted' };

const EVENT_WORDS: { [event: string]: string } = {
  failure: 'failed',
  lost: 'lost',
  blocked: 'blocked',
  missed: 'missed',
  late: 'late',
  alert: 'alert',
  recovered: 'recovered',
  succeeded: 'succeeded',
  started: 'started'
};

export interface IListOptions {
  model: CronModel;
  /** Only this job's deliveries (an id). */
  job?: string | null;
  /** How many a page reads. */
  limit?: number;
  /** No job column: the list of one job. */
  compact?: boolean;
  openJob: (jobId: string) => void;
  openRun: (runId: string) => void;
}

function tries(n: number): string {
  return `${n} ${n === 1 ? 'try' : 'tries'}`;
}

/** One delivery. */
export function deliveryItem(n: INotification, opts: Pick<IListOptions, 'compact' | 'openJob' | 'openRun'>): HTMLLIElement {
  const tone = STATUS_TONE[n.status] ?? 'muted';
  const jobLink =
    !opts.compact && n.job_id
      ? h(
          'button',
          { class: 'jp-HermesCron-linkButton', type: 'button', 'data-role': 'job-link', title: `Show job ${n.job ?? n.job_id}` },
          n.job ?? n.job_id
        )
      : !opts.compact
        ? h('span', { class: 'jp-HermesCron-muted', 'data-role': 'job-link' }, n.job ?? 'every job')
        : null;
  if (jobLink instanceof HTMLButtonElement) {
    jobLink.onclick = () => opts.openJob(n.job_id as string);
  }
  const runLink = n.run_id
    ? h('button', { class: 'jp-HermesCron-linkButton jp-HermesCron-mono', type: 'button', 'data-role': 'run-link', title: `Show run ${n.run_id}` }, `run ${n.run_id.slice(0, 8)}`)
    : null;
  if (runLink) {
    runLink.onclick = () => opts.openRun(n.run_id as string);
  }
  const waiting = (n.status === 'pending' || n.status === 'sending') && n.next_attempt_at;
  const next = waiting
    ? h('span', { 'data-role': 'next-try', 'data-next': n.next_attempt_at as string, title: formatTime(n.next_attempt_at as string) }, nextTry(n))
    : null;
  const when = n.sent_at ?? n.created_at;
  return h(
    'li',
    {
      class: 'jp-HermesCron-delivery',
      'data-notification-id': String(n.id),
      'data-status': n.status,
      'data-event': n.event,
      title: n.title ?? ''
    },
    h(
      'div',
      { class: 'jp-HermesCron-deliveryHead' },
      h('span', { class: 'jp-HermesCron-badge', 'data-tone': tone, 'data-role': 'delivery-status' }, n.status),
      h('span', { class: 'jp-HermesCron-deliveryEvent', 'data-role': 'event' }, EVENT_WORDS[n.event] ?? n.event),
      jobLink,
      runLink,
      h('span', { class: 'jp-HermesCron-spacer' }),
      h('span', { class: 'jp-HermesCron-muted', 'data-role': 'when', title: `made ${formatTime(n.created_at)}${n.sent_at ? `, sent ${formatTime(n.sent_at)}` : ''}` }, ago(when))
    ),
    h(
      'div',
      { class: 'jp-HermesCron-deliveryLine' },
      h('code', { class: 'jp-HermesCron-mono jp-HermesCron-destination', 'data-role': 'destination', title: `${n.channel}: ${n.destination}` }, n.destination),
      h('span', { class: 'jp-HermesCron-muted', 'data-role': 'attempts', 'data-attempts': String(n.attempts) }, tries(n.attempts)),
      next
    ),
    n.last_error ? h('div', { class: 'jp-HermesCron-deliveryError', 'data-role': 'error', title: n.last_error }, errorText(n.last_error)) : null
  );
}

/** A sender's error without the log line's time and level ("2026-12-07 18:26:24,037 -
 * WARNING - Failed to send ..." reads "Failed to send ..."). */
export function errorText(error: string): string {
  return error.replace(/^\d{4}-\d\d-\d\d[ T][\d:.,]+ - [A-Z]+ - /, '');
}

function nextTry(n: INotification): string {
  if (!n.next_attempt_at) {
    return '';
  }
  if (n.status === 'sending') {
    return 'sending now';
  }
  const c = countdown(n.next_attempt_at);
  return c.startsWith('in ') ? `next try ${c}` : 'next try due';
}

/**
 * A list of deliveries that keeps itself fresh while it is shown ({@link active}).
 */
export class NotificationList extends Widget {
  private _items: INotification[] = [];
  private _cursor: string | null = null;
  private _counts: { [status: string]: number } | null = null;
  private _status: string | null = null;
  private _job: string | null;
  private _seq = 0;
  private _loaded = false;
  private _lastLoad = 0;
  private _timer: number | null = null;
  private _poll: number | null = null;
  private _settle = 0;
  private _stale = true;
  private _list: HTMLUListElement;
  private _footer: HTMLDivElement;
  private _message: HTMLDivElement;
  /** Called after each read (the view shows the counts). */
  onLoaded: (answer: { counts: { [status: string]: number } | null; items: INotification[] }) => void = () => undefined;
  /** Whether the list is on screen: a hidden one is read when shown again. */
  active: () => boolean = () => this.isVisible;

  constructor(private readonly opts: IListOptions) {
    super();
    this.addClass('jp-HermesCron-deliveries');
    this._job = opts.job ?? null;
    this._list = h('ul', { class: 'jp-HermesCron-deliveryList', 'aria-label': 'Notifications' });
    this._message = h('div', { class: 'jp-HermesCron-muted', 'data-role': 'notifications-empty' });
    this._footer = h('div', { class: 'jp-HermesCron-deliveriesFooter' });
    this.node.append(this._list, this._message, this._footer);
    opts.model.event.connect(this._onEvent, this);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.opts.model.event.disconnect(this._onEvent, this);
    this._clearTimers();
    super.dispose();
  }

  get items(): INotification[] {
    return this._items;
  }

  get job(): string | null {
    return this._job;
  }

  /** Show the deliveries of *job* (null: every job's) with *status* (null: any). */
  setFilter(filter: { job?: string | null; status?: string | null }): void {
    const job = filter.job === undefined ? this._job : filter.job;
    const status = filter.status === undefined ? this._status : filter.status;
    if (job === this._job && status === this._status && this._loaded) {
      return;
    }
    this._job = job;
    this._status = status;
    this._items = [];
    this._cursor = null;
    this._loaded = false;
    this._list.replaceChildren();
    void this.load(true);
  }

  /** Read the list when it is on screen: at once if it is stale. */
  showing(): void {
    if (this._stale || !this._loaded) {
      void this.load(true);
    } else {
      this._tickTimes();
    }
  }

  /** Read the first page again (as many as are shown), or the next page. */
  async load(reset: boolean): Promise<void> {
    const seq = ++this._seq;
    const page = this.opts.limit ?? 50;
    if (reset) {
      this._clearTimers();
      this._lastLoad = Date.now();
      this._stale = false;
    }
    let answer: INotifications;
    try {
      answer = await this.opts.model.api.notifications({
        job: this._job,
        status: this._status,
        limit: reset ? Math.min(500, Math.max(page, this._items.length)) : page,
        cursor: reset ? null : this._cursor
      });
    } catch (err: any) {
      if (seq === this._seq) {
        this._message.hidden = false;
        this._message.className = 'jp-HermesCron-error';
        this._message.textContent =
          err instanceof CronError && err.status === 404 && !this._job
            ? 'This server has no notification outbox (an older hermes-cron-ext).'
            : `notifications: ${err?.message ?? err}`;
        this._schedulePoll(MAX_POLL_MS);
      }
      return;
    }
    if (seq !== this._seq || this.isDisposed) {
      return;
    }
    this._items = reset ? answer.notifications : [...this._items, ...answer.notifications];
    this._cursor = answer.cursor;
    this._counts = answer.counts ?? null;
    this._loaded = true;
    this._render();
    this.onLoaded({ counts: this._counts, items: this._items });
    this._planNext();
  }

  private _render(): void {
    const frag = document.createDocumentFragment();
    for (const n of this._items) {
      frag.appendChild(deliveryItem(n, this.opts));
    }
    this._list.replaceChildren(frag);
    this._message.className = 'jp-HermesCron-muted';
    this._message.hidden = this._items.length > 0;
    this._message.textContent = this._status
      ? `No ${this._status} notifications.`
      : this._job
        ? 'No notifications yet: its destinations ("Notify" in Edit → Policies) get one when a run fails, is late or alerts.'
        : 'No notifications yet. A job sends them to the destinations in its "Notify" policy.';
    this._footer.replaceChildren();
    this._footer.hidden = !this._cursor;
    if (this._cursor) {
      const more = h('button', { class: 'jp-HermesCron-linkButton', 'data-action': 'more-notifications', type: 'button' }, 'More…');
      more.onclick = () => void this.load(false);
      this._footer.append(more);
    }
    this.node.dataset.loaded = 'true';
  }

  /** What happens next: another read when a pending delivery's next try falls due, and
   * one a little after an event (its deliveries are planned, then sent). */
  private _planNext(): void {
    const now = Date.now();
    let wait = Infinity;
    for (const n of this._items) {
      if (n.status === 'sending' || (n.status === 'pending' && !n.next_attempt_at)) {
        wait = Math.min(wait, MIN_GAP_MS);
      } else if (n.status === 'pending' && n.next_attempt_at) {
        wait = Math.min(wait, Math.max(MIN_GAP_MS, Date.parse(n.next_attempt_at) - now + 500));
      }
    }
    if (this._settle > 0) {
      this._settle--;
      wait = Math.min(wait, SETTLE_MS);
    }
    if (Number.isFinite(wait)) {
      this._schedulePoll(Math.min(wait, MAX_POLL_MS));
    }
  }

  private _schedulePoll(delay: number): void {
    if (this._poll !== null) {
      window.clearTimeout(this._poll);
    }
    this._poll = window.setTimeout(() => {
      this._poll = null;
      this.refresh();
    }, delay);
  }

  /** Read again soon: at most every {@link MIN_GAP_MS}; a hidden list only notes it. */
  refresh(): void {
    if (!this.active()) {
      this._stale = true;
      return;
    }
    if (this._timer !== null) {
      return;
    }
    const delay = Math.max(0, this._lastLoad + MIN_GAP_MS - Date.now());
    this._timer = window.setTimeout(() => {
      this._timer = null;
      void this.load(true);
    }, delay);
  }

  /** The relative times ("3m ago", "next try in 4s"), once a second while shown. */
  tick(): void {
    this._tickTimes();
  }

  private _tickTimes(): void {
    const byId = new Map(this._items.map(n => [String(n.id), n]));
    for (const li of Array.from(this._list.querySelectorAll<HTMLElement>('[data-notification-id]'))) {
      const n = byId.get(li.dataset.notificationId ?? '');
      if (!n) {
        continue;
      }
      const when = li.querySelector<HTMLElement>('[data-role="when"]');
      if (when) {
        when.textContent = ago(n.sent_at ?? n.created_at);
      }
      const next = li.querySelector<HTMLElement>('[data-role="next-try"]');
      if (next) {
        next.textContent = nextTry(n);
      }
    }
  }

  private _onEvent(_: CronModel, event: IEvent): void {
    const t = event.type;
    const relevant = (t.startsWith('run.') && t !== 'run.progress') || t === 'job.blocked' || t.startsWith('notification');
    if (!relevant || (this._job && event.job_id !== this._job)) {
      return;
    }
    this._settle = 1;
    this.refresh();
  }

  private _clearTimers(): void {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
    if (this._poll !== null) {
      window.clearTimeout(this._poll);
      this._poll = null;
    }
  }
}

/** The panel's "Notifications" tab. */
export class NotificationsView extends Widget {
  readonly list: NotificationList;
  private _status: HTMLSelectElement;
  private _counts: HTMLDivElement;
  private _jobChip: HTMLSpanElement;
  private _tick: number | null = null;

  constructor(opts: Omit<IListOptions, 'job' | 'compact'>) {
    super();
    this.addClass('jp-HermesCron-notifications');
    this.node.dataset.role = 'notifications-view';
    this.list = new NotificationList({ ...opts, limit: opts.limit ?? 50 });
    this.list.active = () => this.isVisible;
    this.list.onLoaded = ({ counts }) => this._showCounts(counts);
    this._status = h('select', { class: 'jp-mod-styled jp-HermesCron-statusFilter', 'data-role': 'status-filter', 'aria-label': 'Status' });
    this._status.append(h('option', { value: '' }, 'Any status'), ...DELIVERY_STATUSES.map(s => h('option', { value: s }, s)));
    this._status.onchange = () => this.list.setFilter({ status: this._status.value || null });
    this._jobChip = h('span', { class: 'jp-HermesCron-jobChip', 'data-role': 'job-filter' });
    this._jobChip.hidden = true;
    this._counts = h('div', { class: 'jp-HermesCron-counts', 'data-role': 'counts' });
    const bar = h('div', { class: 'jp-HermesCron-notificationsBar' }, this._status, this._jobChip, h('span', { class: 'jp-HermesCron-spacer' }), this._counts);
    this.node.append(bar, this.list.node);
  }

  /** Only the deliveries of job *jobId* (named *name*), or every job's (null). */
  filterJob(jobId: string | null, name?: string | null): void {
    this._jobChip.replaceChildren();
    this._jobChip.hidden = !jobId;
    if (jobId) {
      const clear = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', title: 'Every job', 'data-action': 'clear-job-filter' }, '×');
      clear.onclick = () => this.filterJob(null);
      this._jobChip.append(`job: ${name ?? jobId} `, clear);
    }
    this.list.setFilter({ job: jobId });
  }

  /** Only deliveries with *status* (null: any). */
  filterStatus(status: string | null): void {
    this._status.value = status ?? '';
    this.list.setFilter({ status });
  }

  private _showCounts(counts: { [status: string]: number } | null): void {
    this._counts.replaceChildren();
    if (!counts) {
      return;
    }
    const parts = DELIVERY_STATUSES.filter(s => counts[s]).map(s =>
      h('span', { class: 'jp-HermesCron-countItem', 'data-status': s, 'data-tone': STATUS_TONE[s], title: `${counts[s]} ${s} in all` }, `${counts[s]} ${s}`)
    );
    this._counts.append(...(parts.length ? parts : [h('span', { class: 'jp-HermesCron-muted' }, 'none yet')]));
  }

  protected onAfterShow(): void {
    this.list.showing();
    if (this._tick === null) {
      this._tick = window.setInterval(() => this.list.tick(), 1000);
    }
  }

  protected onAfterAttach(): void {
    if (this.isVisible) {
      this.onAfterShow();
    }
  }

  protected onBeforeHide(): void {
    this._stopTick();
  }

  protected onBeforeDetach(): void {
    this._stopTick();
  }

  private _stopTick(): void {
    if (this._tick !== null) {
      window.clearInterval(this._tick);
      this._tick = null;
    }
  }

  dispose(): void {
    this._stopTick();
    this.list.dispose();
    super.dispose();
  }
}
