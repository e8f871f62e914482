/**
 * The "Search" tab: full-text search of the runs' output (`GET /search`). A hit is a
 * run with its matching lines and their context, the query's words highlighted;
 * clicking a line opens the run's output scrolled to that line (its byte offset).
 */
import { Widget } from '@lumino/widgets';

import { CronAPI } from './api';
import { highlighted, ISearchHit, queryTerms, search, toneOf } from './across';
import { h } from './dom';
import { formatTime, STATUS_LABEL } from './format';

export interface ISearchOptions {
  api: CronAPI;
  openRunAt: (runId: string, offset: number) => void;
  openJob: (jobId: string) => void;
}

export class SearchView extends Widget {
  private _q: HTMLInputElement;
  private _job: HTMLInputElement;
  private _status: HTMLSelectElement;
  private _since: HTMLSelectElement;
  private _results: HTMLDivElement;
  private _footer: HTMLDivElement;
  private _cursor: string | null = null;
  private _query: { [key: string]: string | undefined } = {};
  private _seq = 0;
  private _count = 0;

  constructor(private readonly opts: ISearchOptions) {
    super();
    this.addClass('jp-HermesCron-search');
    this.node.dataset.role = 'search-view';
    this._q = h('input', {
      class: 'jp-mod-styled jp-HermesCron-searchQuery',
      type: 'search',
      placeholder: 'Search the runs’ output: words, "a phrase", prefix*',
      'aria-label': 'Search output',
      'data-role': 'search-query'
    });
    this._job = h('input', { class: 'jp-mod-styled', type: 'search', placeholder: 'job', 'aria-label': 'Job', 'data-role': 'search-job' });
    this._status = h('select', { class: 'jp-mod-styled', 'aria-label': 'Status', 'data-role': 'search-status' });
    this._status.append(
      h('option', { value: '' }, 'Any status'),
      ...['succeeded', 'failed', 'timed_out', 'lost', 'cancelled', 'running'].map(s => h('option', { value: s }, STATUS_LABEL[s] ?? s))
    );
    this._since = h('select', { class: 'jp-mod-styled', 'aria-label': 'Since', 'data-role': 'search-since' });
    this._since.append(
      h('option', { value: '' }, 'Any time'),
      h('option', { value: '24h' }, 'Last 24 hours'),
      h('option', { value: '7d' }, 'Last 7 days'),
      h('option', { value: '30d' }, 'Last 30 days')
    );
    const go = h('button', { class: 'jp-mod-styled jp-mod-accept', type: 'button', 'data-action': 'search' }, 'Search');
    go.onclick = () => this.run();
    for (const input of [this._q, this._job]) {
      input.onkeydown = (ev: KeyboardEvent) => {
        if (ev.key === 'Enter') {
          this.run();
        }
      };
    }
    this._status.onchange = this._since.onchange = () => this._q.value.trim() && this.run();
    this._results = h('div', { class: 'jp-HermesCron-searchResults', 'data-role': 'search-results' });
    this._footer = h('div', { class: 'jp-HermesCron-viewFooter' });
    this.node.append(
      h('div', { class: 'jp-HermesCron-searchBar' }, this._q, go),
      h('div', { class: 'jp-HermesCron-searchBar' }, this._job, this._status, this._since),
      this._results,
      this._footer
    );
  }

  /** Search for *q* (from the box when not given). */
  run(q?: string): void {
    if (q !== undefined) {
      this._q.value = q;
    }
    this._query = {
      q: this._q.value.trim(),
      job: this._job.value.trim() || undefined,
      status: this._status.value || undefined,
      since: this._since.value || undefined
    };
    this._cursor = null;
    this._count = 0;
    this._results.replaceChildren();
    void this._load(true);
  }

  private async _load(fresh: boolean): Promise<void> {
    const seq = ++this._seq;
    if (!this._query.q) {
      this._footer.textContent = '';
      return;
    }
    this.node.dataset.loaded = 'false';
    this._footer.textContent = 'Searching…';
    try {
      const answer = await search(this.opts.api, { ...this._query, limit: 20, cursor: fresh ? undefined : this._cursor });
      if (seq !== this._seq) {
        return;
      }
      const terms = queryTerms(answer.query ?? this._query.q);
      this._results.append(...answer.hits.map(hit => this._hit(hit, terms)));
      this._count += answer.hits.length;
      this._cursor = answer.cursor;
      this._footer.replaceChildren();
      if (!this._count) {
        this._footer.append(h('span', { 'data-role': 'search-empty' }, `No run’s output matches “${this._query.q}”.`));
      } else if (this._cursor) {
        const more = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-action': 'more-hits' }, 'Older runs…');
        more.onclick = () => void this._load(false);
        this._footer.append(`${this._count} runs so far · `, more);
      } else {
        this._footer.append(`${this._count} run${this._count === 1 ? '' : 's'}`);
      }
      this.node.dataset.loaded = 'true';
    } catch (err: any) {
      if (seq === this._seq) {
        this._footer.replaceChildren(h('span', { class: 'jp-HermesCron-error', 'data-role': 'search-error' }, String(err?.message ?? err)));
        this.node.dataset.loaded = 'error';
      }
    }
  }

  private _hit(hit: ISearchHit, terms: { token: string; prefix: boolean }[]): HTMLElement {
    const status = STATUS_LABEL[hit.status] ?? hit.status;
    const job = h('button', { class: 'jp-HermesCron-linkButton', type: 'button', 'data-role': 'hit-job', title: 'Show the job' }, hit.job_name);
    job.onclick = () => this.opts.openJob(hit.job_id);
    const matches = hit.matches.map(m => {
      const line = (text: string, cls: string) => h('div', { class: `jp-HermesCron-hitLine ${cls}` }, text);
      const block = h(
        'div',
        { class: 'jp-HermesCron-hitMatch', 'data-role': 'match', 'data-offset': String(m.offset), tabindex: '0', title: `open the output at byte ${m.offset}` },
        ...m.before.map(t => line(t, 'jp-mod-context')),
        h('div', { class: 'jp-HermesCron-hitLine jp-mod-match', 'data-role': 'match-line' }, ...highlighted(m.line, terms)),
        ...m.after.map(t => line(t, 'jp-mod-context'))
      );
      block.onclick = () => this.opts.openRunAt(hit.run_id, m.offset);
      block.onkeydown = (ev: KeyboardEvent) => ev.key === 'Enter' && this.opts.openRunAt(hit.run_id, m.offset);
      return block;
    });
    return h(
      'div',
      { class: 'jp-HermesCron-hit', 'data-run-id': hit.run_id, 'data-job': hit.job_name },
      h(
        'div',
        { class: 'jp-HermesCron-hitHead' },
        h('span', { class: 'jp-HermesCron-badge', 'data-tone': toneOf(hit.status) }, status),
        job,
        h('span', { class: 'jp-HermesCron-muted', title: hit.started_at ?? hit.fire_at ?? '' }, formatTime(hit.started_at ?? hit.fire_at)),
        h('span', { class: 'jp-HermesCron-muted jp-HermesCron-mono' }, hit.run_id)
      ),
      ...matches,
      hit.more ? h('div', { class: 'jp-HermesCron-muted', 'data-role': 'hit-more' }, 'more matches in this run…') : ''
    );
  }
}
