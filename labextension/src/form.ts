/**
 * The create / edit form: every message comes from the server's validation
 * (`{"error": {"code", "message", "field"}}`), shown next to the field it names;
 * the schedule gets a live preview of its next fire times from `/preview`.
 */
import { PageConfig } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { CronAPI, CronError, IJob, IOption } from './api';
import { afterText, describeSchedule, formatTime } from './format';

export interface IFormPreset {
  kind?: 'command' | 'python' | 'notebook';
  command?: string;
  name?: string;
  schedule?: string;
}

export interface IFormOptions {
  api: CronAPI;
  job?: IJob | null;
  preset?: IFormPreset;
  /** Pick a file with Lab's file dialog; resolves to a path relative to the server root. */
  browse?: (kind: 'python' | 'notebook') => Promise<string | null>;
  onSaved: (job: IJob) => void;
  onCancel: () => void;
}

const SCHEDULE_CHIPS: [string, string][] = [
  ['*/5 * * * *', 'every 5 min'],
  ['@hourly', 'hourly'],
  ['0 2 * * *', 'daily 02:00'],
  ['0 9 * * 1-5', 'weekdays 09:00'],
  ['@every 30s', 'every 30 s']
];

/**
 * Where jobs start: the Lab root directory when it is absolute. Lab shortens a
 * root under the home directory to "~/...", which a process cannot chdir to; a
 * job with no cwd starts in the home directory, so paths are made relative to it.
 */
export function jobLocation(path: string): { cwd: string | null; path: string } {
  const root = PageConfig.getOption('serverRoot') || '';
  if (root && !root.startsWith('~')) {
    return { cwd: root, path };
  }
  const below = root.replace(/^~\/?/, '');
  return { cwd: null, path: below ? `${below.replace(/\/$/, '')}/${path}` : path };
}

function defaultCwd(): string {
  return jobLocation('').cwd ?? '';
}

function slug(path: string): string {
  const base = path.split('/').pop() ?? path;
  return (
    base
      .replace(/\.[^.]+$/, '')
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 90) || 'job'
  );
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: { [key: string]: string } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      node.className = v;
    } else {
      node.setAttribute(k, v);
    }
  }
  node.append(...children);
  return node;
}

export class JobForm extends Widget {
  private _fields: { [name: string]: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement } =
    {};
  private _rows: { [name: string]: HTMLElement } = {};
  /** Options the form does not lay out itself, built from the server's schema. */
  private _more: IOption[] = [];
  private _errors: { [name: string]: HTMLElement } = {};
  private _formError: HTMLDivElement;
  private _preview: HTMLDivElement;
  private _previewSeq = 0;
  private _previewTimer: number | null = null;
  private _save: HTMLButtonElement;
  private _pythonMode: HTMLSelectElement;
  private _job: IJob | null;

