/**
 * The "Cron" side panel: the jobs list (master) over the selected job (detail).
 *
 * - The list shows a state pip, the name, the schedule in words, a live
 *   next-run countdown and the last outcome; it renders at most one page of 50
 *   and says "50+" with a "load more" and a server-side search for big fleets.
 * - The detail shows the schedule with its next 5 fire times, the policies,
 *   the actions (run now, pause/resume, edit, delete), a live output pane for
 *   the running (or picked) run and the run history, newest first, paged, and
 *   the job's latest notifications.
 * - The "Notifications" tab lists every delivery of the outbox (notifications.ts).
 * - "Timeline" (timeline.ts), "Search" (search.ts) and, for admins, "Audit" (audit.ts)
 *   look across runs and jobs; a job's detail has its 90-day calendar (calendar.ts) and
 *   compares two of its runs (diff.ts).
 * - Every update comes from the `/events` feed of {@link CronModel}.
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import {
  addIcon,
  deleteIcon,
  editIcon,
  LabIcon,
  pauseIcon,
  fastForwardIcon,
  refreshIcon,
  runIcon
} from '@jupyterlab/ui-components';
import { Panel, SplitPanel, Widget } from '@lumino/widgets';

import { ACTIVE, CronError, FAILED, IBackfill, IEvent, IJob, IParameter, IRun, IStatus } from './api';
import { askBackfill, BackfillProgress } from './backfill';
import { h } from './dom';
import { afterText, ago, alertBadge, countdown, describeSchedule, duration, formatTime, scheduleText, seconds, STATUS_LABEL } from './format';
import { pipelineGraph } from './graph';
import { metricsSection } from './metrics';
import { CronModel } from './model';
import { NotificationList, NotificationsView } from './notifications';
import { badgeFor, RunOutput } from './output';
import { RevisionsSection, showExport, showImport } from './definitions';
import { AuditView } from './audit';
import { CalendarSection } from './calendar';
import { DiffView } from './diff';
import { SearchView } from './search';
import { TimelineView } from './timeline';

/** What the panel shows under its head. */
export type Tab = 'jobs' | 'timeline' | 'search' | 'notifications' | 'audit';

export const PAGE = 50;

export interface IPanelOptions {
  model: CronModel;
  openForm: (job?: IJob | null) => void;
  openRunInTab: (runId: string, jobName?: string | null) => void;
}

/** A run's trigger, with the parameters it was given (``manual n=7``). */
function triggerText(run: IRun): string {
  const given = run.parameters ?? {};
  const parts = Object.entries(given).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return parts.length ? `${run.trigger} ${parts.join(', ')}` : run.trigger;
}

/** The "⚠ ALERT" badge of a run whose job's alert rules fired (the rules' messages as its
 * tooltip), or nothing. */
export function alertSpan(alerts: { rule: string; message: string }[] | null | undefined): HTMLSpanElement | null {
  const a = alertBadge(alerts);
  return a ? h('span', { class: 'jp-HermesCron-alertBadge', 'data-role': 'alert-badge', title: a.title }, a.label) : null;
}

function iconButton(
  icon: LabIcon,
  label: string,
  action: string,
  onclick: () => void,
  title?: string
): HTMLButtonElement {
  const button = h('button', {
    class: 'jp-HermesCron-action',
    'data-action': action,
    title: title ?? label,
    type: 'button'
  });
  button.append(icon.element({ tag: 'span', className: 'jp-HermesCron-actionIcon' }), h('span', {}, label));
  button.onclick = onclick;
  return button;
}

function outcome(job: IJob): { symbol: string; tone: string; title: string } {
  const last = job.last_run;
  if (!last) {
    return { symbol: '·', tone: 'muted', title: 'never ran' };
  }
  const when = last.finished_at ?? last.started_at ?? last.scheduled_for;
  const label = STATUS_LABEL[last.status] ?? last.status;
  const title = `last run: ${label}${last.exit_code !== null && last.exit_code !== undefined ? ` (exit ${last.exit_code})` : ''}${when ? `, ${ago(when as string)}` : ''}`;
  if (last.status === 'succeeded') {
    return { symbol: '✓', tone: 'ok', title };
  }
  if (FAILED.includes(last.status)) {
    return { symbol: '✗', tone: 'bad', title };
  }
  if (ACTIVE.includes(last.status)) {
    return { symbol: '▶', tone: 'run', title };
  }
  return { symbol: '–', tone: 'muted', title };
}

function commandText(job: IJob): string {
  if (job.kind === 'python' && job.code) {
    const first = job.code.split('\n').find(l => l.trim()) ?? '';
    return `python (inline): ${first}${job.code.includes('\n') ? ' …' : ''}`;
  }
  if (Array.isArray(job.command)) {
    return job.command.join(' ');
  }
  return job.command ?? '';
}

/** The master list. */
class JobList extends Widget {
  private _list: HTMLUListElement;
  private _footer: HTMLDivElement;
  private _empty: HTMLDivElement;
  onSelect: (job: IJob) => void = () => undefined;
  onMore: () => void = () => undefined;

  constructor() {
    super();
    this.addClass('jp-HermesCron-listBox');
    this._list = h('ul', { class: 'jp-HermesCron-list', role: 'listbox', 'aria-label': 'Cron jobs' });
    this._empty = h('div', { class: 'jp-HermesCron-empty' });
    this._footer = h('div', { class: 'jp-HermesCron-listFooter' });
    this.node.append(this._list, this._empty, this._footer);
  }

  render(jobs: IJob[], selected: string | null, more: boolean, filter: string, loading: boolean): void {
    const frag = document.createDocumentFragment();
    for (const job of jobs) {
      frag.appendChild(this._item(job, job.id === selected));
    }
    this._list.replaceChildren(frag);
    this.node.dataset.filter = filter; // the filter these jobs match (typing applies it after a pause)
    this._empty.hidden = jobs.length > 0 || loading;
    this._empty.textContent = filter
      ? `No job matches “${filter}”.`
      : 'No cron jobs yet. Create one with “New job”, %cron add in a notebook, or hermes-cron add.';
    this._footer.replaceChildren();
    this._footer.hidden = !more;
    if (more) {
      const button = h('button', { class: 'jp-HermesCron-linkButton', 'data-action': 'more', type: 'button' }, 'Show 50 more');
      button.onclick = () => this.onMore();
      this._footer.append(
        h('span', { class: 'jp-HermesCron-more' }, `${jobs.length}+`),
        ` Showing the first ${jobs.length}: refine the filter to find a job, or `,
        button
      );
    }
    this.tick();
  }

  /** Refresh the countdowns in place (once a second, while visible). */
  tick(): void {
    const now = Date.now();
    for (const el of Array.from(this._list.querySelectorAll<HTMLElement>('[data-next]'))) {
      if (!el.dataset.next) {
        continue;
      }
      const text = countdown(el.dataset.next, now);
      if (el.textContent !== text) {
        el.textContent = text;
      }
    }
  }

