/**
 * The REST client for `{base_url}api/cron/` (see hermes_cron_ext/server/openapi.json).
 *
 * Every request goes through JupyterLab's ServerConnection, so it carries the
 * same auth (token header or cookie + XSRF) as the rest of Lab.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IBackfill, IJob, IJobPage, IMetrics, INotifications, IOption, IRun, IRunPage, IStatus, RunStatus } from './generated';
export type { INotification, INotifications } from './generated';

// The shapes of jobs, runs, options, events, tickers, the status and backfills are
// generated from the server's declarations (hermes_cron_ext/domain/options.py and
// models.py, ops/local.py's STATUS_JSON): see generated.ts.
export { ACTIVE, FAILED, OPTIONS } from './generated';
export type {
  IBackfill,
  IEvent,
  IJob,
  IJobPage,
  IMetricPoint,
  IMetrics,
  IMetricSeries,
  IOption,
  IPolicy,
  IRun,
  IRunPage,
  IStatus,
  ITicker,
  JobKind,
  JobState,
  RunStatus,
  Trigger
} from './generated';

/** One upstream of a job: its id, its name (as read) and when its run triggers. */
export type IAfter = IJob['after'][number];

/** A job's latest run, in brief. */
export type ILastRun = NonNullable<IJob['last_run']>;

/** The pipeline a job is part of (`GET /jobs/{id}/pipeline`). */
export interface IPipeline {
  job: string;
  /** `note`: why the runs of its upstreams may not trigger a job (disabled; a fan-in's rule). */
  nodes: { id: string; name: string; state: string; last_status: RunStatus | null; level: number; note?: string | null }[];
  edges: { from: string; to: string; on: string }[];
}

/** What a run of a job may be given (a notebook's parameters cell, typed). */
export interface IParameter {
  name: string;
  type: 'int' | 'float' | 'bool' | 'str' | 'list' | 'dict' | 'date' | 'any';
  default: unknown;
}

/** Why a notification was made (`event` of a delivery; `notify_on` lists them). */
export type NotifyKind = 'failure' | 'lost' | 'blocked' | 'missed' | 'late' | 'alert' | 'recovered' | 'succeeded' | 'started';

/** Where a delivery stands: `sending` is pending and taken by a sender now. */
export type DeliveryStatus = 'pending' | 'sending' | 'sent' | 'failed';

export const DELIVERY_STATUSES: DeliveryStatus[] = ['pending', 'sending', 'sent', 'failed'];

export interface IPreview {
  schedule: string;
  timezone: string;
  description: string;
  next: string[];
}

export interface IPage<T> {
  items: T[];
  cursor: string | null;
}

/** A JSON error from the API: `{"error": {"code", "message", "field"?}}`. */
export class CronError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field: string | null = null
  ) {
    super(message);
  }
}

/** The path part of an API URL, below `{base_url}api/cron/`. */
export function apiUrl(
  path: string,
  query: { [key: string]: string | number | null | undefined } = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  const params: { [key: string]: string } = {};
  for (const [k, v] of Object.entries(query)) {
    if (v !== null && v !== undefined && v !== '') {
      params[k] = String(v);
    }
  }
  const search = URLExt.objectToQueryString(params);
  return URLExt.join(settings.baseUrl, 'api', 'cron', path) + search;
}

export class CronAPI {
  readonly settings = ServerConnection.makeSettings();

  url(path: string, query: { [key: string]: string | number | null | undefined } = {}): string {
    return apiUrl(path, query, this.settings);
  }