  constructor(private readonly options: IFormOptions) {
    super();
    this._job = options.job ?? null;
    this.addClass('jp-HermesCron-form');
    this.id = `hermes-cron-form-${this._job ? this._job.id : 'new'}`;
    const job = this._job;
    const preset = options.preset ?? {};

    const form = el('form', { class: 'jp-HermesCron-formBody', novalidate: '' });
    form.onsubmit = ev => {
      ev.preventDefault();
      void this.submit();
    };
    const title = el('h2', {}, job ? `Edit cron job “${job.name}”` : 'New cron job');
    this._formError = el('div', { class: 'jp-HermesCron-formError', 'data-role': 'form-error' });
    this._formError.hidden = true;

    // -- what --------------------------------------------------------------------
    const name = this._input(
      'name',
      'text',
      job?.name ?? preset.name ?? (preset.command && preset.kind !== 'command' ? slug(preset.command) : ''),
      'nightly-etl'
    );
    const kind = this._select('kind', [
      ['command', 'Shell command'],
      ['python', 'Python'],
      ['notebook', 'Notebook']
    ]);
    kind.value = job?.kind ?? preset.kind ?? 'command';
    this._pythonMode = el('select', { class: 'jp-mod-styled', 'data-field': 'python-mode' });
    for (const [v, label] of [
      ['file', 'Script file'],
      ['code', 'Inline code']
    ]) {
      this._pythonMode.appendChild(el('option', { value: v }, label));
    }
    this._pythonMode.value = job?.kind === 'python' && job.code ? 'code' : 'file';

    const presetLoc = !job && preset.command && preset.kind !== 'command' ? jobLocation(preset.command) : null;
    const commandText =
      job && job.command !== null
        ? Array.isArray(job.command)
          ? job.command.join(' ')
          : job.command
        : presetLoc?.path ?? preset.command ?? '';
    const command = this._input('command', 'text', commandText, 'python etl.py --full');
    command.classList.add('jp-HermesCron-mono');
    const browse = el('button', { type: 'button', class: 'jp-mod-styled jp-HermesCron-browse' }, 'Browse…');
    browse.onclick = async () => {
      const k = kind.value === 'notebook' ? 'notebook' : 'python';
      const picked = await this.options.browse?.(k);
      if (picked) {
        const loc = jobLocation(picked);
        command.value = loc.path;
        if (loc.cwd && !this._fields.cwd.value) {
          this._fields.cwd.value = loc.cwd;
        }
        if (!name.value) {
          name.value = slug(picked);
        }
      }
    };
    if (!this.options.browse) {
      browse.hidden = true;
    }
    const code = this._textarea('code', job?.code ?? '', 'print("hello from cron")');
    code.classList.add('jp-HermesCron-mono');
    const kernel = this._input('kernel', 'text', job?.kernel ?? '', 'python3 (default)');
    const params = this._textarea(
      'parameters',
      job && Object.keys(job.parameters ?? {}).length ? JSON.stringify(job.parameters, null, 2) : '',
      '{"date": "today"}'
    );
    params.classList.add('jp-HermesCron-mono');

    // -- when --------------------------------------------------------------------
    const schedule = this._input('schedule', 'text', job?.schedule ?? preset.schedule ?? '', '0 2 * * * (or none: runs after)');
    schedule.classList.add('jp-HermesCron-mono');
    const chips = el('div', { class: 'jp-HermesCron-chips' });
    for (const [value, label] of SCHEDULE_CHIPS) {
      const chip = el('button', { type: 'button', class: 'jp-HermesCron-chip', title: value }, label);
      chip.onclick = () => {
        schedule.value = value;
        this._schedulePreview(0);
      };
      chips.appendChild(chip);
    }
    const tz = this._input('timezone', 'text', job?.timezone ?? '', "the server's zone");
    const zones = el('datalist', { id: `${this.id}-zones` });
    try {
      const all: string[] = (Intl as any).supportedValuesOf?.('timeZone') ?? [];
      for (const z of all) {
        zones.appendChild(el('option', { value: z }));
      }
    } catch {
      /* old browser: free text */
    }
    tz.setAttribute('list', zones.id);
    this._preview = el('div', { class: 'jp-HermesCron-preview', 'data-role': 'preview' });
    // pipelines: the jobs whose runs trigger this one (JOB, or JOB:failure / JOB:completion)
    const after = this._input('after', 'text', job ? afterText(job).replace(/^after /, '') : '', 'extract, load:failure');
    after.title = 'Run after these jobs\' runs end (success, or :failure / :completion); with several, after all of them for the same slot. With no schedule, the job runs only after them.';

    // -- where, how --------------------------------------------------------------
    const cwd = this._input('cwd', 'text', job ? job.cwd ?? '' : defaultCwd(), 'home directory');
    cwd.classList.add('jp-HermesCron-mono');
    const env = this._textarea(
      'env',
      job
        ? Object.entries(job.env ?? {})
            .filter(([k]) => !(job.secret_env ?? []).includes(k))
            .map(([k, v]) => `${k}=${v}`)
            .join('\n')
        : '',
      'KEY=value, one per line'
    );
    env.classList.add('jp-HermesCron-mono');
    const description = this._input('description', 'text', job?.description ?? '', 'what this job is for');
    const p = job?.policy;
    const overlap = this._select('overlap', [
      ['forbid', 'forbid: skip the slot (recorded)'],
      ['allow', 'allow: run side by side'],
      ['replace', 'replace: stop the running one'],
      ['queue', 'queue: at most one waiting']
    ]);
    overlap.value = p?.overlap ?? 'forbid';
    const misfire = this._select('misfire', [
      ['latest', 'latest: run once, as catch-up'],
      ['skip', 'skip: record and wait'],
      ['all', 'all: run every missed slot (capped)']
    ]);
    misfire.value = p?.misfire ?? 'latest';
    const retries = this._input('retries', 'number', String(p?.retries ?? 0), '0');
    retries.min = '0';
    const timeout = this._input(
      'timeout',
      'text',
      p?.timeout !== null && p?.timeout !== undefined ? `${p.timeout}s` : '',
      'none (e.g. 10m, 1h)'
    );
    const maxFailures = this._input('max_failures', 'number', String(p?.max_failures ?? 5), '5');
    maxFailures.min = '0';
    const enabled = el('input', { type: 'checkbox', 'data-field': 'enabled' });
    enabled.checked = job ? job.enabled : true;
    this._fields.enabled = enabled;

    // -- layout ------------------------------------------------------------------
    const kindRow = this._row('kind', 'Kind', el('div', { class: 'jp-HermesCron-inline' }, kind, this._pythonMode));
    form.append(
      title,
      this._formError,
      this._row('name', 'Name', name),
      kindRow,
      this._row('command', 'Command', el('div', { class: 'jp-HermesCron-inline' }, command, browse)),
      this._row('code', 'Code', code),
      this._row('kernel', 'Kernel', kernel),
      this._row('parameters', 'Parameters (JSON)', params),
      this._row('schedule', 'Schedule', schedule, chips),
      this._row('timezone', 'Time zone', tz, zones),
      this._preview,
      this._row('after', 'Runs after', after),
      this._row('cwd', 'Working directory', cwd),
      this._row('env', 'Environment', env),
      this._row('description', 'Description', description),
      el(
        'details',
        { class: 'jp-HermesCron-policies', ...(job ? { open: '' } : {}) },
        el('summary', {}, 'Policies'),
        this._row('overlap', 'When still running', overlap),
        this._row('misfire', 'Missed runs', misfire),
        this._row('retries', 'Retries', retries),
        this._row('timeout', 'Timeout', timeout),
        this._row('max_failures', 'Pause after failures', maxFailures),
        this._moreBox
      ),
      this._row('enabled', 'Enabled', el('label', { class: 'jp-HermesCron-check' }, enabled, ' fire on its schedule and after the jobs it runs after'))
    );

    this._save = el('button', { type: 'submit', class: 'jp-mod-styled jp-mod-accept', 'data-role': 'save' }, job ? 'Save' : 'Create');
    const cancel = el('button', { type: 'button', class: 'jp-mod-styled jp-mod-reject' }, 'Cancel');
    cancel.onclick = () => this.options.onCancel();
    form.append(el('div', { class: 'jp-HermesCron-formButtons' }, cancel, this._save));
    this.node.appendChild(form);

    const update = () => this._updateKind();
    kind.addEventListener('change', update);
    this._pythonMode.addEventListener('change', update);
    schedule.addEventListener('input', () => this._schedulePreview());
    after.addEventListener('input', () => this._schedulePreview());
    tz.addEventListener('input', () => this._schedulePreview());
    tz.addEventListener('change', () => this._schedulePreview(0));
    this._updateKind();
    this._schedulePreview(0);
    void this._moreOptions();
  }