  private _item(job: IJob, selected: boolean): HTMLLIElement {
    const out = outcome(job);
    const next = job.state === 'paused' || job.state === 'blocked' || job.state === 'disabled' ? null : job.next_run_at;
    const item = h(
      'li',
      {
        class: `jp-HermesCron-job${selected ? ' jp-mod-selected' : ''}`,
        role: 'option',
        'aria-selected': selected ? 'true' : 'false',
        'data-job-id': job.id,
        'data-name': job.name,
        'data-state': job.state,
        tabindex: '0',
        title: `${job.name}: ${job.state}${job.state_reason ? ` (${job.state_reason})` : ''}\n${job.schedule ? `${job.schedule} (${job.timezone})` : scheduleText(job)}`
      },
      h('span', { class: 'jp-HermesCron-pip', 'data-state': job.state, title: job.state }),
      h(
        'span',
        { class: 'jp-HermesCron-jobMain' },
        h(
          'span',
          { class: 'jp-HermesCron-jobName' },
          job.name,
          job.managed_by
            ? h('span', { class: 'jp-HermesCron-managed', 'data-role': 'managed', title: `managed by ${job.managed_by}: edits made here are undone by its next apply` }, job.managed_by)
            : ''
        ),
        // a job with no schedule of its own runs after its upstreams: "after extract, load"
        h('span', { class: 'jp-HermesCron-jobSchedule' }, job.schedule ? describeSchedule(job.schedule) : scheduleText(job))
      ),
      h(
        'span',
        { class: 'jp-HermesCron-jobSide' },
        h(
          'span',
          // only a job with a next run gets data-next: the one-second tick rewrites those, and
          // would blank the state word ("paused") of the others
          { class: 'jp-HermesCron-countdown', 'data-next': next ?? undefined, title: next ? formatTime(next) : '' },
          next ? '' : job.state === 'running' ? 'running' : job.state
        ),
        h('span', { class: 'jp-HermesCron-outcome', 'data-tone': out.tone, title: out.title }, out.symbol)
      )
    );
    item.onclick = () => this.onSelect(job);
    item.onkeydown = (ev: KeyboardEvent) => {
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        this.onSelect(job);
      } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        const sib = (ev.key === 'ArrowDown' ? item.nextElementSibling : item.previousElementSibling) as HTMLElement | null;
        sib?.focus();
        sib?.click();
      }
    };
    return item;
  }
}

/** The detail of the selected job. */
class JobDetail extends Panel {
  private _info = new Widget();
  private _outputBox = new Panel();
  private _history = new Widget();
  /** The "Metrics" section: a sparkline per metric of the job's ended runs. */
  private _metrics = new Widget();
  private _metricsSeq = 0;
  private _metricsTimer: number | null = null;
  /** The last 90 days, a cell per day. */
  private _calendar: CalendarSection;
  /** Two runs compared ("Compare" on one, then on another). */
  private _diffBox = new Panel();
  private _diff: DiffView | null = null;
  private _compareA: string | null = null;
  private _more = new Widget();
  /** The job's revisions: who changed what, when, from where; revert. */
  private _revisions: RevisionsSection;
  private _output: RunOutput | null = null;
  private _job: IJob | null = null;
  private _runs: IRun[] = [];
  private _runsCursor: string | null = null;
  private _runsSeq = 0;
  private _previewSeq = 0;
  private _nextTimes: HTMLElement;
  private _pinnedRun = false;
  /** The backfill started from here, shown while its job is. */
  private _backfillBox = new Panel();
  private _backfill: BackfillProgress | null = null;
  /** The jobs of the shown pipeline: a run event of any of them redraws the graph. */
  private _pipelineIds = new Set<string>();
  private _pipelineTimer: number | null = null;
  /** The job's latest notifications (a short list; "All…" opens the Notifications tab). */
  private _notesBox = new Panel();
  readonly notes: NotificationList;

  constructor(
    private readonly opts: IPanelOptions & {
      onDeleted: () => void;
      onSaved: (job: IJob) => void;
      selectJob: (ref: string) => void;
      openNotifications: (jobId: string, name: string) => void;
    }
  ) {
    super();
    this.addClass('jp-HermesCron-detail');
    this._info.addClass('jp-HermesCron-info');
    this._outputBox.addClass('jp-HermesCron-outputBox');
    this._history.addClass('jp-HermesCron-history');
    this.addWidget(this._info);
    this.addWidget(this._backfillBox);
    this.addWidget(this._outputBox);
    this._diffBox.addClass('jp-HermesCron-diffBox');
    this.addWidget(this._diffBox);
    this._more.addClass('jp-HermesCron-moreFacts');
    this._metrics.addClass('jp-HermesCron-metricsBox');
    this.addWidget(this._metrics);
    this._calendar = new CalendarSection(opts.model.api);
    this.addWidget(this._calendar);
    this.addWidget(this._history);
    this._notesBox.addClass('jp-HermesCron-jobNotifications');
    this._notesBox.node.dataset.role = 'job-notifications';
    this.notes = new NotificationList({
      model: opts.model,
      limit: 5,
      compact: true,
      openJob: id => opts.selectJob(id),
      openRun: id => this.openRun(id)
    });
    this.notes.active = () => this.isVisible && !!this._job;
    const all = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-action': 'all-notifications', title: 'Every notification of this job, in the Notifications tab' }, 'All…');
    all.onclick = () => this._job && opts.openNotifications(this._job.id, this._job.name);
    const title = new Widget({ node: h('div', { class: 'jp-HermesCron-sectionTitle' }, 'Notifications ', all) });
    this._notesBox.addWidget(title);
    this._notesBox.addWidget(this.notes);
    this.addWidget(this._notesBox);
    this._revisions = new RevisionsSection(opts.model.api, job => {
      if (this._job?.id === job.id) {
        this.showJob(job, false);
      }
      opts.onSaved(job);
    });
    this.addWidget(this._revisions);
    this.addWidget(this._more);
    this._nextTimes = h('ol', { class: 'jp-HermesCron-nextTimes', 'data-role': 'next-times' });
    this.showJob(null);
  }

  get job(): IJob | null {
    return this._job;
  }

  get output(): RunOutput | null {
    return this._output;
  }

  private get api() {
    return this.opts.model.api;
  }

