/**
 * Toasts for runs that need someone: a run of one of the user's jobs that ended failed,
 * timed out or lost (`run.finished`, `run.lost`), whose job's alert rules fired
 * (`run.alert`), or a slot with no successful run in time (`run.late`), each with a
 * "Show run" button that opens the run in the side panel.
 *
 * Only events seen live: the `/events` feed starts at its end when the panel opens (no
 * history is replayed), and an event older than the page is dropped besides. Bursts are
 * coalesced: events are read in batches, at most {@link MAX_TOASTS} toasts stand for
 * single runs in any {@link WINDOW_MS}, and the rest are counted in one summary toast
 * ("N more runs failed") that is updated in place. On a JupyterHub service, only the
 * jobs the user owns count (a job's `owner`; '' on a store one user keeps: all of them).
 */
import { Notification } from '@jupyterlab/apputils';

import { CronError, FAILED, IEvent, IJob } from './api';
import { CronModel } from './model';

/** How many toasts stand for single runs in any {@link WINDOW_MS}. */
export const MAX_TOASTS = 3;
export const WINDOW_MS = 10_000;
/** How long the events of a burst are gathered before they are read. */
const BATCH_MS = 400;
/** How long a toast stays (ms). */
const AUTO_CLOSE = 12_000;

const STATUS_WORDS: { [status: string]: string } = { failed: 'failed', timed_out: 'timed out', lost: 'was lost' };

/** What one run (or late slot) calls for, its events merged (`run.finished` failed and
 * `run.alert` of one run are one toast). */
interface INotice {
  key: string;
  jobId: string;
  jobName: string | null;
  runId: string | null;
  status: string | null;
  reason: string | null;
  alerts: { rule: string; message: string }[];
  late: { scheduledFor: string; lateAfter: number } | null;
}

function lateWords(seconds: number): string {
  if (seconds % 3600 === 0 && seconds >= 3600) {
    return `${seconds / 3600}h`;
  }
  if (seconds % 60 === 0 && seconds >= 60) {
    return `${seconds / 60}m`;
  }
  return `${seconds}s`;
}

export class RunToasts {
  private _me: Promise<string | null> | null = null;
  private _owners = new Map<string, { owner: string; name: string }>();
  private _pending: IEvent[] = [];
  private _timer: number | null = null;
  private _shown: number[] = [];
  private _summaryId: string | null = null;
  private _summary = { failed: 0, alerts: 0, late: 0 };
  private _since = Date.now();

  constructor(
    private readonly model: CronModel,
    private readonly openRun: (runId: string) => void,
    private readonly openJob: (jobId: string) => void,
    private readonly openPanel: () => void
  ) {
    model.event.connect(this._onEvent, this);
  }

  dispose(): void {
    this.model.event.disconnect(this._onEvent, this);
  }

  private _onEvent(_: CronModel, event: IEvent): void {
    const t = event.type;
    const status = String(event.data?.status ?? '');
    const wanted =
      t === 'run.alert' ||
      t === 'run.late' ||
      t === 'run.lost' ||
      (t === 'run.finished' && FAILED.includes(status as any));
    if (!wanted || !event.job_id) {
      return;
    }
    // the feed starts at its end; an older event is history, not news (allow for clock skew)
    if (Date.parse(event.at) < this._since - 60_000) {
      return;
    }
    this._pending.push(event);
    if (this._timer === null) {
      this._timer = window.setTimeout(() => {
        this._timer = null;
        void this._flush();
      }, BATCH_MS);
    }
  }

  /** Who the user is: null on a store one user keeps (every job is theirs). */
  private _whoami(): Promise<string | null> {
    if (!this._me) {
      this._me = this.model.api
        .me()
        .then(me => me.name ?? null)
        .catch(() => null);
    }
    return this._me;
  }

  /** The owners of *ids* (read in one listing when there are many). */
  private async _learn(ids: string[]): Promise<void> {
    const missing = ids.filter(id => !this._owners.has(id));
    const keep = (job: IJob) => this._owners.set(job.id, { owner: job.owner ?? '', name: job.name });
    if (missing.length > 8) {
      let cursor: string | null = null;
      for (let page = 0; page < 10; page++) {
        const answer: { items: IJob[]; cursor: string | null } = await this.model.api.listJobs({ limit: 500, cursor });
        answer.items.forEach(keep);
        cursor = answer.cursor;
        if (!cursor) {
          break;
        }
      }
    }
    await Promise.all(
      missing
        .filter(id => !this._owners.has(id))
        .map(id =>
          this.model.api.getJob(id).then(keep, err => {
            if (err instanceof CronError && err.status === 404) {
              this._owners.set(id, { owner: '\u0000gone', name: id });
            }
          })
        )
    );
  }