  private _moreBox = el('div', { class: 'jp-HermesCron-more', 'data-role': 'more-options' });

  /** A row for every option the schema marks `form` that this form does not lay out:
   * a new option appears here with no change to the panel. */
  private async _moreOptions(): Promise<void> {
    let all: IOption[];
    try {
      all = await this.options.api.options();
    } catch {
      return; // an older server: the laid-out fields are all there is
    }
    if (this.isDisposed) {
      return;
    }
    const current = (name: string, policy: boolean): unknown => {
      const job = this._job as unknown as { [key: string]: unknown } | null;
      if (!job) {
        return undefined;
      }
      return policy ? (job.policy as { [key: string]: unknown })[name] : job[name];
    };
    for (const option of all) {
      if (!option.form || option.name in this._fields || option.name in this._rows) {
        continue;
      }
      this._more.push(option);
      const value = current(option.name, option.policy);
      const label = option.name.replace(/_/g, ' ').replace(/^./, c => c.toUpperCase());
      let control: HTMLInputElement | HTMLSelectElement;
      if (option.schema.type === 'boolean') {
        control = el('input', { type: 'checkbox', 'data-field': option.name, name: option.name });
        (control as HTMLInputElement).checked = (value ?? option.default) === true;
        this._fields[option.name] = control;
      } else if (option.schema.enum) {
        control = this._select(option.name, option.schema.enum.map(v => [v, v]));
        control.value = String(value ?? option.default ?? '');
      } else {
        const shown = value === null || value === undefined ? '' : String(value);
        const hint = option.default === null || option.default === undefined ? 'none' : String(option.default);
        control = this._input(option.name, 'text', shown, hint);
      }
      control.title = option.help;
      this._moreBox.append(this._row(option.name, label, control));
    }
  }

