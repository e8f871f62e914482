/**
 * The "Audit" tab (admins): the audit log newest first (`GET /audit`), who did what to
 * which job, when and from where; "Verify" checks the hash chain (`?verify=1`).
 */
import { Widget } from '@lumino/widgets';

import { CronAPI } from './api';
import { audit, IAuditRecord } from './across';
import { h } from './dom';
import { ago, formatTime } from './format';

function detailText(r: IAuditRecord): string {
  const bits: string[] = [];
  for (const [k, v] of Object.entries(r.detail ?? {})) {
    if (k === 'name' && v === r.job) {
      continue; // the Job column says it
    }
    if (k === 'to' && typeof v === 'number') {
      bits.push(`to rev ${v}`);
    } else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
      bits.push(`${k} ${v}`);
    } else if (Array.isArray(v) && v.every(x => typeof x === 'string' || typeof x === 'number')) {
      bits.push(`${k === 'changes' ? 'changed' : k}: ${v.join(', ') || '—'}`);
    } else if (v && typeof v === 'object') {
      bits.push(`${k}: ${Object.keys(v).join(', ')}`);
    }
  }
  return bits.join(' · ');
}

export class AuditView extends Widget {
  private _body: HTMLTableSectionElement;
  private _footer: HTMLDivElement;
  private _verify: HTMLDivElement;
  private _cursor: string | null = null;
  private _seq = 0;
  private _stale = true;

  constructor(private readonly api: CronAPI, private readonly openJob: (jobId: string) => void) {
    super();
    this.addClass('jp-HermesCron-audit');
    this.node.dataset.role = 'audit-view';
    const verify = h('button', { class: 'jp-mod-styled', type: 'button', 'data-action': 'verify', title: 'Check the hash chain: no record altered, none missing' }, 'Verify');
    verify.onclick = () => void this.verify();
    const reload = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-action': 'reload-audit' }, 'Reload');
    reload.onclick = () => void this.load(true);
    this._verify = h('div', { class: 'jp-HermesCron-verify', 'data-role': 'verify-result' });
    this._verify.hidden = true;
    this._body = h('tbody', {});
    this._footer = h('div', { class: 'jp-HermesCron-viewFooter' });
    this.node.append(
      h('div', { class: 'jp-HermesCron-searchBar' }, verify, reload),
      this._verify,
      h(
        'table',
        { class: 'jp-HermesCron-runs jp-HermesCron-auditTable' },
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'When'), h('th', {}, 'Who'), h('th', {}, 'From'), h('th', {}, 'Action'), h('th', {}, 'Job'), h('th', {}, 'Detail'))),
        this._body
      ),
      this._footer
    );
  }

  /** The log changed (a job was): read it again when shown. */
  changed(): void {
    this._stale = true;
    if (this.isVisible) {
      void this.load(true);
    }
  }

  protected onAfterShow(): void {
    if (this._stale) {
      void this.load(true);
    }
  }

  async load(fresh: boolean): Promise<void> {
    const seq = ++this._seq;
    this._stale = false;
    try {
      const page = await audit(this.api, { limit: 100, cursor: fresh ? undefined : this._cursor });
      if (seq !== this._seq) {
        return;
      }
      const rows = page.records.map(r => {
        const at = new Date(r.at * 1000).toISOString();
        const job = r.job
          ? h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-role': 'audit-job', onclick: () => r.job_id && this.openJob(r.job_id) }, r.job)
          : h('span', { class: 'jp-HermesCron-muted' }, r.job_id ?? '—');
        return h(
          'tr',
          { class: 'jp-HermesCron-auditRecord', 'data-seq': String(r.seq), 'data-action': r.action, title: `record ${r.seq}${r.run_id ? ` · run ${r.run_id}` : ''}` },
          h('td', { class: 'jp-HermesCron-num' }, String(r.seq)),
          h('td', { title: formatTime(at) }, ago(at)),
          h('td', { 'data-role': 'actor' }, r.actor ?? '—'),
          h('td', { 'data-role': 'origin' }, r.origin ?? '—'),
          h('td', { 'data-role': 'action' }, r.action),
          h('td', {}, job),
          h('td', { class: 'jp-HermesCron-muted', 'data-role': 'detail' }, detailText(r))
        );
      });
      if (fresh) {
        this._body.replaceChildren(...rows);
      } else {
        this._body.append(...rows);
      }
      this._cursor = page.cursor;
      this._footer.replaceChildren();
      if (!this._body.children.length) {
        this._footer.append('No audit records yet.');
      } else if (this._cursor) {
        const more = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-action': 'more-audit' }, 'Older records…');
        more.onclick = () => void this.load(false);
        this._footer.append(more);
      }
      this.node.dataset.loaded = 'true';
    } catch (err: any) {
      if (seq === this._seq) {
        this._footer.replaceChildren(h('span', { class: 'jp-HermesCron-error', 'data-role': 'audit-error' }, String(err?.message ?? err)));
      }
    }
  }

  async verify(): Promise<void> {
    this._verify.hidden = false;
    this._verify.dataset.ok = '';
    this._verify.textContent = 'Checking the chain…';
    try {
      const page = await audit(this.api, { limit: 1, verify: 1 });
      const v = page.verify;
      if (!v) {
        this._verify.textContent = 'this server does not verify the log';
        return;
      }
      this._verify.dataset.ok = v.ok ? 'true' : 'false';
      this._verify.dataset.tone = v.ok ? 'ok' : 'bad';
      this._verify.textContent = v.ok
        ? `✓ ok: the chain of ${v.records} record${v.records === 1 ? '' : 's'} is intact`
        : `✗ broken at record ${v.first_bad}: ${v.problem}`;
    } catch (err: any) {
      this._verify.dataset.ok = 'false';
      this._verify.dataset.tone = 'bad';
      this._verify.textContent = String(err?.message ?? err);
    }
  }
}