  private async _flush(): Promise<void> {
    const events = this._pending;
    this._pending = [];
    const me = await this._whoami();
    try {
      await this._learn([...new Set(events.map(e => e.job_id as string))]);
    } catch {
      /* names unknown: the toasts say the job's id */
    }
    const notices = new Map<string, INotice>();
    for (const e of events) {
      const jobId = e.job_id as string;
      const known = this._owners.get(jobId);
      if (known?.owner === '\u0000gone') {
        continue; // deleted meanwhile
      }
      if (me !== null && known && known.owner !== '' && known.owner !== me) {
        continue; // another user's job (an admin sees every job's events)
      }
      const late = e.type === 'run.late';
      const key = late ? `late:${jobId}:${String(e.data.scheduled_for ?? '')}` : `run:${e.run_id}`;
      let n = notices.get(key);
      if (!n) {
        n = { key, jobId, jobName: (e.data.job as string) ?? known?.name ?? null, runId: e.run_id, status: null, reason: null, alerts: [], late: null };
        notices.set(key, n);
      }
      n.jobName = n.jobName ?? (e.data.job as string) ?? known?.name ?? null;
      if (late) {
        n.late = { scheduledFor: String(e.data.scheduled_for ?? ''), lateAfter: Number(e.data.late_after ?? 0) };
        n.runId = (e.data.run_id as string) ?? e.run_id ?? null;
        n.status = (e.data.status as string) ?? null;
      } else if (e.type === 'run.alert') {
        n.alerts = (e.data.alerts as { rule: string; message: string }[]) ?? [];
        n.status = n.status ?? String(e.data.status ?? '');
      } else {
        n.status = String(e.data.status ?? (e.type === 'run.lost' ? 'lost' : ''));
        n.reason = (e.data.reason as string) ?? null;
      }
    }
    const now = Date.now();
    this._shown = this._shown.filter(at => now - at < WINDOW_MS);
    for (const n of notices.values()) {
      if (this._shown.length < MAX_TOASTS) {
        this._shown.push(now);
        this._toast(n);
      } else if (n.late) {
        this._summary.late++;
      } else if (n.status && (FAILED.includes(n.status as any) || n.status === 'lost')) {
        this._summary.failed++;
      } else {
        this._summary.alerts++;
      }
    }
    this._showSummary();
  }

  private _toast(n: INotice): void {
    const job = n.jobName ?? n.jobId;
    const actions: Notification.IAction[] = [];
    if (n.runId) {
      const runId = n.runId;
      actions.push({ label: 'Show run', caption: `Open run ${runId} in the Cron panel`, callback: () => this.openRun(runId), displayType: 'accent' });
    } else {
      actions.push({ label: 'Show job', callback: () => this.openJob(n.jobId), displayType: 'accent' });
    }
    const options = { autoClose: AUTO_CLOSE as number | false, actions, data: { hermesCron: n.key } };
    const fired = n.alerts.map(a => (a.message ? `${a.rule} (${a.message})` : a.rule)).join('; ');
    if (n.late) {
      const when = n.late.scheduledFor ? new Date(n.late.scheduledFor).toLocaleString() : 'its slot';
      Notification.warning(`Cron: ${job} is late: no successful run ${lateWords(n.late.lateAfter)} after ${when}`, options);
    } else if (n.status && STATUS_WORDS[n.status]) {
      const reason = n.reason && !/^exit code/.test(n.reason) ? `: ${n.reason}` : n.reason ? ` (${n.reason})` : '';
      Notification.error(`Cron: ${job} ${STATUS_WORDS[n.status]}${reason}${fired ? `; ALERT ${fired}` : ''}`, options);
    } else {
      Notification.warning(`Cron: ${job} ALERT ${fired}`, options);
    }
  }

  /** One toast for what the others did not show: "12 more runs failed, 3 alerts". */
  private _showSummary(): void {
    const { failed, alerts, late } = this._summary;
    if (!failed && !alerts && !late) {
      return;
    }
    const parts = [
      failed ? `${failed} more run${failed === 1 ? '' : 's'} failed` : '',
      alerts ? `${alerts} more alert${alerts === 1 ? '' : 's'}` : '',
      late ? `${late} more late slot${late === 1 ? '' : 's'}` : ''
    ].filter(Boolean);
    const message = `Cron: ${parts.join(', ')}`;
    const options = {
      autoClose: false as number | false,
      actions: [{ label: 'Open Cron panel', callback: () => this.openPanel() }],
      data: { hermesCron: 'summary' }
    };
    if (this._summaryId && Notification.update({ id: this._summaryId, message, type: 'error', ...options })) {
      return;
    }
    this._summaryId = Notification.error(message, options);
    // a summary that was closed starts counting again
    const id = this._summaryId;
    const watch = (_: unknown, change: Notification.IChange) => {
      if (change.type === 'removed' && change.notification.id === id) {
        Notification.manager.changed.disconnect(watch);
        if (this._summaryId === id) {
          this._summaryId = null;
          this._summary = { failed: 0, alerts: 0, late: 0 };
        }
      }
    };
    Notification.manager.changed.connect(watch);
  }
}