  /** The value of a schema-built field for the body, or undefined to leave it out. */
  private _moreValue(option: IOption): unknown {
    const field = this._fields[option.name];
    if (option.schema.type === 'boolean') {
      return (field as HTMLInputElement).checked;
    }
    const text = field.value.trim();
    const types = ([] as string[]).concat(option.schema.type ?? []);
    if (text === '') {
      return this._job && types.includes('null') ? null : undefined;
    }
    if ((types.includes('number') || types.includes('integer')) && Number.isFinite(Number(text))) {
      return Number(text);
    }
    return text; // durations such as "10m" are read by the server
  }

  get job(): IJob | null {
    return this._job;
  }

  protected onAfterAttach(): void {
    window.requestAnimationFrame(() => {
      const first = this._job ? this._fields.schedule : this._fields.name;
      (first as HTMLInputElement | undefined)?.focus();
    });
  }

  dispose(): void {
    if (this._previewTimer !== null) {
      window.clearTimeout(this._previewTimer);
    }
    super.dispose();
  }

  private _input(field: string, type: string, value: string, placeholder = ''): HTMLInputElement {
    const input = el('input', { type, class: 'jp-mod-styled', 'data-field': field, name: field });
    input.value = value;
    input.placeholder = placeholder;
    input.addEventListener('input', () => this._clearError(field));
    this._fields[field] = input;
    return input;
  }

  private _textarea(field: string, value: string, placeholder = ''): HTMLTextAreaElement {
    const area = el('textarea', { class: 'jp-mod-styled', 'data-field': field, name: field, rows: '4' });
    area.value = value;
    area.placeholder = placeholder;
    area.addEventListener('input', () => this._clearError(field));
    this._fields[field] = area;
    return area;
  }

  private _select(field: string, options: [string, string][]): HTMLSelectElement {
    const select = el('select', { class: 'jp-mod-styled', 'data-field': field, name: field });
    for (const [value, label] of options) {
      select.appendChild(el('option', { value }, label));
    }
    select.addEventListener('change', () => this._clearError(field));
    this._fields[field] = select;
    return select;
  }

  private _row(field: string, label: string, ...control: Node[]): HTMLElement {
    const error = el('div', { class: 'jp-HermesCron-fieldError', 'data-error-for': field });
    error.hidden = true;
    this._errors[field] = error;
    const row = el(
      'div',
      { class: 'jp-HermesCron-row', 'data-row': field },
      el('label', { class: 'jp-HermesCron-label' }, label),
      el('div', { class: 'jp-HermesCron-control' }, ...control, error)
    );
    this._rows[field] = row;
    return row;
  }