  /** Show *job* (a new selection resets the run history and the output pane). */
  showJob(job: IJob | null, fresh = true): void {
    const changed = fresh || !job || this._job?.id !== job.id;
    const scheduleChanged = !this._job || !job || this._job.schedule !== job.schedule || this._job.timezone !== job.timezone;
    this._job = job;
    this.node.dataset.jobId = job?.id ?? '';
    if (this._backfill && this._backfill.backfill.job_id !== job?.id) {
      this._backfill.dispose(); // another job shown: its progress is not this one's
      this._backfill = null;
    }
    if (!job) {
      this._pipelineIds.clear();
      this._info.node.replaceChildren(
        h('div', { class: 'jp-HermesCron-empty' }, 'Select a job to see its schedule, runs and live output.')
      );
      this._history.node.replaceChildren();
      this._metrics.node.replaceChildren();
      this._more.node.replaceChildren();
      this._notesBox.node.hidden = true;
      this._revisions.setJob(null);
      this._calendar.setJob(null);
      this._setOutput(null);
      this._showDiff(null);
      return;
    }
    this._notesBox.node.hidden = false;
    this._renderInfo(job);
    this._revisions.setJob(job);
    this._output?.refreshRevision();
    void this._loadPipeline(job);
    if (changed || scheduleChanged) {
      void this._loadPreview(job);
    }
    this._calendar.setJob(job.id);
    if (changed) {
      void this._loadBackfill(job);
      this._pinnedRun = false;
      this._setOutput(null);
      this._compareA = null;
      this._showDiff(null);
      this._runs = [];
      this._runsCursor = null;
      void this.loadRuns(true);
      this._metrics.node.replaceChildren();
      void this.loadMetrics();
      if (this.notes.job === job.id) {
        void this.notes.load(true);
      } else {
        this.notes.setFilter({ job: job.id });
      }
    }
    this._maybeFollowActive(job.last_run?.id ?? null, job.last_run?.status ?? null);
  }

  /** The panel or its Jobs tab is shown again: read the job's notifications if they
   * changed meanwhile. */
  notesShown(): void {
    if (this._job) {
      this.notes.showing();
    }
  }

  /** A run event for the shown job: refresh the history, follow a new active run. A run
   * event of another job of its pipeline redraws the graph. */
  onRunEvent(event: IEvent): void {
    if (this._job && event.job_id && event.job_id !== this._job.id && event.type !== 'run.progress' && this._pipelineIds.has(event.job_id)) {
      this._pipelineSoon();
    }
    if (!this._job || event.job_id !== this._job.id) {
      return;
    }
    if (event.type === 'run.progress') {
      return; // the output pane has its own stream
    }
    void this.loadRuns(true);
    this._calendar.refreshSoon();
    if (event.type === 'run.finished' || event.type === 'run.lost') {
      this._metricsSoon(); // a run ended: one more point per metric
    }
    if ((event.type === 'run.started' || event.type === 'run.queued') && event.run_id) {
      this._maybeFollowActive(event.run_id, event.type === 'run.started' ? 'running' : 'queued');
    }
  }

  /** Open *runId* in the pane (a user's pick stays until they pick another); *at*: a
   * byte offset of its log to scroll to and mark (a search hit's line). */
  openRun(runId: string, pinned = true, at: number | null = null): void {
    this._pinnedRun = pinned;
    if (this._output?.runId === runId) {
      if (at !== null) {
        this._output.revealOffset(at);
      }
      return;
    }
    this._setOutput(runId, at);
    this._markSelectedRun();
  }

  /** "Compare" on a run: the first pick waits for a second, the second shows the diff. */
  private _compare(runId: string): void {
    if (this._compareA === null || this._compareA === runId) {
      this._compareA = this._compareA === runId ? null : runId;
      this._renderHistory();
      return;
    }
    const a = this._compareA;
    this._compareA = null;
    this._renderHistory();
    this._showDiff([a, runId]);
  }

  private _showDiff(pair: [string, string] | null): void {
    this._diff?.dispose();
    this._diff = null;
    this._diffBox.node.hidden = !pair;
    if (!pair) {
      return;
    }
    this._diff = new DiffView(this.api, pair[0], pair[1], () => this._showDiff(null));
    this._diffBox.addWidget(this._diff);
    const node = this._diffBox.node;
    window.requestAnimationFrame(() => node.scrollIntoView?.({ block: 'nearest' }));
  }

  private _maybeFollowActive(runId: string | null, status: string | null): void {
    if (!runId || !status || !ACTIVE.includes(status as any)) {
      return;
    }
    const current = this._output;
    const busy = current && !current.node.dataset.ended && current.status !== 'error';
    if (current?.runId === runId || (this._pinnedRun && busy)) {
      return;
    }
    this._pinnedRun = false;
    this._setOutput(runId);
    this._markSelectedRun();
  }

  private _setOutput(runId: string | null, at: number | null = null): void {
    if (this._output) {
      this._output.dispose();
      this._output = null;
    }
    this._outputBox.node.hidden = !runId;
    if (!runId) {
      return;
    }
    this._output = new RunOutput(this.api, runId, {
      jobName: this._job?.name,
      jobVersion: () => this._job?.version ?? null,
      compact: true,
      at,
      onOpenInTab: id => this.opts.openRunInTab(id, this._job?.name)
    });
    this._outputBox.addWidget(this._output);
    const node = this._outputBox.node;
    window.requestAnimationFrame(() => node.scrollIntoView?.({ block: 'nearest' }));
  }

