/**
 * The create / edit form: every message comes from the server's validation
 * (`{"error": {"code", "message", "field"}}`), shown next to the field it names;
 * the schedule gets a live preview of its next fire times from `/preview`.
 *
 * What each field is comes from the job options schema (`OPTIONS`, generated from
 * hermes_cron_ext/domain/options.py into generated.ts): its label, help, type,
 * range, choices and default. This file only says where fields go and how the
 * ones with a syntax of their own (command, env, parameters, after) are typed.
 */
import { PageConfig } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import { CronAPI, CronError, IJob, IOption, OPTIONS } from './api';
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

/** The job options by name, as the server declares them. */
const OPTION: { [name: string]: IOption } = Object.fromEntries(OPTIONS.map(o => [o.name, o]));

/**
 * The policies laid out first in the "Policies" box, in this order. Every other option
 * the schema marks `form` that the form does not lay out itself follows them (under
 * `more-options`), built the same way: a new option needs no change here.
 */
const POLICY_ROWS = ['overlap', 'misfire', 'retries', 'timeout', 'max_failures'];

/** What an empty duration or size field takes, besides its default. */
const UNIT_EXAMPLES: { [unit: string]: string } = {
  seconds: 'seconds, or 10m, 1h',
  bytes: 'e.g. 500k, 50M'
};

/** The events a job's notifications may be sent for (`notify_on`'s items). */
const NOTIFY_KINDS: string[] = OPTION.notify_on.schema.items?.enum?.map(String) ?? [];

const APPRISE_WIKI = 'https://github.com/caronc/apprise/wiki';

/** When an upstream's run triggers a job (`after`'s `on`). */
const UPSTREAM_ON: string[] = OPTION.after.schema.items?.properties?.on?.enum?.map(String) ?? [];