  private _updateKind(): void {
    const kind = this._fields.kind.value;
    const inline = kind === 'python' && this._pythonMode.value === 'code';
    this._pythonMode.hidden = kind !== 'python';
    this._rows.command.hidden = inline;
    this._rows.code.hidden = !inline;
    this._rows.kernel.hidden = kind !== 'notebook';
    this._rows.parameters.hidden = kind !== 'notebook';
    const command = this._fields.command as HTMLInputElement;
    const label = this._rows.command.querySelector('label')!;
    const browse = this._rows.command.querySelector('.jp-HermesCron-browse') as HTMLElement;
    if (kind === 'command') {
      label.textContent = 'Command';
      command.placeholder = 'python etl.py --full';
      browse.hidden = true;
    } else if (kind === 'python') {
      label.textContent = 'Script';
      command.placeholder = 'scripts/etl.py';
      browse.hidden = !this.options.browse;
    } else {
      label.textContent = 'Notebook';
      command.placeholder = 'reports/daily.ipynb';
      browse.hidden = !this.options.browse;
    }
  }

  private _schedulePreview(delay = 300): void {
    if (this._previewTimer !== null) {
      window.clearTimeout(this._previewTimer);
    }
    this._previewTimer = window.setTimeout(() => {
      this._previewTimer = null;
      void this._runPreview();
    }, delay);
  }

  private async _runPreview(): Promise<void> {
    const schedule = this._fields.schedule.value.trim();
    const tz = this._fields.timezone.value.trim();
    const seq = ++this._previewSeq;
    if (!schedule) {
      const ups = this._after().map(a => a.job);
      this._preview.dataset.state = ups.length ? 'after' : 'empty';
      this._preview.textContent = ups.length
        ? `No schedule of its own: it runs only after ${ups.join(', ')}.`
        : 'Type a cron expression (e.g. 0 2 * * *), an alias (@daily), @every 30m or @at 2026-01-01T09:00; or leave it empty and name the jobs it runs after.';
      this._setError('schedule', null);
      return;
    }
    this._preview.dataset.state = 'loading';
    try {
      const result = await this.options.api.preview(schedule, tz || null, 5);
      if (seq !== this._previewSeq || this.isDisposed) {
        return;
      }
      this._preview.dataset.state = 'ok';
      this._preview.textContent = '';
      this._setError('schedule', null);
      if (tz) {
        this._setError('timezone', null);
      }
      const words = result.description || describeSchedule(result.schedule);
      this._preview.append(
        el('div', { class: 'jp-HermesCron-previewWords' }, `${words} (${result.timezone})`)
      );
      const list = el('ol', { class: 'jp-HermesCron-previewTimes' });
      for (const t of result.next) {
        list.appendChild(el('li', { title: t }, formatTime(t)));
      }
      if (!result.next.length) {
        list.appendChild(el('li', {}, 'never fires again'));
      }
      this._preview.append(el('div', { class: 'jp-HermesCron-previewHead' }, 'Next fire times (your local time):'), list);
    } catch (err) {
      if (seq !== this._previewSeq || this.isDisposed) {
        return;
      }
      this._preview.dataset.state = 'error';
      this._preview.textContent = '';
      if (err instanceof CronError) {
        const field = err.field === 'tz' ? 'timezone' : err.field ?? 'schedule';
        this._setError(field in this._fields ? field : 'schedule', err.message);
      } else {
        this._preview.textContent = String(err);
      }
    }
  }

  private _clearError(field: string): void {
    this._setError(field, null);
  }

  private _setError(field: string, message: string | null): void {
    const box = this._errors[field];
    const input = this._fields[field];
    if (box) {
      box.hidden = !message;
      box.textContent = message ?? '';
    }
    input?.classList.toggle('jp-mod-error', !!message);
    if (message) {
      this._rows[field]?.closest('details')?.setAttribute('open', '');
    }
  }

  /** "Runs after" as `after` entries: `extract, load:failure` -> [{job, on}]. */
  private _after(): { job: string; on: string }[] {
    return this._fields.after.value
      .split(',')
      .map(t => t.trim())
      .filter(t => t)
      .map(t => {
        const cut = t.lastIndexOf(':');
        const on = cut > 0 ? t.slice(cut + 1) : '';
        return ['success', 'failure', 'completion'].includes(on) ? { job: t.slice(0, cut), on } : { job: t, on: 'success' };
      });
  }

