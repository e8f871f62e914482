/**
 * Definitions as code in the panel (docs/definitions.md): Export… (the YAML of every
 * job, or of the selected one), Import… (paste or pick a file, see the dry-run plan,
 * apply exactly that plan) and a job's Revisions (the list, a revision's diff, revert).
 */
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { CronAPI, CronError, IJob, IPlan, IRevision } from './api';
import { h } from './dom';
import { ago, formatTime } from './format';

/** A definition's value as one line. */
export function valueText(v: unknown): string {
  if (v === null || v === undefined) {
    return '—';
  }
  if (typeof v === 'string') {
    return v === '' ? '""' : v;
  }
  return JSON.stringify(v);
}

function errorText(err: any): string {
  if (err instanceof CronError) {
    const where = err.field ? ` (${err.field})` : '';
    if (err.status === 409) {
      return `Conflict: ${err.message}${where}. Nothing was changed: plan again.`;
    }
    return `${err.message}${where}`;
  }
  return String(err?.message ?? err);
}

/** Save *text* as a file named *name* (the browser's download). */
function download(text: string, name: string): void {
  const url = URL.createObjectURL(new Blob([text], { type: 'application/yaml' }));
  const a = h('a', { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** Export…: the YAML of every job (or of *job*), shown, with a download. */
export async function showExport(api: CronAPI, job: IJob | null): Promise<void> {
  const body = new Widget();
  body.addClass('jp-HermesCron-export');
  const scope = h('select', { class: 'jp-mod-styled', 'data-role': 'export-scope' });
  scope.append(h('option', { value: '' }, 'All jobs'));
  if (job) {
    scope.append(h('option', { value: job.name }, `Only ${job.name}`));
  }
  const text = h('textarea', {
    class: 'jp-mod-styled jp-HermesCron-yaml',
    'data-role': 'export-text',
    readonly: true,
    rows: '18',
    spellcheck: 'false'
  });
  const error = h('div', { class: 'jp-HermesCron-error', 'data-role': 'export-error' });
  error.hidden = true;
  const save = h('button', { class: 'jp-mod-styled jp-mod-accept', type: 'button', 'data-action': 'download' }, 'Download');
  const load = async () => {
    error.hidden = true;
    text.value = '';
    text.dataset.loaded = 'false';
    try {
      text.value = await api.exportDefinitions(scope.value || null);
      text.dataset.loaded = 'true';
    } catch (err) {
      error.hidden = false;
      error.textContent = errorText(err);
    }
  };
  scope.onchange = () => void load();
  save.onclick = () => download(text.value, scope.value ? `${scope.value}.yaml` : 'jobs.yaml');
  body.node.append(
    h('div', { class: 'jp-HermesCron-row' }, scope, save),
    text,
    error,
    h('div', { class: 'jp-HermesCron-muted' }, 'Secrets are written by reference (${VAR}), never their values.')
  );
  void load();
  await showDialog({ title: 'Export job definitions', body, buttons: [Dialog.okButton({ label: 'Close' })] });
}

/** The plan, as + create / ~ change (field: before → after) / - delete lines. */
export function planView(plan: IPlan): HTMLElement {
  const list = h('ul', { class: 'jp-HermesCron-plan', 'data-role': 'plan' });
  for (const c of plan.create) {
    const fields = Object.entries(c.fields).map(([k, v]) => `${k}: ${valueText(v)}`);
    list.append(
      h(
        'li',
        { 'data-op': 'create', 'data-job': c.name },
        h('span', { class: 'jp-HermesCron-planOp' }, '+'),
        ` create ${c.name}`,
        fields.length ? h('div', { class: 'jp-HermesCron-muted jp-HermesCron-mono' }, fields.join(' · ')) : ''
      )
    );
  }
  for (const u of plan.change) {
    list.append(
      h(
        'li',
        { 'data-op': 'change', 'data-job': u.name },
        h('span', { class: 'jp-HermesCron-planOp' }, '~'),
        ` change ${u.name}`,
        diffList(u.changes.map(c => [c.field, c.before, c.after]))
      )
    );
  }
  for (const d of plan.delete) {
    list.append(h('li', { 'data-op': 'delete', 'data-job': d.name }, h('span', { class: 'jp-HermesCron-planOp' }, '-'), ` delete ${d.name}`));
  }
  const box = h('div', { class: 'jp-HermesCron-planBox' });
  if (list.childElementCount) {
    box.append(list);
  } else {
    box.append(h('div', { class: 'jp-HermesCron-muted', 'data-role': 'plan-empty' }, 'Nothing to do: the jobs already match the file.'));
  }
  const notes: string[] = [];
  if (plan.unchanged.length) {
    notes.push(`unchanged: ${plan.unchanged.join(', ')}`);
  }
  if (plan.kept.length) {
    notes.push(`kept (not in the file): ${plan.kept.join(', ')}`);
  }
  if (notes.length) {
    box.append(h('div', { class: 'jp-HermesCron-muted', 'data-role': 'plan-notes' }, notes.join(' · ')));
  }
  return box;
}

/** field: before → after, one per line. */
export function diffList(changes: [string, unknown, unknown][]): HTMLElement {
  return h(
    'ul',
    { class: 'jp-HermesCron-diff', 'data-role': 'diff' },
    ...changes.map(([field, before, after]) =>
      h(
        'li',
        { 'data-field': field },
        h('span', { class: 'jp-HermesCron-diffField' }, `${field}: `),
        h('span', { class: 'jp-HermesCron-diffBefore' }, valueText(before)),
        ' → ',
        h('span', { class: 'jp-HermesCron-diffAfter' }, valueText(after))
      )
    )
  );
}

function samePlan(a: IPlan, b: IPlan): boolean {
  const key = (p: IPlan) => JSON.stringify([p.create, p.change, p.delete]);
  return key(a) === key(b);
}

/** Import…: paste or pick a YAML file, "Plan" shows the dry run, "Apply" applies that
 * plan (planned again first: when the jobs changed meanwhile, the new plan is shown and
 * nothing is applied). */
export async function showImport(api: CronAPI, onApplied: (plan: IPlan) => void): Promise<void> {
  const body = new Widget();
  body.addClass('jp-HermesCron-import');
  const text = h('textarea', {
    class: 'jp-mod-styled jp-HermesCron-yaml',
    'data-role': 'import-text',
    rows: '14',
    spellcheck: 'false',
    placeholder: 'jobs:\n  nightly-etl:\n    schedule: 0 2 * * *\n    command: python etl.py'
  });
  const file = h('input', { type: 'file', accept: '.yaml,.yml,application/yaml,text/yaml', 'data-role': 'import-file' });
  const source = h('input', { class: 'jp-mod-styled', type: 'text', value: 'jobs.yaml', 'data-role': 'import-source', title: 'The file these jobs are managed by' });
  const prune = h('input', { type: 'checkbox', 'data-role': 'import-prune' });
  const planButton = h('button', { class: 'jp-mod-styled', type: 'button', 'data-action': 'plan' }, 'Plan');
  const applyButton = h('button', { class: 'jp-mod-styled jp-mod-accept', type: 'button', 'data-action': 'apply' }, 'Apply');
  applyButton.disabled = true;
  const out = h('div', { class: 'jp-HermesCron-planOut', 'data-role': 'plan-out' });
  const error = h('div', { class: 'jp-HermesCron-error', 'data-role': 'import-error', role: 'alert' });
  error.hidden = true;
  let planned: { plan: IPlan; text: string; source: string; prune: boolean } | null = null;

  const invalidate = () => {
    planned = null;
    applyButton.disabled = true;
    body.node.dataset.state = 'edited';
  };
  text.oninput = invalidate;
  source.oninput = invalidate;
  file.onchange = async () => {
    const f = file.files?.[0];
    if (f) {
      text.value = await f.text();
      source.value = f.name;
      invalidate();
    }
  };
  const request = () => ({ text: text.value, source: source.value.trim() || 'jobs.yaml', prune: prune.checked });
  const showPlan = (plan: IPlan) => {
    out.replaceChildren(planView(plan));
  };
  const doPlan = async (): Promise<IPlan | null> => {
    error.hidden = true;
    body.node.dataset.state = 'planning';
    const req = request();
    try {
      const plan = await api.applyDefinitions({ ...req, dry_run: true });
      planned = { plan, ...req };
      showPlan(plan);
      applyButton.disabled = !(plan.create.length || plan.change.length || plan.delete.length);
      body.node.dataset.state = 'planned';
      return plan;
    } catch (err) {
      planned = null;
      applyButton.disabled = true;
      out.replaceChildren();
      error.hidden = false;
      error.textContent = errorText(err);
      body.node.dataset.state = 'error';
      return null;
    }
  };
  prune.onchange = () => {
    if (planned) {
      void doPlan(); // deletes show only with prune: plan again
    } else {
      invalidate();
    }
  };
  planButton.onclick = () => void doPlan();
  applyButton.onclick = async () => {
    const shown = planned;
    if (!shown) {
      return;
    }
    applyButton.disabled = planButton.disabled = true;
    error.hidden = true;
    try {
      const req = { text: shown.text, source: shown.source, prune: shown.prune };
      // the jobs may have changed since the plan was shown: apply only that plan
      const again = await api.applyDefinitions({ ...req, dry_run: true });
      if (!samePlan(again, shown.plan)) {
        planned = { plan: again, ...req };
        showPlan(again);
        error.hidden = false;
        error.textContent = 'The jobs changed since the plan was made: this is the new plan. Nothing was applied; Apply again to apply it.';
        body.node.dataset.state = 'replanned';
        applyButton.disabled = false;
        return;
      }
      // the server applies only the plan shown (its plan_id), else 409: plan again
      const result = await api.applyDefinitions({ ...req, dry_run: false, plan_id: shown.plan.plan_id });
      showPlan(result);
      out.prepend(h('div', { class: 'jp-HermesCron-applied', 'data-role': 'applied' }, result.applied ? '✓ Applied.' : 'Nothing to apply.'));
      planned = null;
      body.node.dataset.state = 'applied';
      onApplied(result);
    } catch (err) {
      error.hidden = false;
      error.textContent = errorText(err);
      body.node.dataset.state = 'error';
      applyButton.disabled = !planned;
    } finally {
      planButton.disabled = false;
    }
  };
  body.node.append(
    text,
    h(
      'div',
      { class: 'jp-HermesCron-row jp-HermesCron-importOptions' },
      file,
      h('label', {}, 'Source ', source),
      h('label', { title: 'Also delete the jobs this source applied that the file no longer has' }, prune, ' prune (delete jobs no longer in the file)')
    ),
    h('div', { class: 'jp-HermesCron-row' }, planButton, applyButton),
    error,
    out
  );
  await showDialog({ title: 'Import job definitions', body, buttons: [Dialog.cancelButton({ label: 'Close' })] });
}

function revisionTime(at: number | string): string {
  return typeof at === 'number' ? new Date(at * 1000).toISOString() : at;
}

/** The Revisions section of a job: newest first; a click shows the revision's changes,
 * with "Revert to this". */
/** A revision's action; a revert says what it restored: the revision it went back to
 * when the server says (`detail.to`), else the fields it changed back. */
export function actionText(r: IRevision): string {
  if (r.action !== 'revert') {
    return r.action;
  }
  const to = r.detail?.to;
  if (typeof to === 'number' || typeof to === 'string') {
    return `revert to rev ${to}`;
  }
  const fields = Object.keys(r.changes ?? {});
  return fields.length ? `revert: ${fields.join(', ')}` : 'revert';
}

function actionTitle(r: IRevision): string {
  if (r.action !== 'revert') {
    return '';
  }
  return Object.entries(r.changes ?? {})
    .map(([field, pair]) => `${field}: ${JSON.stringify(Array.isArray(pair) ? pair[0] : null)} → ${JSON.stringify(Array.isArray(pair) ? pair[1] : pair)}`)
    .join('\n');
}

export class RevisionsSection extends Widget {
  private _job: IJob | null = null;
  private _loadedVersion: number | null = null;
  private _revs: IRevision[] = [];
  private _open: number | null = null;
  private _seq = 0;

  constructor(private readonly api: CronAPI, private readonly onReverted: (job: IJob) => void) {
    super();
    this.addClass('jp-HermesCron-revisions');
    this.node.dataset.role = 'revisions';
  }

  /** Show *job*'s revisions (read again when its version changed). */
  setJob(job: IJob | null): void {
    const same = job && this._job?.id === job.id;
    this._job = job;
    if (!job) {
      this._revs = [];
      this._loadedVersion = null;
      this.node.replaceChildren();
      return;
    }
    if (!same) {
      this._open = null;
      this._revs = [];
      this._loadedVersion = null;
    }
    if (this._loadedVersion !== job.version) {
      void this.load();
    }
  }

  async load(): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const seq = ++this._seq;
    try {
      const page = await this.api.revisions(job.id, { limit: 20 });
      if (seq !== this._seq || this._job?.id !== job.id) {
        return;
      }
      this._revs = page.revisions;
      this._loadedVersion = job.version;
      this._render();
    } catch (err: any) {
      if (seq === this._seq && !(err instanceof CronError && err.status === 404)) {
        this.node.replaceChildren(h('div', { class: 'jp-HermesCron-error' }, `revisions: ${err?.message ?? err}`));
      }
    }
  }

  private _render(): void {
    const job = this._job;
    if (!job) {
      return;
    }
    const rows: HTMLElement[] = [];
    for (const r of this._revs) {
      const when = revisionTime(r.at);
      const tr = h(
        'tr',
        {
          class: `jp-HermesCron-revision${this._open === r.rev ? ' jp-mod-selected' : ''}`,
          'data-rev': String(r.rev),
          tabindex: '0',
          title: 'click to see what changed'
        },
        h('td', { class: 'jp-HermesCron-num' }, `rev ${r.rev}`),
        h('td', { title: formatTime(when) }, ago(when)),
        h('td', { 'data-role': 'actor' }, r.actor ?? '—'),
        h('td', { 'data-role': 'origin' }, r.origin ?? '—'),
        h('td', { 'data-role': 'action', title: actionTitle(r) }, actionText(r))
      );
      const toggle = () => {
        this._open = this._open === r.rev ? null : r.rev;
        this._render();
      };
      tr.onclick = toggle;
      tr.onkeydown = (ev: KeyboardEvent) => ev.key === 'Enter' && toggle();
      rows.push(tr);
      if (this._open === r.rev) {
        const changes = Object.entries(r.changes ?? {}).map(
          ([field, pair]) => [field, Array.isArray(pair) ? pair[0] : null, Array.isArray(pair) ? pair[1] : pair] as [string, unknown, unknown]
        );
        const current = r.rev === job.version;
        const revert = h(
          'button',
          { class: 'jp-mod-styled', type: 'button', 'data-action': 'revert', disabled: current, title: current ? 'The job is at this revision' : `Change the job back to its definition at rev ${r.rev}` },
          'Revert to this'
        );
        revert.onclick = ev => {
          ev.stopPropagation();
          void this._revert(r.rev);
        };
        rows.push(
          h(
            'tr',
            { class: 'jp-HermesCron-revisionDetail', 'data-detail-rev': String(r.rev) },
            h(
              'td',
              { colspan: '5' },
              changes.length ? diffList(changes) : h('div', { class: 'jp-HermesCron-muted' }, r.action === 'create' ? 'created' : 'no field changed'),
              revert
            )
          )
        );
      }
    }
    this.node.replaceChildren(
      h('div', { class: 'jp-HermesCron-sectionTitle' }, 'Revisions'),
      this._revs.length
        ? h(
            'table',
            { class: 'jp-HermesCron-runs jp-HermesCron-revisionTable' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Rev'), h('th', {}, 'When'), h('th', {}, 'Who'), h('th', {}, 'From'), h('th', {}, 'Action'))),
            h('tbody', {}, ...rows)
          )
        : h('div', { class: 'jp-HermesCron-muted' }, 'No revisions.')
    );
  }

  private async _revert(rev: number): Promise<void> {
    const job = this._job;
    if (!job) {
      return;
    }
    const result = await showDialog({
      title: `Revert ${job.name}?`,
      body: `Change “${job.name}” back to its definition at rev ${rev}? This is recorded as a new revision.${job.managed_by ? ` It is managed by ${job.managed_by}: the next apply of that file will undo this.` : ''}`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Revert' })]
    });
    if (!result.button.accept) {
      return;
    }
    try {
      const updated = await this.api.revert(job.id, rev);
      if (updated.warning) {
        Notification.warning(`${updated.name}: ${updated.warning}`, { autoClose: 8000 });
      }
      this._open = null;
      this.onReverted(updated);
      if (this._job?.id === updated.id) {
        this._job = updated;
        await this.load();
      }
    } catch (err: any) {
      Notification.error(`${job.name}: ${errorText(err)}`, { autoClose: 8000 });
    }
  }
}