  private _renderInfo(job: IJob): void {
    const paused = job.state === 'paused' || job.state === 'blocked';
    const actions = h(
      'div',
      { class: 'jp-HermesCron-actions' },
      iconButton(runIcon, 'Run now', 'run', () => void this._act('run'), 'Start a run now (obeys the overlap policy)'),
      job.kind === 'notebook' || Object.keys(job.parameters ?? {}).length
        ? iconButton(runIcon, 'Run with…', 'run-with', () => void this._runWithParameters(), 'Run now with parameters for this run alone')
        : '',
      paused
        ? iconButton(runIcon, 'Resume', 'resume', () => void this._act('resume'), 'Resume firing on schedule')
        : iconButton(pauseIcon, 'Pause', 'pause', () => void this._act('pause'), 'Stop firing until resumed (missed slots are not caught up)'),
      job.schedule
        ? iconButton(fastForwardIcon, 'Backfill…', 'backfill', () => void this._startBackfill(), 'Run once per past slot of a date range, a few at a time')
        : '', // no schedule of its own, no slots: its upstreams' backfills trigger it
      iconButton(editIcon, 'Edit', 'edit', () => this.opts.openForm(job)),
      iconButton(deleteIcon, 'Delete', 'delete', () => void this._delete())
    );
    const next =
      job.next_run_at && !paused && job.state !== 'disabled'
        ? h('span', { class: 'jp-HermesCron-countdown', 'data-role': 'next-run', 'data-next': job.next_run_at }, countdown(job.next_run_at))
        : h(
            'span',
            { class: 'jp-HermesCron-muted', 'data-role': 'next-run' },
            paused ? job.state : job.state === 'disabled' ? 'disabled' : job.schedule ? 'no next run' : `none of its own: ${afterText(job)}`
          );
    // the fire times below are what the schedule says; a job that does not fire now is told
    const caption =
      (paused || job.state === 'disabled') && job.schedule
        ? h(
            'div',
            { class: 'jp-HermesCron-muted', 'data-role': 'next-times-caption' },
            job.state === 'disabled' ? 'Fire times once enabled:' : 'Fire times once resumed:'
          )
        : '';
    const last = job.last_run;
    const p = job.policy;
    const policies = [
      `overlap: ${p.overlap}`,
      `missed: ${p.misfire}`,
      `retries: ${p.retries}`,
      `timeout: ${seconds(p.timeout)}`,
      `pause after ${p.max_failures} failures`
    ];
    if (p.starting_deadline) {
      policies.push(`deadline: ${seconds(p.starting_deadline)}`);
    }
    if (p.jitter) {
      policies.push(`jitter: ${seconds(p.jitter)}`);
    }
    const lastBadge = last ? badgeFor(last.status) : null;
    this._info.node.replaceChildren(
      h(
        'div',
        { class: 'jp-HermesCron-detailHead' },
        h('span', { class: 'jp-HermesCron-pip', 'data-state': job.state }),
        h('span', { class: 'jp-HermesCron-detailName', 'data-role': 'job-name' }, job.name),
        h('span', { class: 'jp-HermesCron-stateLabel', 'data-role': 'job-state', 'data-state': job.state }, job.state)
      ),
      job.state_reason ? h('div', { class: 'jp-HermesCron-reason', 'data-role': 'state-reason' }, job.state_reason) : '',
      job.managed_by
        ? h(
            'div',
            { class: 'jp-HermesCron-managedNote', 'data-role': 'managed-by', title: 'Edits made here are undone by the next apply of that file' },
            'managed by ',
            h('code', {}, job.managed_by)
          )
        : '',
      job.warning ? h('div', { class: 'jp-HermesCron-reason', 'data-role': 'job-warning' }, `⚠ ${job.warning}`) : '',
      job.description ? h('div', { class: 'jp-HermesCron-description' }, job.description) : '',
      actions,
      h(
        'dl',
        { class: 'jp-HermesCron-facts' },
        h('dt', {}, 'Schedule'),
        job.schedule
          ? h(
              'dd',
              {},
              h('code', { class: 'jp-HermesCron-mono' }, job.schedule),
              ' ',
              h('span', { class: 'jp-HermesCron-muted' }, `(${job.timezone})`),
              job.after?.length ? h('span', { class: 'jp-HermesCron-muted' }, `, and ${afterText(job)}`) : '',
              h('div', { class: 'jp-HermesCron-words', 'data-role': 'schedule-words' }, describeSchedule(job.schedule))
            )
          : h(
              'dd',
              {},
              h('span', { 'data-role': 'schedule-after' }, afterText(job)),
              h('div', { class: 'jp-HermesCron-words', 'data-role': 'schedule-words' }, 'No schedule of its own: it runs only after these jobs')
            ),
        h('dt', {}, 'Next run'),
        h('dd', {}, next, caption, this._nextTimes),
        h('dt', { 'data-role': 'pipeline-label', hidden: true }, 'Pipeline'),
        h('dd', { 'data-role': 'pipeline', hidden: true }),
        h('dt', {}, 'Last run'),
        h(
          'dd',
          {},
          last && lastBadge
            ? h(
                'span',
                {},
                h('span', { class: 'jp-HermesCron-badge', 'data-tone': lastBadge.tone }, lastBadge.label),
                ' ',
                h('span', { class: 'jp-HermesCron-muted' }, ago((last.finished_at ?? last.started_at ?? last.scheduled_for) as string)),
                last.exit_code !== null && last.exit_code !== undefined ? ` · exit ${last.exit_code}` : ''
              )
            : h('span', { class: 'jp-HermesCron-muted' }, 'never')
        ),
      )
    );
    this._more.node.replaceChildren(
      h(
        'dl',
        { class: 'jp-HermesCron-facts' },
        h('dt', {}, job.kind === 'notebook' ? 'Notebook' : job.kind === 'python' ? 'Python' : 'Command'),
        h('dd', {}, h('code', { class: 'jp-HermesCron-mono jp-HermesCron-command' }, commandText(job))),
        job.cwd ? h('dt', {}, 'Directory') : null,
        job.cwd ? h('dd', {}, h('code', { class: 'jp-HermesCron-mono' }, job.cwd)) : null,
        // a JupyterHub service's job: whose it is, and the hub groups it is shared with
        job.owner ? h('dt', {}, 'Owner') : null,
        job.owner ? h('dd', { 'data-role': 'owner' }, job.owner) : null,
        Object.keys(job.shares ?? {}).length ? h('dt', {}, 'Shared with') : null,
        Object.keys(job.shares ?? {}).length
          ? h(
              'dd',
              { 'data-role': 'shares' },
              Object.entries(job.shares)
                .sort(([a], [b]) => a.localeCompare(b))
                .map(([group, level]) => `${group} (${level})`)
                .join(', ')
            )
          : null,
        h('dt', {}, 'Policies'),
        h('dd', { class: 'jp-HermesCron-policyList' }, policies.join(' · '))
      )
    );
  }

  /** Upstream and downstream jobs (pipelines), each with its last run's status. */
  private async _loadPipeline(job: IJob): Promise<void> {
    const box = this._info.node.querySelector<HTMLElement>('[data-role="pipeline"]');
    const label = this._info.node.querySelector<HTMLElement>('[data-role="pipeline-label"]');
    if (!box || !label) {
      return;
    }
    let graph;
    try {
      graph = await this.api.pipeline(job.id);
    } catch {
      return; // an older server: no pipelines
    }
    if (this._job?.id !== job.id) {
      return;
    }
    this._pipelineIds = new Set(graph.edges.length ? graph.nodes.map(n => n.id) : []);
    const byId = new Map(graph.nodes.map(n => [n.id, n]));
    const item = (id: string, on: string) => {
      const node = byId.get(id);
      const b = node?.last_status ? badgeFor(node.last_status) : null;
      return h(
        'span',
        { class: 'jp-HermesCron-pipeNode', 'data-job': node?.name ?? id },
        node?.name ?? id,
        on !== 'success' ? ` (on ${on})` : '',
        b ? h('span', { class: 'jp-HermesCron-badge', 'data-tone': b.tone }, b.label) : ''
      );
    };
    const list = (items: HTMLElement[]) => items.flatMap((x, i) => (i ? [', ', x] : [x]));
    const ups = list(graph.edges.filter(e => e.to === job.id).map(e => item(e.from, e.on)));
    const downs = list(graph.edges.filter(e => e.from === job.id).map(e => item(e.to, e.on)));
    const parts: (Node | string)[] = [];
    if (ups.length) {
      parts.push(h('div', { 'data-role': 'upstream' }, 'after: ', ...ups));
    }
    if (downs.length) {
      parts.push(h('div', { 'data-role': 'downstream' }, 'then: ', ...downs));
    }
    // why its upstreams' runs may not trigger this job (disabled; a fan-in's rule)
    const note = byId.get(job.id)?.note;
    if (note) {
      parts.push(h('div', { class: 'jp-HermesCron-pipeNote', 'data-role': 'pipeline-note' }, note));
    }
    if (parts.length) {
      parts.push(h('div', { class: 'jp-HermesCron-graphBox' }, pipelineGraph(graph, job.id, name => this.opts.selectJob(name))));
    }
    box.replaceChildren(...parts);
    box.hidden = label.hidden = !parts.length;
  }