  /** The JSON body for POST (create) or PATCH (edit). Local parse errors are thrown as CronError. */
  body(): { [key: string]: unknown } {
    const f = this._fields;
    const value = (name: string) => f[name].value.trim();
    const kind = value('kind');
    const out: { [key: string]: unknown } = {
      name: value('name'),
      kind,
      // none: it runs only after the jobs in "Runs after" (the server says when that is missing)
      schedule: value('schedule') || null,
      description: value('description'),
      enabled: (f.enabled as HTMLInputElement).checked,
      cwd: value('cwd') || null
    };
    if (value('timezone') || this._job) {
      out.timezone = value('timezone') || this._job?.timezone;
    }
    if (kind === 'python' && this._pythonMode.value === 'code') {
      out.code = f.code.value;
      out.command = null;
    } else {
      out.command = value('command');
      out.code = null;
    }
    if (kind === 'notebook') {
      out.kernel = value('kernel') || null;
      const raw = value('parameters');
      if (raw) {
        try {
          out.parameters = JSON.parse(raw);
        } catch (e) {
          throw new CronError(400, 'invalid', `parameters: not valid JSON (${e})`, 'parameters');
        }
      } else {
        out.parameters = {};
      }
    }
    const env: { [key: string]: string } = {};
    for (const line of f.env.value.split('\n')) {
      const t = line.trim();
      if (!t || t.startsWith('#')) {
        continue;
      }
      const eq = t.indexOf('=');
      if (eq <= 0) {
        throw new CronError(400, 'invalid', `env: "${t}" is not KEY=value`, 'env');
      }
      env[t.slice(0, eq).trim()] = t.slice(eq + 1);
    }
    out.env = env;
    const num = (name: string) => {
      const v = value(name);
      if (v === '') {
        return undefined;
      }
      const n = Number(v);
      return Number.isFinite(n) ? n : v;
    };
    const policy: { [key: string]: unknown } = {
      overlap: value('overlap'),
      misfire: value('misfire')
    };
    const retries = num('retries');
    if (retries !== undefined) {
      policy.retries = retries;
    }
    const failures = num('max_failures');
    if (failures !== undefined) {
      policy.max_failures = failures;
    }
    const timeout = value('timeout');
    policy.timeout = timeout === '' ? null : Number.isFinite(Number(timeout)) ? Number(timeout) : timeout;
    for (const option of this._more) {
      const v = this._moreValue(option);
      if (v !== undefined) {
        (option.policy ? policy : out)[option.name] = v;
      }
    }
    out.policy = policy;
    const after = this._after();
    if (after.length || this._job) {
      out.after = after; // an edit that empties it takes the job out of its pipeline
    }
    if (!this._job) {
      // not for PATCH: unknown to the server there, and nulls mean "unset" only on create
      for (const k of ['cwd', 'code', 'command'] as const) {
        if (out[k] === null) {
          delete out[k];
        }
      }
      if (!out.description) {
        delete out.description;
      }
    }
    return out;
  }

  async submit(): Promise<void> {
    for (const field of Object.keys(this._errors)) {
      this._setError(field, null);
    }
    this._formError.hidden = true;
    this._save.disabled = true;
    try {
      const body = this.body();
      const saved = this._job
        ? await this.options.api.updateJob(this._job.id, body)
        : await this.options.api.createJob(body);
      this._job = saved;
      this.options.onSaved(saved);
    } catch (err) {
      const e = err instanceof CronError ? err : new CronError(0, 'client', String(err));
      let field = e.field;
      if (field === 'at') {
        field = 'schedule';
      }
      if (field === 'code' && this._rows.code.hidden) {
        field = 'command';
      }
      if (field && field in this._errors && !this._rows[field].hidden) {
        this._setError(field, e.message);
        (this._fields[field] as HTMLElement | undefined)?.focus();
      }
      this._formError.hidden = false;
      this._formError.textContent = e.message;
    } finally {
      this._save.disabled = false;
    }
  }
}
