/**
 * The REST client for `{base_url}api/cron/` (see hermes_cron_ext/server/openapi.json).
 *
 * Every request goes through JupyterLab's ServerConnection, so it carries the
 * same auth (token header or cookie + XSRF) as the rest of Lab.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export type RunStatus =
  | 'queued'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'cancelled'
  | 'lost'
  | 'skipped';

export type JobState = 'scheduled' | 'running' | 'paused' | 'blocked' | 'disabled';

export const ACTIVE: RunStatus[] = ['queued', 'running'];
export const FAILED: RunStatus[] = ['failed', 'timed_out', 'lost'];

export interface IPolicy {
  misfire: string;
  starting_deadline: number | null;
  overlap: string;
  retries: number;
  retry_delay: number;
  retry_max_delay: number;
  retry_on_timeout: boolean;
  timeout: number | null;
  kill_grace: number;
  max_failures: number;
  jitter: number;
  notify_url: string | null;
  ping_url: string | null;
  keep_runs: number | null;
  keep_failures: number | null;
}

export interface ILastRun {
  id: string;
  status: RunStatus;
  exit_code?: number | null;
  started_at?: string | null;
  finished_at?: string | null;
  scheduled_for?: string | null;
  [key: string]: unknown;
}

export interface IJob {
  id: string;
  name: string;
  kind: 'command' | 'python' | 'notebook';
  /** null: no schedule of its own; it runs only after the jobs in `after`. */
  schedule: string | null;
  timezone: string;
  command: string | string[] | null;
  code: string | null;
  interpreter: string | null;
  cwd: string | null;
  env: { [key: string]: string };
  secret_env: string[];
  parameters: { [key: string]: unknown };
  kernel: string | null;
  description: string;
  /** The jobs whose runs trigger this one (pipelines), with their names. */
  after?: IAfter[];
  state: JobState;
  state_reason: string | null;
  enabled: boolean;
  next_run_at: string | null;
  last_run: ILastRun | null;
  consecutive_failures: number;
  policy: IPolicy;
  created_at: string;
  updated_at: string;
  version: number;
  warning?: string;
}

/** One upstream of a job: its id, its name (as read) and when its run triggers. */
export interface IAfter {
  job: string;
  name?: string;
  on: 'success' | 'failure' | 'completion';
}

export interface IRun {
  id: string;
  job_id: string;
  job_name: string | null;
  status: RunStatus;
  trigger: string;
  attempt: number;
  scheduled_for: string | null;
  queued_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  duration: number | null;
  exit_code: number | null;
  heartbeat_at: string | null;
  pid: number | null;
  host: string | null;
  phase: string | null;
  progress: number | null;
  reason: string | null;
  output_bytes: number;
  /** Parameters given when the run was asked for (over the job's own). */
  parameters?: { [key: string]: unknown } | null;
  backfill_id?: string | null;
  /** The slot the run stands for (a backfill's past slot, a pipeline's upstream slot). */
  logical_time?: string | null;
  /** The run(s) whose end triggered this one (pipelines), in `GET /runs/{id}`. */
  upstream?: { job_id: string; job?: string; run_id: string; status: string; exit_code: number | null }[] | null;
}

/** The pipeline a job is part of (`GET /jobs/{id}/pipeline`). */
export interface IPipeline {
  job: string;
  /** `note`: why the runs of its upstreams may not trigger a job (disabled; a fan-in's rule). */
  nodes: { id: string; name: string; state: string; last_status: RunStatus | null; level: number; note?: string | null }[];
  edges: { from: string; to: string; on: string }[];
}

/** A backfill and its progress (`POST /jobs/{id}/backfill`, `GET /backfills/{id}`). */
export interface IBackfill {
  id: string | null;
  job_id: string;
  state: 'running' | 'done' | 'cancelled' | 'dry-run';
  slots: number;
  max_parallel: number;
  /** Runs by status (not in a dry run). */
  runs?: { [status: string]: number };
  /** A dry run's slots, ISO 8601. */
  next?: string[];
  from?: string | null;
  to?: string | null;
  warning?: string;
}

/** What a run of a job may be given (a notebook's parameters cell, typed). */
export interface IParameter {
  name: string;
  type: 'int' | 'float' | 'bool' | 'str' | 'list' | 'dict' | 'date' | 'any';
  default: unknown;
}

export interface ITicker {
  id: string;
  kind: string;
  host: string;
  pid: number;
  started_at: string;
  heartbeat_at: string;
  last_tick_at: string | null;
  alive: boolean;
}

export interface IStatus {
  version: string;
  store: string;
  tickers: ITicker[];
  alive: number;
  ticking: boolean;
  jobs_by_state: { [state: string]: number };
  server_ticker: boolean;
  warning: string | null;
}

export interface IPreview {
  schedule: string;
  timezone: string;
  description: string;
  next: string[];
}

export interface ICronEvent {
  seq: number;
  at: string;
  type: string;
  job_id: string | null;
  run_id: string | null;
  data: { [key: string]: unknown };
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
    options: { query?: { [key: string]: string | number | null | undefined }; body?: unknown } = {}
  ): Promise<T> {
    const init: RequestInit = { method };
    if (options.body !== undefined) {
      init.body = JSON.stringify(options.body);
      init.headers = { 'Content-Type': 'application/json' };
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

  status(): Promise<IStatus> {
    return this.request('GET', 'status');
  }

  async listJobs(options: { q?: string; limit?: number; cursor?: string | null } = {}): Promise<
    IPage<IJob>
  > {
    const page = await this.request<{ jobs: IJob[]; cursor: string | null }>('GET', 'jobs', {
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
    const page = await this.request<{ runs: IRun[]; cursor: string | null }>(
      'GET',
      `jobs/${encodeURIComponent(ref)}/runs`,
      { query: { limit: options.limit ?? 20, cursor: options.cursor } }
    );
    return { items: page.runs, cursor: page.cursor };
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
}

/** One job option, as the server declares it (`GET /api/cron/options`). */
export interface IOption {
  name: string;
  schema: { type?: string | string[]; enum?: string[] };
  help: string;
  permission: 'write' | 'execute';
  default: unknown;
  policy: boolean;
  flag: string | null;
  form: boolean;
}