function schemaTypes(option: IOption): string[] {
  return ([] as string[]).concat(option.schema.type ?? []);
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
  /** The options whose control is built from their schema alone (the policies). */
  private _built: IOption[] = [];
  private _errors: { [name: string]: HTMLElement } = {};
  private _formError: HTMLDivElement;
  private _preview: HTMLDivElement;
  private _previewSeq = 0;
  private _previewTimer: number | null = null;
  private _save: HTMLButtonElement;
  private _pythonMode: HTMLSelectElement;
  private _job: IJob | null;
  /** `notify_on`: a checkbox per kind. */
  private _notifyOn: { [kind: string]: HTMLInputElement } = {};

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
    const kind = this._control(OPTION.kind, job?.kind ?? preset.kind);
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
    const description = this._input('description', 'text', job?.description ?? '', OPTION.description.help);
    const enabled = this._control(OPTION.enabled, job?.enabled);

    const policyRows = POLICY_ROWS.map(name => this._builtRow(OPTION[name]));
    // alert rules, one per line: the server reads each and names the one it refuses
    const alerts = this._textarea('alerts', job ? (job.policy.alerts ?? []).join('\n') : '', 'rows < 1000\nduration > 2 * median(20)');
    alerts.classList.add('jp-HermesCron-mono');
    alerts.rows = 3;
    alerts.title = `${OPTION.alerts.help.replace(/ \(repeatable.*\)$/, '')}: one rule per line`;
    // where its notifications go: Apprise URLs, one per line; the server shows a saved one
    // masked and keeps the URL a masked value stands for, so an untouched line stays as it was
    const notify = this._textarea('notify', job ? (job.policy.notify ?? []).join('\n') : '', 'mailto://user:pass@example.com?to=me@example.com\nntfy://ntfy.sh/my-topic');
    notify.classList.add('jp-HermesCron-mono');
    notify.rows = 2;
    notify.title = OPTION.notify.schema.description ?? OPTION.notify.help;
    const wiki = el('a', { href: APPRISE_WIKI, target: '_blank', rel: 'noopener noreferrer' }, 'Apprise URLs');
    const notifyHelp = el(
      'div',
      { class: 'jp-HermesCron-help', 'data-role': 'notify-help' },
      'One ',
      wiki,
      ' per line (mailto://, slack://, ntfy://, json://, … 100+ services). They hold secrets: saved ones show masked (…) and stay as they are when left untouched; an empty box removes them.'
    );
    const chosen = (job?.policy.notify_on ?? (OPTION.notify_on.default as string[]) ?? []).map(String);
    const kinds = el('div', { class: 'jp-HermesCron-checks', 'data-field': 'notify_on' });
    for (const kind of NOTIFY_KINDS) {
      const box = el('input', { type: 'checkbox', 'data-notify-on': kind, name: 'notify_on', value: kind });
      box.checked = chosen.includes(kind);
      box.addEventListener('change', () => this._clearError('notify_on'));
      this._notifyOn[kind] = box;
      kinds.append(el('label', { class: 'jp-HermesCron-check' }, box, ` ${kind}`));
    }
    kinds.title = OPTION.notify_on.help;

    // -- layout ------------------------------------------------------------------
    const kindRow = this._row('kind', el('div', { class: 'jp-HermesCron-inline' }, kind, this._pythonMode));
    const paramsRow = this._row('parameters', params);
    paramsRow.querySelector('label')!.textContent += ' (JSON)';
    // a job a definitions file manages: the next apply of that file undoes an edit made here
    const managed = job?.managed_by
      ? el(
          'div',
          { class: 'jp-HermesCron-managedWarning', 'data-role': 'managed-warning', role: 'note' },
          `⚠ Managed by ${job.managed_by}: the next apply of that file will undo this edit. Change the file to keep it.`
        )
      : '';
    form.append(
      title,
      managed,
      this._formError,
      this._row('name', name),
      kindRow,
      this._row('command', el('div', { class: 'jp-HermesCron-inline' }, command, browse)),
      this._row('code', code),
      this._row('kernel', kernel),
      paramsRow,
      this._row('schedule', schedule, chips),
      this._row('timezone', tz, zones),
      this._preview,
      this._row('after', after),
      this._row('cwd', cwd),
      this._row('env', env),
      this._row('description', description),
      el(
        'details',
        { class: 'jp-HermesCron-policies', ...(job ? { open: '' } : {}) },
        el('summary', {}, 'Policies'),
        ...policyRows,
        this._row('alerts', alerts),
        this._row('notify', notify, notifyHelp),
        this._row('notify_on', kinds),
        this._moreBox
      ),
      this._row('enabled', el('label', { class: 'jp-HermesCron-check' }, enabled, ' fire on its schedule and after the jobs it runs after'))
    );

    // every other option marked for the form, under the laid-out policies
    for (const option of OPTIONS) {
      if (option.form && !(option.name in this._rows)) {
        this._moreBox.append(this._builtRow(option));
      }
    }

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
  }

  private _moreBox = el('div', { class: 'jp-HermesCron-moreOptions', 'data-role': 'more-options' });

  /** The job's value of *option*, or undefined for a new job. */
  private _current(option: IOption): unknown {
    const job = this._job as unknown as { [key: string]: unknown } | null;
    if (!job) {
      return undefined;
    }
    return option.policy ? (job.policy as { [key: string]: unknown })[option.name] : job[option.name];
  }

  /**
   * A control made from an option's schema alone: a checkbox (boolean), a chooser
   * (an enum, each value with its label; the default chosen), a number field (a count,
   * with its range) or a text field (durations and sizes are typed: 90, 10m, 50M). It
   * shows *value*; an empty field's placeholder says what leaving it empty means.
   */
  private _control(option: IOption, value: unknown): HTMLInputElement | HTMLSelectElement {
    const name = option.name;
    let control: HTMLInputElement | HTMLSelectElement;
    if (schemaTypes(option).includes('boolean')) {
      control = el('input', { type: 'checkbox', 'data-field': name, name });
      control.checked = (value ?? option.default) === true;
      this._fields[name] = control;
    } else if (option.schema.enum) {
      const labels = option.choice_labels ?? {};
      const values = option.schema.enum.filter(v => v !== null).map(v => String(v));
      control = this._select(name, values.map(v => [v, labels[v] ?? v]));
      control.value = String(value ?? option.default ?? '');
    } else {
      const count = schemaTypes(option).includes('integer') && !option.unit;
      const shown = value === null || value === undefined ? '' : String(value);
      const example = option.unit ? ` (${UNIT_EXAMPLES[option.unit]})` : '';
      control = this._input(name, count ? 'number' : 'text', shown, option.default_text + example);
      if (count) {
        const { minimum, maximum } = option.schema;
        if (minimum !== undefined) {
          control.min = String(minimum);
        }
        if (maximum !== undefined) {
          control.max = String(maximum);
        }
      }
    }
    control.title = option.help;
    return control;
  }

  /** A row whose control and value come from the option alone (sent by `_value`). */
  private _builtRow(option: IOption): HTMLElement {
    this._built.push(option);
    return this._row(option.name, this._control(option, this._current(option)));
  }

  /** The body value of a schema-built field, or undefined to leave it out. */
  private _value(option: IOption): unknown {
    const field = this._fields[option.name];
    if (schemaTypes(option).includes('boolean')) {
      return (field as HTMLInputElement).checked;
    }
    const text = field.value.trim();
    const types = schemaTypes(option);
    if (text === '') {
      return this._job && types.includes('null') ? null : undefined;
    }
    if ((types.includes('number') || types.includes('integer')) && Number.isFinite(Number(text))) {
      return Number(text);
    }
    return text; // durations such as "10m" and sizes such as "50M" are read by the server
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

  /** A row for the option *field*: its label (and help, as the label's tooltip), the control and its error. */
  private _row(field: string, ...control: Node[]): HTMLElement {
    const error = el('div', { class: 'jp-HermesCron-fieldError', 'data-error-for': field });
    error.hidden = true;
    this._errors[field] = error;
    const option = OPTION[field];
    const row = el(
      'div',
      { class: 'jp-HermesCron-row', 'data-row': field },
      el('label', { class: 'jp-HermesCron-label', title: option?.help ?? '' }, option?.label ?? field),
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
      label.textContent = OPTION.command.label;
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
        return UPSTREAM_ON.includes(on) ? { job: t.slice(0, cut), on } : { job: t, on: 'success' };
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
    const policy: { [key: string]: unknown } = {};
    for (const option of this._built) {
      const v = this._value(option);
      if (v !== undefined) {
        (option.policy ? policy : out)[option.name] = v;
      }
    }
    const rules = f.alerts.value.split('\n').map(t => t.trim()).filter(t => t);
    if (rules.length || this._job) {
      policy.alerts = rules; // an edit that empties it clears the job's rules
    }
    // notify: every line; masked ones stand for the URLs they mask (the server maps them)
    const urls = f.notify.value.split('\n').map(t => t.trim()).filter(t => t);
    if (urls.length || this._job) {
      policy.notify = urls; // an edit that empties it removes the job's destinations
    }
    const on = NOTIFY_KINDS.filter(k => this._notifyOn[k].checked);
    const was = this._job ? this._job.policy.notify_on ?? [] : ((OPTION.notify_on.default as string[]) ?? []);
    if (on.join(',') !== NOTIFY_KINDS.filter(k => was.includes(k as any)).join(',')) {
      policy.notify_on = on; // sent when changed: a new job keeps the server's default
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