  async request<T>(
    method: string,
    path: string,
    options: { query?: { [key: string]: string | number | null | undefined }; body?: unknown; raw?: boolean } = {}
  ): Promise<T> {
    // revisions and the audit log record where a change came from: the panel
    const headers: { [key: string]: string } = { 'X-Hermes-Cron-Origin': 'panel' };
    const init: RequestInit = { method, headers };
    if (options.body !== undefined) {
      init.body = JSON.stringify(options.body);
      headers['Content-Type'] = 'application/json';
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        this.url(path, options.query),
        init,
        this.settings
      );
    } catch (err) {
      throw new CronError(0, 'network', `cannot reach the Jupyter server: ${err}`);
    }
    const text = await response.text();
    let data: any = null;
    if (options.raw && response.ok) {
      return text as unknown as T;
    }
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (!response.ok) {
      const error = data && typeof data === 'object' ? data.error : null;
      if (error && typeof error === 'object') {
        throw new CronError(response.status, error.code, error.message, error.field ?? null);
      }
      const message =
        (data && typeof data === 'object' && data.message) ||
        `${response.status} ${response.statusText}`;
      throw new CronError(response.status, 'http', message);
    }
    return data as T;
  }

  /** Who the scheduler takes the caller for (`GET /me`): name null in a user's own
   * server, where every job is theirs. */
  me(): Promise<{ name: string | null; groups: string[]; admin: boolean }> {
    return this.request('GET', 'me');
  }

  status(): Promise<IStatus> {
    return this.request('GET', 'status');
  }

  async listJobs(options: { q?: string; limit?: number; cursor?: string | null } = {}): Promise<
    IPage<IJob>
  > {
    const page = await this.request<IJobPage>('GET', 'jobs', {
      query: { q: options.q, limit: options.limit ?? 50, cursor: options.cursor }
    });
    return { items: page.jobs, cursor: page.cursor };
  }

  getJob(ref: string): Promise<IJob> {
    return this.request('GET', `jobs/${encodeURIComponent(ref)}`);
  }

  createJob(body: { [key: string]: unknown }): Promise<IJob> {
    return this.request('POST', 'jobs', { body });
  }

  updateJob(ref: string, body: { [key: string]: unknown }): Promise<IJob> {
    return this.request('PATCH', `jobs/${encodeURIComponent(ref)}`, { body });
  }

  deleteJob(ref: string): Promise<void> {
    return this.request('DELETE', `jobs/${encodeURIComponent(ref)}`);
  }

  runNow(ref: string, parameters?: { [key: string]: unknown }): Promise<IRun> {
    return this.request('POST', `jobs/${encodeURIComponent(ref)}/run`, parameters ? { body: { parameters } } : {});
  }

  /** Run *ref* once per past slot from *from* to *to*; with dry_run, only count them. */
  backfill(ref: string, body: { from: string; to: string; max_parallel: number; dry_run?: boolean }): Promise<IBackfill> {
    return this.request('POST', `jobs/${encodeURIComponent(ref)}/backfill`, { body });
  }

  /** The job's backfills, newest first (the last 20). */
  async listBackfills(ref: string): Promise<IBackfill[]> {
    const answer = await this.request<{ backfills: IBackfill[] }>('GET', `jobs/${encodeURIComponent(ref)}/backfill`);
    return answer.backfills;
  }

  getBackfill(id: string): Promise<IBackfill> {
    return this.request('GET', `backfills/${encodeURIComponent(id)}`);
  }

  cancelBackfill(id: string): Promise<IBackfill> {
    return this.request('POST', `backfills/${encodeURIComponent(id)}/cancel`);
  }

  pipeline(ref: string): Promise<IPipeline> {
    return this.request('GET', `jobs/${encodeURIComponent(ref)}/pipeline`);
  }

  async jobParameters(ref: string): Promise<IParameter[]> {
    const answer = await this.request<{ parameters: IParameter[] }>('GET', `jobs/${encodeURIComponent(ref)}/parameters`);
    return answer.parameters;
  }

  pause(ref: string): Promise<IJob> {
    return this.request('POST', `jobs/${encodeURIComponent(ref)}/pause`);
  }

  resume(ref: string): Promise<IJob> {
    return this.request('POST', `jobs/${encodeURIComponent(ref)}/resume`);
  }

  async listRuns(
    ref: string,
    options: { limit?: number; cursor?: string | null } = {}
  ): Promise<IPage<IRun>> {
    const page = await this.request<IRunPage>(
      'GET',
      `jobs/${encodeURIComponent(ref)}/runs`,
      { query: { limit: options.limit ?? 20, cursor: options.cursor } }
    );
    return { items: page.runs, cursor: page.cursor };
  }

  /** The metrics of the job's ended runs (`GET /jobs/{id}/metrics`): per metric its
   * newest *limit* points, oldest first, and their summary. */
  metrics(ref: string, options: { metric?: string; limit?: number } = {}): Promise<IMetrics> {
    return this.request('GET', `jobs/${encodeURIComponent(ref)}/metrics`, {
      query: { metric: options.metric, limit: options.limit ?? 30 }
    });
  }

  /** The notification outbox, newest first: of job *job*, else of every job the caller
   * may read. */
  notifications(options: { job?: string | null; status?: string | null; limit?: number; cursor?: string | null } = {}): Promise<INotifications> {
    return this.request('GET', 'notifications', {
      query: { job: options.job, status: options.status, limit: options.limit ?? 50, cursor: options.cursor }
    });
  }

  getRun(id: string): Promise<IRun> {
    return this.request('GET', `runs/${encodeURIComponent(id)}`);
  }

  cancelRun(id: string): Promise<IRun> {
    return this.request('POST', `runs/${encodeURIComponent(id)}/cancel`);
  }

  preview(schedule: string, tz?: string | null, count = 5): Promise<IPreview> {
    return this.request('GET', 'preview', { query: { schedule, tz, count } });
  }

  /** The job options schema (`hermes_cron_ext/domain/options.py`). */
  async options(): Promise<IOption[]> {
    const answer = await this.request<{ options: IOption[] }>('GET', 'options');
    return answer.options;
  }

  /** The definitions file (YAML) of job *job*, else of every job of the caller's. */
  exportDefinitions(job?: string | null): Promise<string> {
    return this.request('GET', 'export', { query: { job }, raw: true });
  }

  /** Apply a definitions file: the plan, carried out unless *dry_run*. */
  applyDefinitions(body: { text: string; source: string; dry_run: boolean; prune: boolean; plan_id?: string }): Promise<IPlan> {
    return this.request('POST', 'apply', { body });
  }

  /** The job's revisions, newest first. */
  revisions(ref: string, options: { limit?: number; cursor?: string | null } = {}): Promise<IRevisions> {
    return this.request('GET', `jobs/${encodeURIComponent(ref)}/revisions`, {
      query: { limit: options.limit ?? 50, cursor: options.cursor }
    });
  }

  /** One revision, with the job's definition then (`spec`). */
  revision(ref: string, rev: number): Promise<IRevision & { spec?: { [key: string]: unknown } }> {
    return this.request('GET', `jobs/${encodeURIComponent(ref)}/revisions/${rev}`);
  }

  /** Change the job back to revision *rev* (a new revision). */
  revert(ref: string, rev: number): Promise<IJob & { reverted_to?: number }> {
    return this.request('POST', `jobs/${encodeURIComponent(ref)}/revert`, { body: { rev } });
  }
}

/** What applying a definitions file does (`POST /apply`). */
export interface IPlan {
  source: string;
  create: { name: string; fields: { [key: string]: unknown } }[];
  change: { name: string; id: string; changes: { field: string; before: unknown; after: unknown }[] }[];
  delete: { name: string; id: string }[];
  unchanged: string[];
  kept: string[];
  dry_run: boolean;
  applied: boolean;
  /** this plan's fingerprint: sent back, the server applies exactly this plan (409 else) */
  plan_id: string;
}

/** One revision of a job: who changed what, when, from where. */
export interface IRevision {
  rev: number;
  /** when: seconds since the epoch (or ISO 8601) */
  at: number | string;
  actor: string | null;
  origin: string | null;
  action: string;
  /** field: [before, after] */
  changes: { [field: string]: [unknown, unknown] } | null;
  detail?: { [key: string]: unknown } | null;
}

export interface IRevisions {
  job_id: string;
  job_name: string;
  revisions: IRevision[];
  cursor: string | null;
}