  /** Redraw the pipeline soon (a burst of run events means one request). */
  private _pipelineSoon(): void {
    if (this._pipelineTimer !== null) {
      return;
    }
    this._pipelineTimer = window.setTimeout(() => {
      this._pipelineTimer = null;
      if (this._job) {
        void this._loadPipeline(this._job);
      }
    }, 150);
  }

  /** Read the shown job's metrics again and draw them (a sparkline per metric). */
  async loadMetrics(): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const seq = ++this._metricsSeq;
    let content: (HTMLElement | string)[];
    try {
      content = metricsSection(await this.api.metrics(job.id, { limit: 30 }));
    } catch (err: any) {
      if (err instanceof CronError && err.status === 404) {
        content = []; // the job is gone (the list says so), or an older server
      } else {
        content = [h('div', { class: 'jp-HermesCron-error' }, `metrics: ${err?.message ?? err}`)];
      }
    }
    if (seq !== this._metricsSeq || this._job?.id !== job.id) {
      return;
    }
    this._metrics.node.replaceChildren(
      ...(content.length ? [h('div', { class: 'jp-HermesCron-sectionTitle' }, 'Metrics'), ...content] : [])
    );
  }

  /** Read the metrics soon (a burst of ended runs means one request). */
  private _metricsSoon(): void {
    if (this._metricsTimer !== null) {
      return;
    }
    this._metricsTimer = window.setTimeout(() => {
      this._metricsTimer = null;
      void this.loadMetrics();
    }, 150);
  }

  /** A backfill of *job* still running (started anywhere: CLI, notebook, another tab)
   * shows its progress under the job. */
  private async _loadBackfill(job: IJob): Promise<void> {
    let backfills;
    try {
      backfills = await this.api.listBackfills(job.id);
    } catch {
      return; // an older server
    }
    const running = backfills.find(b => b.state === 'running');
    if (!running || this._job?.id !== job.id || this._backfill?.backfill.id === running.id) {
      return;
    }
    this._showBackfill(running);
  }

  private _showBackfill(backfill: IBackfill): void {
    this._backfill?.dispose();
    this._backfill = new BackfillProgress(this.api, backfill);
    this._backfillBox.addWidget(this._backfill);
  }

  /** Ask for a range, start the backfill, and show its progress under the job. */
  private async _startBackfill(): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const started = await askBackfill(this.api, job);
    if (!started || this._job?.id !== job.id) {
      return;
    }
    this._showBackfill(started);
    void this.loadRuns(true);
  }

  private async _loadPreview(job: IJob): Promise<void> {
    const seq = ++this._previewSeq;
    this._nextTimes.replaceChildren();
    if (!job.schedule) {
      return; // no schedule of its own: no fire times
    }
    try {
      const preview = await this.api.preview(job.schedule, job.timezone, 5);
      if (seq !== this._previewSeq) {
        return;
      }
      this._nextTimes.replaceChildren(
        ...preview.next.map(t => h('li', { title: t }, formatTime(t)))
      );
    } catch (err: any) {
      if (seq === this._previewSeq) {
        this._nextTimes.replaceChildren(h('li', { class: 'jp-HermesCron-error' }, err?.message ?? String(err)));
      }
    }
  }

  async loadRuns(reset: boolean): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const seq = ++this._runsSeq;
    try {
      const limit = reset ? Math.max(10, Math.min(200, this._runs.length || 10)) : 10;
      const page = await this.api.listRuns(job.id, { limit, cursor: reset ? null : this._runsCursor });
      if (seq !== this._runsSeq || this._job?.id !== job.id) {
        return;
      }
      this._runs = reset ? page.items : [...this._runs, ...page.items];
      this._runsCursor = page.cursor;
      this._renderHistory();
    } catch (err: any) {
      if (seq === this._runsSeq && !(err instanceof CronError && err.status === 404)) {
        this._history.node.replaceChildren(h('div', { class: 'jp-HermesCron-error' }, `runs: ${err?.message ?? err}`));
      }
    }
  }

  private _renderHistory(): void {
    const picking = this._compareA;
    const rows = this._runs.map(run => {
      const b = badgeFor(run.status);
      const first = picking === run.id;
      const compare = h(
        'button',
        {
          class: `jp-HermesCron-linkButton jp-HermesCron-compare${first ? ' jp-mod-current' : ''}`,
          type: 'button',
          'data-action': 'compare',
          title: first ? 'Cancel the comparison' : picking ? 'Compare the picked run with this one' : 'Compare this run with another one (pick it next)'
        },
        first ? 'Cancel' : picking ? 'With this' : 'Compare'
      );
      compare.onclick = (ev: MouseEvent) => {
        ev.stopPropagation();
        this._compare(run.id);
      };
      const tr = h(
        'tr',
        {
          class: 'jp-HermesCron-run',
          'data-run-id': run.id,
          'data-status': run.status,
          tabindex: '0',
          title: `${run.id}${run.reason ? `: ${run.reason}` : ''}\nclick to show its output`
        },
        h('td', {}, h('span', { class: 'jp-HermesCron-badge', 'data-tone': b.tone }, b.label), alertSpan(run.alerts)),
        h('td', { 'data-role': 'trigger' }, triggerText(run)),
        h('td', { title: run.started_at ?? run.scheduled_for ?? '' }, formatTime(run.started_at ?? run.scheduled_for ?? run.queued_at)),
        h('td', { class: 'jp-HermesCron-num' }, run.status === 'skipped' ? '—' : duration(run.duration)),
        h('td', { class: 'jp-HermesCron-num' }, run.exit_code === null || run.exit_code === undefined ? '' : String(run.exit_code)),
        h('td', {}, compare)
      );
      tr.onclick = () => this.openRun(run.id);
      tr.onkeydown = (ev: KeyboardEvent) => {
        if (ev.key === 'Enter') {
          this.openRun(run.id);
        }
      };
      return tr;
    });
    const table = h(
      'table',
      { class: 'jp-HermesCron-runs' },
      h(
        'thead',
        {},
        h('tr', {}, h('th', {}, 'Status'), h('th', {}, 'Trigger'), h('th', {}, 'Started'), h('th', {}, 'Took'), h('th', {}, 'Exit'), h('th', {}, ''))
      ),
      h('tbody', {}, ...rows)
    );
    const more = this._runsCursor
      ? h('button', { class: 'jp-HermesCron-linkButton', 'data-action': 'more-runs', type: 'button', onclick: () => void this.loadRuns(false) }, 'Older runs…')
      : null;
    this._history.node.replaceChildren(
      h('div', { class: 'jp-HermesCron-sectionTitle' }, 'Runs'),
      picking ? h('div', { class: 'jp-HermesCron-muted', 'data-role': 'compare-hint' }, `Comparing ${picking}: pick the run to compare it with (“With this”).`) : '',
      this._runs.length ? table : h('div', { class: 'jp-HermesCron-muted' }, 'No runs yet.'),
      more ?? ''
    );
    this._markSelectedRun();
  }

  private _markSelectedRun(): void {
    const id = this._output?.runId;
    for (const tr of Array.from(this._history.node.querySelectorAll<HTMLElement>('tr[data-run-id]'))) {
      tr.classList.toggle('jp-mod-selected', tr.dataset.runId === id);
    }
  }

  private async _act(action: 'run' | 'pause' | 'resume'): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const button = this._info.node.querySelector<HTMLButtonElement>(`[data-action="${action}"]`);
    if (button) {
      button.disabled = true;
    }
    try {
      if (action === 'run') {
        const run = await this.api.runNow(job.id);
        this.openRun(run.id, false);
        void this.loadRuns(true);
      } else {
        const updated = action === 'pause' ? await this.api.pause(job.id) : await this.api.resume(job.id);
        if (this._job?.id === updated.id) {
          this.showJob(updated, false);
        }
      }
    } catch (err: any) {
      Notification.error(`${job.name}: ${err?.message ?? err}`, { autoClose: 8000 });
    } finally {
      if (button) {
        button.disabled = false;
      }
    }
  }

  /** A form built from what the job declares (a notebook's parameters cell, typed); the
   * server checks the values again and names the one that is wrong. */
  private async _runWithParameters(): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    let declared: IParameter[];
    try {
      declared = await this.api.jobParameters(job.id);
    } catch (err: any) {
      Notification.error(`${job.name}: ${err?.message ?? err}`, { autoClose: 8000 });
      return;
    }
    const body = new Widget();
    body.addClass('jp-HermesCron-paramsForm');
    const inputs: { [name: string]: HTMLInputElement } = {};
    for (const p of declared) {
      const shown = p.default === null || p.default === undefined ? '' : typeof p.default === 'string' ? p.default : JSON.stringify(p.default);
      const input = h('input', {
        'data-param': p.name,
        'data-type': p.type,
        class: 'jp-mod-styled',
        type: p.type === 'bool' ? 'checkbox' : p.type === 'int' || p.type === 'float' ? 'number' : p.type === 'date' ? 'date' : 'text',
        ...(p.type === 'float' ? { step: 'any' } : {})
      }) as HTMLInputElement;
      if (p.type === 'bool') {
        input.checked = p.default === true;
      } else {
        input.value = shown;
      }
      inputs[p.name] = input;
      body.node.appendChild(h('label', { class: 'jp-HermesCron-row' }, h('span', {}, `${p.name} (${p.type})`), input));
    }
    if (!declared.length) {
      body.node.appendChild(h('div', { class: 'jp-HermesCron-muted' }, 'This job declares no parameters.'));
    }
    const result = await showDialog({
      title: `Run ${job.name} with parameters`,
      body,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
    });
    if (!result.button.accept) {
      return;
    }
    const values: { [key: string]: unknown } = {};
    for (const p of declared) {
      const input = inputs[p.name];
      if (p.type === 'bool') {
        values[p.name] = input.checked;
      } else if (p.type === 'int' || p.type === 'float') {
        values[p.name] = input.value === '' ? null : Number(input.value);
      } else if (p.type === 'list' || p.type === 'dict' || p.type === 'any') {
        try {
          values[p.name] = input.value === '' ? null : JSON.parse(input.value);
        } catch {
          values[p.name] = input.value; // not JSON: the server says what it must be
        }
      } else {
        values[p.name] = input.value;
      }
    }
    try {
      const run = await this.api.runNow(job.id, values);
      this.openRun(run.id, false);
      void this.loadRuns(true);
    } catch (err: any) {
      Notification.error(`${job.name}: ${err?.message ?? err}`, { autoClose: 8000 });
    }
  }

  private async _delete(): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const result = await showDialog({
      title: 'Delete cron job?',
      body: `Delete “${job.name}” and its run history? A run in progress is not stopped.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      await this.api.deleteJob(job.id);
      this.opts.onDeleted();
    } catch (err: any) {
      Notification.error(`${job.name}: ${err?.message ?? err}`, { autoClose: 8000 });
    }
  }
}

export class CronPanel extends Panel {
  private _jobs: IJob[] = [];
  private _more = false;
  private _selected: string | null = null;
  private _filter = '';
  private _loading = true;
  private _loadSeq = 0;
  /** How many jobs the list shows: grows with "Show 50 more", back to a page on a new filter. */
  private _wanted = PAGE;
  private _reloadTimer: number | null = null;
  private _jobTimers = new Map<string, number>();
  private _tick: number | null = null;
  private _badge: HTMLSpanElement;
  private _banner: HTMLDivElement;
  private _conn: HTMLDivElement;
  private _filterInput: HTMLInputElement;
  private _list = new JobList();
  private _detail: JobDetail;
  private _split = new SplitPanel({ orientation: 'vertical', spacing: 4 });
  /** The "Notifications" tab: the outbox's deliveries. */
  private _notifications: NotificationsView;
  private _tabs: { [tab: string]: HTMLButtonElement } = {};
  private _tab: Tab = 'jobs';
  /** Every job's runs on one time axis. */
  private _timeline: TimelineView;
  /** Full-text search of the runs' output. */
  private _search: SearchView;
  /** The audit log (admins: its tab shows once /me says so). */
  private _audit: AuditView;

  constructor(private readonly opts: IPanelOptions) {
    super();
    this.id = 'hermes-cron-panel';
    this.addClass('jp-HermesCron-panel');
    this.title.caption = 'Cron jobs';

    const head = new Widget();
    head.addClass('jp-HermesCron-head');
    this._badge = h('span', { class: 'jp-HermesCron-count', 'data-role': 'count', title: 'jobs' }, '0');
    const newButton = iconButton(addIcon, 'New job', 'new', () => this.opts.openForm(null), 'Create a cron job');
    const exportButton = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-action': 'export', title: 'The YAML of every job, or of the selected one' }, 'Export…');
    exportButton.onclick = () => void showExport(this.opts.model.api, this._detail.job);
    const importButton = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-action': 'import', title: 'Apply a definitions file (YAML): see the plan first' }, 'Import…');
    importButton.onclick = () => void showImport(this.opts.model.api, () => this.reloadSoon());
    const refresh = h('button', { class: 'jp-HermesCron-iconOnly', title: 'Reload', type: 'button', 'data-action': 'refresh' });
    refresh.append(refreshIcon.element({ tag: 'span' }));
    refresh.onclick = () => {
      void this.reload();
      void this.opts.model.refreshStatus();
    };
    this._banner = h('div', { class: 'jp-HermesCron-banner', 'data-role': 'ticker-banner', role: 'alert' });
    this._banner.hidden = true;
    this._conn = h('div', { class: 'jp-HermesCron-connBanner', 'data-role': 'conn-banner' });
    this._conn.hidden = true;
    this._filterInput = h('input', {
      class: 'jp-mod-styled jp-HermesCron-filter',
      type: 'search',
      placeholder: 'Filter jobs (name, schedule, command)',
      'aria-label': 'Filter jobs'
    });
    let filterTimer: number | null = null;
    this._filterInput.addEventListener('input', () => {
      if (filterTimer !== null) {
        window.clearTimeout(filterTimer);
      }
      filterTimer = window.setTimeout(() => {
        filterTimer = null;
        this._filter = this._filterInput.value.trim();
        this._wanted = PAGE;
        void this.reload();
      }, 200);
    });
    head.node.append(
      h(
        'div',
        { class: 'jp-HermesCron-titleRow' },
        h('span', { class: 'jp-HermesCron-title' }, 'Cron'),
        this._badge,
        h('span', { class: 'jp-HermesCron-spacer' }),
        newButton,
        importButton,
        exportButton,
        refresh
      ),
      this._banner,
      this._conn,
      this._tabRow(),
      this._filterInput
    );

    this._list.onSelect = job => this.select(job.id);
    this._list.onMore = () => {
      // kept as state, so a reload an event starts meanwhile asks for as many
      this._wanted = this._jobs.length + PAGE;
      void this.reload();
    };
    this._detail = new JobDetail({
      ...opts,
      onDeleted: () => this._onDeleted(),
      onSaved: job => this.showSaved(job),
      selectJob: ref => void this.select(ref),
      openNotifications: (id, name) => this.showNotifications(id, name)
    });
    this._split.addClass('jp-HermesCron-split');
    this._split.addWidget(this._list);
    this._split.addWidget(this._detail);
    this._split.setRelativeSizes([0.4, 0.6]);
    this._notifications = new NotificationsView({
      model: opts.model,
      openJob: id => {
        this.showTab('jobs');
        void this.select(id);
      },
      openRun: id => void this.showRun(id)
    });
    this._notifications.hide();
    this._timeline = new TimelineView({ api: opts.model.api, openRun: id => void this.showRun(id) });
    this._search = new SearchView({
      api: opts.model.api,
      openRunAt: (id, offset) => void this.showRun(id, offset),
      openJob: id => {
        this.showTab('jobs');
        void this.select(id);
      }
    });
    this._audit = new AuditView(opts.model.api, id => {
      this.showTab('jobs');
      void this.select(id);
    });
    this.addWidget(head);
    this.addWidget(this._split);
    for (const view of [this._timeline, this._search, this._notifications, this._audit]) {
      view.hide();
      this.addWidget(view);
    }
    this._tabs.audit.hidden = true;
    opts.model.api
      .me()
      .then(me => (this._tabs.audit.hidden = !me.admin))
      .catch(() => undefined);

    const model = opts.model;
    model.statusChanged.connect(this._onStatus, this);
    model.event.connect(this._onEvent, this);
    model.connection.connect((_, c) => {
      this._conn.hidden = c.connected;
      this._conn.textContent = c.connected ? '' : 'Live updates disconnected: reconnecting…';
      if (c.connected) {
        void this.reload(); // catch up: also covers anything missed while away
      }
    }, this);
    model.start();
    this._onStatus(model, model.status);
    void this.reload();
  }

  get detail(): JobDetail {
    return this._detail;
  }

  get notifications(): NotificationsView {
    return this._notifications;
  }

  get timeline(): TimelineView {
    return this._timeline;
  }

  get search(): SearchView {
    return this._search;
  }

  /** "Jobs | Timeline | Search | Notifications | Audit": what the panel shows under its head. */
  private _tabRow(): HTMLDivElement {
    const row = h('div', { class: 'jp-HermesCron-tabs', role: 'tablist' });
    for (const [tab, label, title] of [
      ['jobs', 'Jobs', 'The jobs, and the selected one'],
      ['timeline', 'Timeline', 'Every job’s runs on one time axis'],
      ['search', 'Search', 'Search the output of every run'],
      ['notifications', 'Notifications', 'Where notifications went: each delivery, its attempts and errors'],
      ['audit', 'Audit', 'Who changed what, when and from where (admins); verify the chain']
    ] as const) {
      const button = h('button', { class: 'jp-HermesCron-tab', type: 'button', role: 'tab', 'data-tab': tab, title }, label);
      button.onclick = () => this.showTab(tab);
      this._tabs[tab] = button;
      row.append(button);
    }
    this._markTabs();
    return row;
  }

  private _markTabs(): void {
    for (const [tab, button] of Object.entries(this._tabs)) {
      button.classList.toggle('jp-mod-current', tab === this._tab);
      button.setAttribute('aria-selected', tab === this._tab ? 'true' : 'false');
    }
  }

  /** Show the jobs (list and detail), the timeline, the search, the notifications or
   * the audit log. */
  showTab(tab: Tab): void {
    this._tab = tab;
    this._markTabs();
    this.node.dataset.tab = tab;
    this._filterInput.hidden = tab !== 'jobs';
    const views: [Tab, Widget][] = [
      ['jobs', this._split],
      ['timeline', this._timeline],
      ['search', this._search],
      ['notifications', this._notifications],
      ['audit', this._audit]
    ];
    for (const [name, view] of views) {
      if (name !== tab) {
        view.hide();
      }
    }
    for (const [name, view] of views) {
      if (name === tab) {
        view.show();
      }
    }
    if (tab === 'jobs') {
      this._detail.notesShown();
    }
  }

  /** The Notifications tab, of job *jobId* alone when given (else as it was). */
  showNotifications(jobId?: string | null, name?: string | null): void {
    if (jobId !== undefined) {
      this._notifications.filterJob(jobId, name);
    }
    this.showTab('notifications');
  }

  get selected(): string | null {
    return this._selected;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._stopTick();
    this.opts.model.statusChanged.disconnect(this._onStatus, this);
    this.opts.model.event.disconnect(this._onEvent, this);
    super.dispose();
  }

  protected onAfterShow(): void {
    this._startTick();
    if (this._tab === 'jobs') {
      this._detail.notesShown();
    }
  }

  protected onAfterAttach(): void {
    if (this.isVisible) {
      this._startTick();
    }
  }

  protected onBeforeHide(): void {
    this._stopTick();
  }

  protected onBeforeDetach(): void {
    this._stopTick();
  }

  private _startTick(): void {
    if (this._tick === null) {
      this._tick = window.setInterval(() => {
        this._list.tick();
        this._detail.notes.tick();
        const now = Date.now();
        for (const el of Array.from(this._detail.node.querySelectorAll<HTMLElement>('.jp-HermesCron-info [data-next]'))) {
          if (!el.dataset.next) {
            continue;
          }
          el.textContent = countdown(el.dataset.next, now);
        }
      }, 1000);
    }
  }

  private _stopTick(): void {
    if (this._tick !== null) {
      window.clearInterval(this._tick);
      this._tick = null;
    }
  }

  /** Select a job by id or name (a name also works in the API). */
  async select(ref: string | null): Promise<void> {
    if (!ref) {
      this._selected = null;
      this._detail.showJob(null);
      this._render();
      return;
    }
    let job = this._jobs.find(j => j.id === ref || j.name === ref) ?? null;
    if (!job) {
      try {
        job = await this.opts.model.api.getJob(ref);
      } catch {
        return;
      }
    }
    const fresh = this._selected !== job.id;
    this._selected = job.id;
    this._render();
    this._detail.showJob(job, fresh);
  }

  /** Show run *runId* (a toast's "Show run", a `?hermes-cron-run=ID` link, a bar of
   * the timeline, a search hit at byte *at* of its log): its job selected, the run in
   * the output pane. */
  async showRun(runId: string, at: number | null = null): Promise<void> {
    this.showTab('jobs');
    let run;
    try {
      run = await this.opts.model.api.getRun(runId);
    } catch (err: any) {
      Notification.error(`Cron: cannot show run ${runId}: ${err?.message ?? err}`, { autoClose: 8000 });
      return;
    }
    await this.select(run.job_id);
    if (this._selected === run.job_id) {
      this._detail.openRun(run.id, true, at);
    }
  }

  /** Show a job that was just saved (created or edited). */
  showSaved(job: IJob): void {
    const i = this._jobs.findIndex(j => j.id === job.id);
    if (i >= 0) {
      this._jobs[i] = job;
    }
    void this.select(job.id);
    this.reloadSoon();
  }

  reloadSoon(): void {
    if (this._reloadTimer !== null) {
      return;
    }
    this._reloadTimer = window.setTimeout(() => {
      this._reloadTimer = null;
      void this.reload();
    }, 150);
  }

  /** (Re)load the first jobs matching the filter: as many as shown, or asked for. */
  async reload(): Promise<void> {
    const seq = ++this._loadSeq;
    const limit = Math.min(500, Math.max(this._wanted, this._jobs.length));
    try {
      const page = await this.opts.model.api.listJobs({ q: this._filter || undefined, limit });
      if (seq !== this._loadSeq) {
        return;
      }
      this._jobs = page.items;
      this._more = page.cursor !== null;
      this._loading = false;
      this._render();
      if (this._selected) {
        const job = this._jobs.find(j => j.id === this._selected);
        if (job) {
          this._detail.showJob(job, false);
        } else if (!this._filter) {
          // not in the loaded pages: it may still exist further down
          this._refreshJob(this._selected);
        }
      }
    } catch (err: any) {
      if (seq === this._loadSeq) {
        this._loading = false;
        this._conn.hidden = false;
        this._conn.textContent = `Cannot list jobs: ${err?.message ?? err}`;
      }
    }
  }

  private _render(): void {
    this._list.render(this._jobs, this._selected, this._more, this._filter, this._loading);
    this.node.dataset.loaded = this._loading ? 'false' : 'true';
  }

  private _onStatus(_: CronModel, status: IStatus | null): void {
    const error = this.opts.model.statusError;
    if (status) {
      const total = Object.values(status.jobs_by_state).reduce((a, b) => a + b, 0);
      this._badge.textContent = String(total);
      this._badge.title = Object.entries(status.jobs_by_state)
        .map(([s, n]) => `${n} ${s}`)
        .join(', ') || 'no jobs';
    }
    const warning = error ?? (status && !status.ticking ? status.warning ?? 'No ticker is alive: scheduled runs will not fire.' : null);
    this._banner.hidden = !warning;
    this._banner.textContent = warning ? `⚠ ${warning}` : '';
    this.node.dataset.ticking = status ? String(status.ticking) : 'unknown';
  }

  private _onEvent(_: CronModel, event: IEvent): void {
    const t = event.type;
    this._timeline.onEvent(event);
    if (t.startsWith('job.') && !this._tabs.audit.hidden) {
      this._audit.changed();
    }
    if (t === 'job.created' || t === 'job.deleted') {
      if (t === 'job.deleted' && event.job_id === this._selected) {
        this._onDeleted();
      }
      this.reloadSoon();
      return;
    }
    const id = event.job_id;
    const shown = id ? this._jobs.find(j => j.id === id) : undefined;
    if (t === 'job.updated' && shown && event.data?.name && event.data.name !== shown.name) {
      this.reloadSoon(); // renamed: its place in the (name-ordered) list changed
    }
    // only jobs on screen are fetched again: a burst of runs across a big fleet costs nothing
    if (id && (shown || id === this._selected) && (t.startsWith('job.') || (t.startsWith('run.') && t !== 'run.progress'))) {
      this._refreshJob(id);
    }
    if (t.startsWith('run.')) {
      this._detail.onRunEvent(event);
    }
  }

  /** Fetch one job again (coalesced: a burst of events means one request). */
  private _refreshJob(id: string): void {
    if (this._jobTimers.has(id)) {
      return;
    }
    this._jobTimers.set(
      id,
      window.setTimeout(async () => {
        this._jobTimers.delete(id);
        try {
          const job = await this.opts.model.api.getJob(id);
          const i = this._jobs.findIndex(j => j.id === id);
          if (i >= 0) {
            this._jobs[i] = job;
            this._render();
          }
          if (this._selected === id) {
            this._detail.showJob(job, false);
          }
        } catch (err) {
          if (err instanceof CronError && err.status === 404) {
            this.reloadSoon();
          }
        }
      }, 100)
    );
  }

  private _onDeleted(): void {
    this._selected = null;
    this._detail.showJob(null);
    this.reloadSoon();
  }
}
