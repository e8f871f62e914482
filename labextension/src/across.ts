/**
 * The "across runs" REST calls (issue 34): search, timeline, calendar, diff, and the
 * audit log (issue 33). Kept apart from api.ts: the shapes are the server's
 * (hermes_cron_ext/ops/across.py, ops/diff.py; see server/openapi.json).
 */
import { CronAPI } from './api';

export interface ISearchMatch {
  /** byte offset of the matching line in the run's log */
  offset: number;
  line: string;
  before: string[];
  after: string[];
}

export interface ISearchHit {
  run_id: string;
  job_id: string;
  job_name: string;
  status: string;
  trigger: string;
  fire_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  matches: ISearchMatch[];
  more: boolean;
}

export interface ISearchResult {
  query: string;
  hits: ISearchHit[];
  cursor: string | null;
}

export interface ITimelineRun {
  id: string;
  job_id: string;
  job_name: string;
  status: string;
  trigger: string;
  fire_at: string | null;
  scheduled_for: string | null;
  started_at: string | null;
  finished_at: string | null;
  reason: string | null;
  missed: boolean;
}

export interface ITimeline {
  from: string;
  to: string;
  now: string;
  runs: ITimelineRun[];
  slots: { job_id: string; job_name: string; at: string }[];
  cursor: string | null;
}

export interface ICalendarDay {
  day: string;
  total: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  skipped: number;
  running: number;
}

export interface ICalendar {
  job_id: string;
  job_name: string;
  tz: string;
  days: ICalendarDay[];
}

export interface IDiffOutput {
  change: 'added' | 'removed' | 'modified';
  mime: string;
  a: string | null;
  b: string | null;
}

export interface IDiffCell {
  index: number | null;
  index_a: number | null;
  cell_type: string;
  change: 'added' | 'removed' | 'modified';
  source: string;
  outputs: IDiffOutput[];
}

export interface IDiff {
  a: { [key: string]: any };
  b: { [key: string]: any };
  fields: { field: string; a: unknown; b: unknown }[];
  metrics: { name: string; unit: string | null; a: number | null; b: number | null }[];
  output: { same: boolean; unified: string; added: number; removed: number; truncated: boolean };
  notebook: null | { same: boolean; cells: IDiffCell[] };
}

export interface IAuditRecord {
  seq: number;
  at: number;
  actor: string | null;
  origin: string | null;
  action: string;
  job_id: string | null;
  run_id: string | null;
  detail: { [key: string]: unknown } | null;
  job: string | null;
}

export interface IAudit {
  records: IAuditRecord[];
  cursor: string | null;
  verify?: { ok: boolean; records: number; first_bad: number | null; problem: string | null };
}

type Query = { [key: string]: string | number | null | undefined };

export function search(api: CronAPI, query: Query): Promise<ISearchResult> {
  return api.request('GET', 'search', { query });
}

export function timeline(api: CronAPI, query: Query): Promise<ITimeline> {
  return api.request('GET', 'timeline', { query });
}

export function calendar(api: CronAPI, ref: string, days = 90): Promise<ICalendar> {
  return api.request('GET', `jobs/${encodeURIComponent(ref)}/calendar`, { query: { days } });
}

export function diff(api: CronAPI, a: string, b: string): Promise<IDiff> {
  return api.request('GET', 'diff', { query: { a, b } });
}

export function audit(api: CronAPI, query: Query): Promise<IAudit> {
  return api.request('GET', 'audit', { query });
}

/** The tone a run status is drawn in (the badges' colours). */
export function toneOf(status: string, missed = false): string {
  if (status === 'succeeded') {
    return 'ok';
  }
  if (status === 'failed' || status === 'timed_out' || status === 'lost') {
    return 'bad';
  }
  if (status === 'running' || status === 'queued') {
    return 'run';
  }
  return missed ? 'warn' : 'muted';
}

/** What the server's search tokenizer makes of a query: each term's tokens, and
 * whether it is a prefix (`foo*`). Used to highlight, never to match. */
export function queryTerms(q: string): { token: string; prefix: boolean }[] {
  const out: { token: string; prefix: boolean }[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(q))) {
    const text = m[1] ?? m[2] ?? '';
    const prefix = !m[1] && text.endsWith('*');
    const toks = text.match(/[\p{L}\p{N}]+/gu) ?? [];
    toks.forEach((t, i) => out.push({ token: t.toLowerCase(), prefix: prefix && i === toks.length - 1 }));
  }
  return out;
}

/** *line* with the tokens of *terms* wrapped in `<mark>`. */
export function highlighted(line: string, terms: { token: string; prefix: boolean }[]): (Node | string)[] {
  const parts: (Node | string)[] = [];
  const re = /[\p{L}\p{N}]+/gu;
  let last = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line))) {
    const word = m[0].toLowerCase();
    if (terms.some(t => (t.prefix ? word.startsWith(t.token) : word === t.token))) {
      parts.push(line.slice(last, m.index));
      const mark = document.createElement('mark');
      mark.className = 'jp-HermesCron-mark';
      mark.textContent = m[0];
      parts.push(mark);
      last = m.index + m[0].length;
    }
  }
  parts.push(line.slice(last));
  return parts;
}
