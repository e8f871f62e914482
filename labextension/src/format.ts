/** Words and numbers for people: schedules, countdowns, durations, times. */
import cronstrue from 'cronstrue';

const ALIASES: { [alias: string]: string } = {
  '@hourly': '0 * * * *',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@weekly': '0 0 * * 0',
  '@monthly': '0 0 1 * *',
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *'
};

/** A schedule in plain words (the server's `/preview` description is used where it is at hand). */
export function describeSchedule(schedule: string): string {
  const text = schedule.trim();
  const lower = text.toLowerCase();
  if (lower.startsWith('@every')) {
    return `Every ${text.slice(6).trim()}`;
  }
  if (lower.startsWith('@at')) {
    const at = new Date(text.slice(3).trim());
    return isNaN(at.getTime()) ? text : `Once, at ${formatTime(at.toISOString())}`;
  }
  if (lower === '@reboot') {
    return 'When a ticker starts';
  }
  const expr = ALIASES[lower] ?? text;
  try {
    return cronstrue.toString(expr, { use24HourTimeFormat: true, verbose: false });
  } catch {
    return text;
  }
}

/** `after extract, load` (`alert:failure` as written on a command line): the jobs whose
 * runs trigger a job; '' when none. */
export function afterText(job: { after?: { job: string; name?: string; on: string }[] }): string {
  const ups = (job.after ?? []).map(a => (a.name ?? a.job) + (a.on === 'success' ? '' : `:${a.on}`));
  return ups.length ? `after ${ups.join(', ')}` : '';
}

/** What a job's schedule shows: the schedule, or `after extract, load` for a job with none of
 * its own (it runs only after its upstreams). */
export function scheduleText(job: { schedule: string | null; after?: { job: string; name?: string; on: string }[] }): string {
  return job.schedule || afterText(job) || '-';
}

function parts(seconds: number, max = 2): string {
  const units: [string, number][] = [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
    ['s', 1]
  ];
  const out: string[] = [];
  let rest = Math.floor(seconds);
  for (const [name, size] of units) {
    if (rest >= size || (name === 's' && out.length === 0)) {
      const n = Math.floor(rest / size);
      rest -= n * size;
      out.push(`${n}${name}`);
      if (out.length >= max) {
        break;
      }
    } else if (out.length) {
      break;
    }
  }
  return out.join(' ');
}

/** "in 4m 12s", "due now", "3m overdue", or "" when there is no next run. */
export function countdown(iso: string | null, now = Date.now()): string {
  if (!iso) {
    return '';
  }
  const delta = (Date.parse(iso) - now) / 1000;
  if (delta > 0.5) {
    return `in ${parts(delta)}`;
  }
  if (delta > -5) {
    return 'due now';
  }
  return `${parts(-delta, 1)} overdue`;
}

/** "12s", "1m 05s", "2h 3m", "—" for nothing. */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '—';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)}s`;
  }
  return parts(seconds);
}

/** "5m ago", "2d ago". */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) {
    return '';
  }
  const delta = (now - Date.parse(iso)) / 1000;
  if (delta < 5) {
    return 'just now';
  }
  return `${parts(delta, 1)} ago`;
}

/** A local date and time, with the weekday when it is not today. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) {
    return '—';
  }
  const d = new Date(iso);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const time = d.toLocaleTimeString(undefined, {
    hour: '2-digit',
    minute: '2-digit',
    second: d.getSeconds() || d.getMilliseconds() ? '2-digit' : undefined,
    hour12: false
  });
  if (sameDay) {
    return `today ${time}`;
  }
  const date = d.toLocaleDateString(undefined, {
    weekday: 'short',
    year: d.getFullYear() === today.getFullYear() ? undefined : 'numeric',
    month: 'short',
    day: 'numeric'
  });
  return `${date} ${time}`;
}

export const STATUS_LABEL: { [status: string]: string } = {
  queued: 'Queued',
  running: 'Running',
  succeeded: 'Succeeded',
  failed: 'Failed',
  timed_out: 'Timed out',
  cancelled: 'Cancelled',
  lost: 'Lost',
  skipped: 'Skipped'
};

export function seconds(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return 'none';
  }
  return duration(value);
}

/** The badge of a run whose job's alert rules fired when it ended: its words (`ALERT`,
 * as `hermes-cron runs` says `ALERT rule`) and its tooltip (each fired rule with what was
 * seen, one per line: `rows < 10: rows = 5 < 10`); null when none fired. */
export function alertBadge(alerts: { rule: string; message: string }[] | null | undefined): { label: string; title: string } | null {
  if (!alerts || !alerts.length) {
    return null;
  }
  return {
    label: alerts.length > 1 ? `⚠ ALERT ×${alerts.length}` : '⚠ ALERT',
    title: alerts.map(a => (a.message ? `${a.rule}: ${a.message}` : a.rule)).join('\n')
  };
}
