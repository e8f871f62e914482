/**
 * The live output of one run, as a terminal would show it.
 *
 * - `/runs/{id}/stream` is read over SSE from the last byte offset seen, so a
 *   dropped connection resumes without losing or repeating output; a finished
 *   run replays and ends.
 * - ANSI colours (ansi_up, class based, themed in style/base.css); stderr is
 *   marked; a bare carriage return rewrites the current line the way Jupyter's
 *   own outputs do, so tqdm bars update in place instead of piling up.
 * - Auto-scroll follows the end until the user scrolls up, and resumes when
 *   they scroll back down (or press "Jump to latest").
 * - A header with the run's status, phase and progress, and a
 *   Completed / Failed badge when the `end` event arrives.
 * - Opened at a byte offset (a search hit), it reads from the start of a line a little
 *   before it (CONTEXT_LINES, CONTEXT_BYTES; `GET /runs/{id}/log`), marks and scrolls to
 *   its line, loads earlier output on demand ("Load earlier output") and the rest a
 *   page at a time ("Load more"), every byte (`?lossless=1`) until "Jump to latest"
 *   follows the run live as usual.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';
import { AnsiUp } from 'ansi_up';

import { CronAPI, IRun, RunStatus } from './api';
import { alertBadge, duration, formatTime, STATUS_LABEL } from './format';
import { SSEStream } from './sse';

/** Committed lines kept in the DOM; older ones are dropped (the full log stays on the server). */
const MAX_LINES = 5000;

/** Opened at a byte offset (a search hit): how much comes before its line, at most. */
const CONTEXT_LINES = 200;
const CONTEXT_BYTES = 64 * 1024;
/** Opened at an offset: lines read past the start before the pane waits for "Load more". */
const AT_PAGE = 2000;
/** "Load earlier output": lines read at most per click (and bytes, CONTEXT_BYTES). */
const EARLIER_LINES = 1000;

/** Where in *bytes* (the log from byte *from*, up to a line start) to begin so that at most
 * *lines* whole lines come before the end: a line start (byte offset of the log). */
export function lineStartBefore(bytes: Uint8Array, from: number, lines: number): number {
  let n = 0;
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] === 10 && ++n > lines) {
      return from + i + 1;
    }
  }
  if (from === 0) {
    return 0;
  }
  // the window began mid-line: from the first whole line in it (else all of it)
  const nl = bytes.indexOf(10);
  return nl >= 0 && nl < bytes.length - 1 ? from + nl + 1 : from;
}

/** A progress marker line of the supervisor's protocol (shown as the header's bar instead). */
const MARKER = /^\s*::(progress|phase)::/;

interface ISegment {
  stream: string;
  text: string;
}

type AnsiState = { [key: string]: unknown };
const ANSI_STATE = ['fg', 'bg', 'bold', 'faint', 'italic', 'underline'];

function newAnsi(): AnsiUp {
  const a = new AnsiUp();
  a.use_classes = true;
  a.escape_html = true;
  return a;
}

function saveState(a: AnsiUp): AnsiState {
  const src = a as unknown as AnsiState;
  const out: AnsiState = {};
  for (const k of ANSI_STATE) {
    out[k] = src[k];
  }
  return out;
}

function withState(state: AnsiState): AnsiUp {
  const a = newAnsi();
  Object.assign(a as unknown as AnsiState, state);
  return a;
}

export function badgeFor(status: string): { label: string; tone: string } {
  switch (status) {
    case 'succeeded':
      return { label: 'Completed', tone: 'ok' };
    case 'failed':
      return { label: 'Failed', tone: 'bad' };
    case 'timed_out':
      return { label: 'Timed out', tone: 'bad' };
    case 'lost':
      return { label: 'Lost', tone: 'bad' };
    case 'cancelled':
      return { label: 'Cancelled', tone: 'muted' };
    case 'skipped':
      return { label: 'Skipped', tone: 'muted' };
    case 'running':
      return { label: 'Running', tone: 'run' };
    default:
      return { label: STATUS_LABEL[status] ?? status, tone: 'muted' };
  }
}

/**
 * Terminal-ish text sink: committed lines plus one live line that a bare `\r`
 * rewrites. Pure DOM, no network: the widget below feeds it.
 */
export class TerminalText {
  readonly node: HTMLPreElement;
  private _ansi = newAnsi();
  private _lineState: AnsiState = saveState(this._ansi);
  private _line: ISegment[] = [];
  private _lineNode: HTMLDivElement;
  private _crPending = false;
  private _count = 0;
  private _total = 0;
  private _dropped = 0;
  private _droppedNode: HTMLDivElement | null = null;
  /** the byte offset in the run's log of the next byte written */
  private _pos = 0;
  private _trimming = true;
  private static _utf8 = new TextEncoder();

  constructor() {
    this.node = document.createElement('pre');
    this.node.className = 'jp-HermesCron-terminal';
    this._lineNode = this._newLine();
  }

  get lineCount(): number {
    return this._count;
  }

  /** Lines committed since the last clear (dropped ones too). */
  get total(): number {
    return this._total;
  }

  /** The byte offset in the log of the next byte written. */
  get position(): number {
    return this._pos;
  }

  /** Lines dropped from the top (MAX_LINES). */
  get dropped(): number {
    return this._dropped;
  }

  /** Drop the oldest lines past MAX_LINES (off: keep them all, e.g. while a search hit is
   * shown; on again trims at once). */
  set trimming(on: boolean) {
    this._trimming = on;
    if (on) {
      this._trim();
    }
  }

  /** Empty, the next byte written being byte *offset* of the log. */
  startAt(offset: number): void {
    this.clear();
    this._pos = offset;
    this._lineNode.dataset.offset = String(offset);
  }

  /** Lines of the log that come before the ones shown: *text* (whole lines) from byte
   * *offset* on, put above them. */
  prepend(text: string, offset: number): void {
    const earlier = new TerminalText();
    earlier.write(text, 'stdout', offset);
    const nodes = Array.from(earlier.node.children) as HTMLElement[];
    const last = nodes[nodes.length - 1];
    if (last && !last.textContent) {
      nodes.pop(); // the empty line after the last newline
    }
    const before = this._droppedNode ?? this.node.firstChild;
    for (const el of nodes) {
      el.dataset.earlier = 'true';
      this.node.insertBefore(el, before);
    }
    this._count += nodes.length;
  }

  clear(): void {
    this.node.textContent = '';
    this._ansi = newAnsi();
    this._lineState = saveState(this._ansi);
    this._line = [];
    this._crPending = false;
    this._count = 0;
    this._total = 0;
    this._dropped = 0;
    this._droppedNode = null;
    this._pos = 0;
    this._lineNode = this._newLine();
  }

  /** The line holding byte *offset* of the log (each line knows where it starts). */
  lineAt(offset: number): HTMLElement | null {
    let found: HTMLElement | null = null;
    for (const el of Array.from(this.node.children) as HTMLElement[]) {
      const start = el.dataset.offset;
      if (start === undefined) {
        continue;
      }
      if (Number(start) > offset) {
        break;
      }
      found = el;
    }
    return found;
  }

  /** *text* written from byte *offset* of the log on (when known): lines keep where
   * they start, so a search hit's offset finds its line. */
  write(text: string, stream = 'stdout', offset?: number): void {
    if (offset !== undefined && !isNaN(offset)) {
      this._pos = offset;
      if (!this._line.length && !this._crPending) {
        this._lineNode.dataset.offset = String(offset);
      }
    }
    // \r\n and \n end a line; a bare \r goes back to the start of the line
    const pieces = text.split(/(\r\n|\n|\r)/);
    let dirty = false;
    for (const piece of pieces) {
      this._pos += !/[^\x00-\x7f]/.test(piece) ? piece.length : TerminalText._utf8.encode(piece).length;
      if (piece === '\n' || piece === '\r\n') {
        this._commit();
        dirty = false;
      } else if (piece === '\r') {
        this._crPending = true;
      } else if (piece) {
        if (this._crPending) {
          this._line = [];
          this._crPending = false;
        }
        const last = this._line[this._line.length - 1];
        if (last && last.stream === stream) {
          last.text += piece;
        } else {
          this._line.push({ stream, text: piece });
        }
        dirty = true;
      }
    }
    if (dirty) {
      this._render(this._lineNode, withState(this._lineState));
    }
  }

  private _newLine(): HTMLDivElement {
    const div = document.createElement('div');
    div.className = 'jp-HermesCron-line';
    div.dataset.offset = String(this._pos);
    this.node.appendChild(div);
    return div;
  }

  private _render(node: HTMLElement, ansi: AnsiUp): void {
    let html = '';
    for (const seg of this._line) {
      const body = ansi.ansi_to_html(seg.text);
      html +=
        seg.stream === 'stderr' || seg.stream === 'system'
          ? `<span class="jp-HermesCron-${seg.stream}">${body}</span>`
          : body;
    }
    node.innerHTML = html;
  }

  private _commit(): void {
    // render with the persistent ANSI state so colours carry over to the next line
    this._render(this._lineNode, this._ansi);
    if (MARKER.test(this._line.map(seg => seg.text).join(''))) {
      // ::progress:: / ::phase:: lines feed the progress bar above; the text stays in the log
      this._lineNode.classList.add('jp-HermesCron-marker');
    }
    this._lineState = saveState(this._ansi);
    this._line = [];
    this._crPending = false;
    this._count++;
    this._total++;
    this._lineNode = this._newLine();
    this._trim();
  }

  private _trim(): void {
    const excess = this._count - MAX_LINES;
    if (excess <= 0 || !this._trimming) {
      return;
    }
    if (!this._droppedNode) {
      this._droppedNode = document.createElement('div');
      this._droppedNode.className = 'jp-HermesCron-dropped';
      this.node.insertBefore(this._droppedNode, this.node.firstChild);
    }
    for (let i = 0; i < excess; i++) {
      const first = this._droppedNode.nextSibling;
      if (first && first !== this._lineNode) {
        this.node.removeChild(first);
        this._count--;
        this._dropped++;
      }
    }
    this._droppedNode.textContent =
      `… ${this._dropped} earlier line(s) not shown here ` + '(the full log is kept on the server)';
  }
}

/** The live-output pane of one run. */
export class RunOutput extends Widget {
  private _stream: SSEStream | null = null;
  private _term = new TerminalText();
  private _scroller: HTMLDivElement;
  private _follow = true;
  private _jump: HTMLButtonElement;
  private _title: HTMLSpanElement;
  private _badge: HTMLSpanElement;
  /** "⚠ ALERT" when the job's alert rules fired as the run ended (their messages its title). */
  private _alert: HTMLSpanElement;
  private _meta: HTMLDivElement;
  private _phase: HTMLSpanElement;
  private _bar: HTMLDivElement;
  private _barFill: HTMLDivElement;
  private _conn: HTMLSpanElement;
  /** "rev 3 · sha256 1a2b3c4d…": the job's revision the run ran, and its file's hash */
  private _rev: HTMLSpanElement;
  /** the job's current version, read once when the run's is known (no jobVersion given) */
  private _currentVersion: number | null = null;
  private _versionAsked = false;
  private _cancel: HTMLButtonElement;
  private _run: IRun | null = null;
  private _offset = 0;
  private _ended = false;
  /** the byte offset to show once its line has arrived (a search hit) */
  private _at: number | null = null;
  /** the byte offset of the log the pane starts at (> 0: opened at a search hit) */
  private _start = 0;
  /** "… N bytes before · Load earlier output" above the first line shown */
  private _earlier: HTMLDivElement;
  /** "Load more ↓": opened at an offset, the pane stops after AT_PAGE lines */
  private _more: HTMLDivElement;
  /** lines committed (TerminalText.total) at which to stop reading, or null: read on */
  private _pauseAt: number | null = null;
  private _paused = false;
  /** read every byte at the reader's pace (opened at an offset), not live with gaps */
  private _lossless = false;
  /** bumps on each (re)opening, so a late log read of an earlier one is ignored */
  private _gen = 0;
  runId: string;

  constructor(
    private readonly api: CronAPI,
    runId: string,
    private readonly options: {
      jobName?: string | null;
      onOpenInTab?: (runId: string) => void;
      compact?: boolean;
      /** the job's current version (its revision), to say a run ran an older one */
      jobVersion?: () => number | null;
      /** open at this byte offset of the log: its line scrolled to and marked */
      at?: number | null;
    } = {}
  ) {
    super();
    this.runId = runId;
    this._at = options.at ?? null;
    if (this._at !== null) {
      this._follow = false;
    }
    this.addClass('jp-HermesCron-output');
    if (options.compact) {
      this.addClass('jp-mod-compact');
    }
    this.node.dataset.runId = runId;
    this.node.dataset.status = 'connecting';

    const header = document.createElement('div');
    header.className = 'jp-HermesCron-outputHeader';
    this._title = document.createElement('span');
    this._title.className = 'jp-HermesCron-outputTitle';
    this._title.textContent = `${options.jobName ?? 'Run'} · ${runId}`;
    this._badge = document.createElement('span');
    this._badge.className = 'jp-HermesCron-badge';
    this._badge.dataset.tone = 'muted';
    this._badge.textContent = 'Connecting';
    this._alert = document.createElement('span');
    this._alert.className = 'jp-HermesCron-alertBadge';
    this._alert.dataset.role = 'alert-badge';
    this._alert.hidden = true;
    this._conn = document.createElement('span');
    this._conn.className = 'jp-HermesCron-conn';
    this._rev = document.createElement('span');
    this._rev.className = 'jp-HermesCron-runRevision';
    this._rev.dataset.role = 'run-revision';
    this._rev.hidden = true;
    const actions = document.createElement('span');
    actions.className = 'jp-HermesCron-outputActions';
    this._cancel = document.createElement('button');
    this._cancel.className = 'jp-HermesCron-linkButton';
    this._cancel.textContent = 'Stop';
    this._cancel.title = 'Cancel this run (TERM, then KILL after the grace period)';
    this._cancel.hidden = true;
    this._cancel.onclick = () => {
      this._cancel.disabled = true;
      this.api.cancelRun(this.runId).catch(err => {
        this._conn.textContent = String(err.message ?? err);
        this._cancel.disabled = false;
      });
    };
    actions.appendChild(this._cancel);
    if (options.onOpenInTab) {
      const open = document.createElement('button');
      open.className = 'jp-HermesCron-linkButton';
      open.textContent = 'Open in tab';
      open.title = 'Open this output in the main area';
      open.onclick = () => options.onOpenInTab?.(this.runId);
      actions.appendChild(open);
    }
    header.append(this._badge, this._alert, this._title, this._rev, this._conn, actions);

    this._meta = document.createElement('div');
    this._meta.className = 'jp-HermesCron-outputMeta';
    const progress = document.createElement('div');
    progress.className = 'jp-HermesCron-progress';
    this._phase = document.createElement('span');
    this._phase.className = 'jp-HermesCron-phase';
    this._bar = document.createElement('div');
    this._bar.className = 'jp-HermesCron-bar';
    this._bar.hidden = true;
    this._barFill = document.createElement('div');
    this._barFill.className = 'jp-HermesCron-barFill';
    this._bar.appendChild(this._barFill);
    progress.append(this._bar, this._phase);

    this._scroller = document.createElement('div');
    this._scroller.className = 'jp-HermesCron-scroller jp-RenderedText';
    this._earlier = document.createElement('div');
    this._earlier.className = 'jp-HermesCron-dropped jp-HermesCron-earlier';
    this._earlier.dataset.role = 'earlier-output';
    this._earlier.hidden = true;
    this._more = document.createElement('div');
    this._more.className = 'jp-HermesCron-dropped jp-HermesCron-more';
    this._more.dataset.role = 'more-output';
    this._more.hidden = true;
    const more = document.createElement('button');
    more.className = 'jp-HermesCron-linkButton';
    more.dataset.action = 'load-more';
    more.textContent = 'Load more ↓';
    more.onclick = () => this._resume();
    this._more.append('… the output goes on · ', more);
    this._scroller.append(this._earlier, this._term.node, this._more);
    this._scroller.addEventListener('scroll', () => this._onScroll(), { passive: true });

    this._jump = document.createElement('button');
    this._jump.className = 'jp-HermesCron-jump jp-mod-styled';
    this._jump.textContent = 'Jump to latest ↓';
    this._jump.hidden = true;
    this._jump.onclick = () => {
      if (this._paused || this._lossless) {
        this._goLive();
      }
      this._follow = true;
      this._jump.hidden = true;
      this.node.dataset.follow = 'true';
      this._scrollToEnd();
    };

    const body = document.createElement('div');
    body.className = 'jp-HermesCron-outputBody';
    body.append(this._scroller, this._jump);
    this.node.append(header, this._meta, progress, body);
    if (this._at !== null) {
      void this._openAt(this._at);
    } else {
      this._connect();
    }
  }

  get status(): string {
    return this.node.dataset.status ?? '';
  }

  get following(): boolean {
    return this._follow;
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._stream?.close();
    this._stream = null;
    super.dispose();
  }

  /** *limit* bytes of the run's log from byte *offset* (`GET /runs/{id}/log`). */
  private async _readLog(offset: number, limit: number): Promise<Uint8Array> {
    const response = await ServerConnection.makeRequest(
      this.api.url(`runs/${encodeURIComponent(this.runId)}/log`, { offset, limit }),
      { method: 'GET' },
      this.api.settings
    );
    if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    }
    return new Uint8Array(await response.arrayBuffer());
  }

  /** Show the log from a little before byte *at* (its line then marked and scrolled to):
   * from the start of the line CONTEXT_LINES lines (at most CONTEXT_BYTES) before it,
   * "Load earlier output" above, and AT_PAGE lines on before "Load more". */
  private async _openAt(at: number): Promise<void> {
    const gen = ++this._gen;
    this._stream?.close();
    this._stream = null;
    this._at = at;
    this._follow = false;
    this.node.dataset.follow = 'false';
    let start = 0;
    if (at > 0) {
      const from = Math.max(0, at - CONTEXT_BYTES);
      try {
        start = lineStartBefore(await this._readLog(from, at - from), from, CONTEXT_LINES);
      } catch {
        start = 0; // read it all from the start, as without an offset
      }
      if (gen !== this._gen || this.isDisposed) {
        return;
      }
    }
    this._start = Math.min(start, at);
    this._offset = this._start;
    this._ended = false;
    delete this.node.dataset.ended;
    this._term.startAt(this._start);
    this._term.trimming = false;
    this._lossless = true;
    this._paused = false;
    this._pauseAt = AT_PAGE;
    this._more.hidden = true;
    this.node.dataset.start = String(this._start);
    this._renderEarlier();
    this._connect();
  }

  private _renderEarlier(): void {
    this._earlier.hidden = this._start <= 0;
    if (this._start <= 0) {
      return;
    }
    const load = document.createElement('button');
    load.className = 'jp-HermesCron-linkButton';
    load.dataset.action = 'load-earlier';
    load.textContent = 'Load earlier output ↑';
    load.onclick = () => void this._loadEarlier(load);
    this._earlier.replaceChildren(`… ${this._start.toLocaleString()} bytes before · `, load);
  }

  /** Put up to EARLIER_LINES lines (CONTEXT_BYTES) of the log above the first one shown,
   * keeping what is on screen where it is. */
  private async _loadEarlier(button: HTMLButtonElement): Promise<void> {
    const gen = this._gen;
    const to = this._start;
    const from = Math.max(0, to - CONTEXT_BYTES);
    button.disabled = true;
    let bytes: Uint8Array;
    try {
      bytes = await this._readLog(from, to - from);
    } catch (err: any) {
      button.disabled = false;
      this._conn.textContent = `cannot read the log (${err?.message ?? err})`;
      return;
    }
    if (gen !== this._gen || this.isDisposed || this._start !== to) {
      return;
    }
    const start = lineStartBefore(bytes, from, EARLIER_LINES);
    const text = new TextDecoder('utf-8').decode(bytes.subarray(start - from));
    // what is on screen stays where it is: the first line shown so far, as the anchor
    const s = this._scroller;
    const anchor = this._term.node.firstElementChild;
    const y = () => (anchor ? anchor.getBoundingClientRect().top : 0);
    const before = y();
    this._term.prepend(text, start);
    this._start = start;
    this.node.dataset.start = String(start);
    this._renderEarlier();
    s.scrollTop += y() - before;
  }

  /** Where to cut *text* so that it ends after its *lines*-th line (-1: all of it): not
   * before the line of a search hit still to show. */
  private _cutAt(text: string, lines: number, from?: number): number {
    let i = -1;
    for (let n = 0; n < Math.max(lines, 1); n++) {
      i = text.indexOf('\n', i + 1);
      if (i < 0) {
        return -1;
      }
    }
    const cut = i + 1;
    if (cut >= text.length) {
      return -1;
    }
    if (this._at !== null && (from ?? this._term.position) + new TextEncoder().encode(text.slice(0, cut)).length <= this._at) {
      return -1; // the hit's line comes later in this text: read on to it
    }
    return cut;
  }

  /** Stop reading (opened at an offset, AT_PAGE lines in): "Load more" reads on. */
  private _pause(): void {
    this._paused = true;
    this._stream?.close();
    this._stream = null;
    this._more.hidden = false;
    this.node.dataset.paused = 'true';
  }

  private _resume(): void {
    if (!this._paused) {
      return;
    }
    this._paused = false;
    this._more.hidden = true;
    this._pauseAt = this._term.total + AT_PAGE;
    delete this.node.dataset.paused;
    this._connect();
  }

  /** From reading page by page to following the run live, as when opened without an offset. */
  private _goLive(): void {
    this._pauseAt = null;
    this._lossless = false;
    this._term.trimming = true;
    if (this._paused) {
      this._paused = false;
      this._more.hidden = true;
      delete this.node.dataset.paused;
    }
    if (!this._ended) {
      this._stream?.close();
      this._connect();
    }
  }

  private _connect(): void {
    this._stream = new SSEStream({
      url: this.api.url(`runs/${encodeURIComponent(this.runId)}/stream`, {
        lossless: this._lossless ? 1 : undefined
      }),
      settings: this.api.settings,
      lastEventId: this._offset ? String(this._offset) : null,
      onOpen: () => {
        this._conn.textContent = '';
      },
      onMessage: msg => this._onMessage(msg.event, msg.data, msg.id),
      onError: (err, willRetry, status) => {
        if (this._ended) {
          return;
        }
        if (willRetry) {
          this._conn.textContent = 'reconnecting…';
        } else {
          this._conn.textContent =
            status === 404 ? 'this run no longer exists' : `stream failed (${status ?? err})`;
          this.node.dataset.status = 'error';
        }
      }
    });
  }

  private _onMessage(event: string, raw: string, id: string | null): void {
    let data: any;
    try {
      data = JSON.parse(raw);
    } catch {
      return;
    }
    switch (event) {
      case 'output': {
        if (this._paused) {
          return; // read on from here once asked ("Load more")
        }
        const end = id !== null ? Number(id) : NaN;
        if (!isNaN(end) && end <= this._offset) {
          return; // already shown (a resumed stream never repeats, but be safe)
        }
        const start = data.offset !== undefined && data.offset !== null ? Number(data.offset) : undefined;
        let text = String(data.text ?? '');
        const cut = this._pauseAt !== null ? this._cutAt(text, this._pauseAt - this._term.total, start) : -1;
        if (cut >= 0) {
          text = text.slice(0, cut); // a page read: the rest from here on "Load more"
        }
        this._term.write(text, String(data.stream ?? 'stdout'), start);
        if (cut >= 0) {
          this._offset = this._term.position;
        } else if (!isNaN(end)) {
          this._offset = end;
        }
        this.node.dataset.offset = String(this._offset);
        this._afterWrite();
        break;
      }
      case 'gap': {
        // the live view fell too far behind a flood of output and skipped ahead
        const kib = Math.max(1, Math.round(Number(data.bytes) / 1024));
        this._term.write(
          `[… ${kib.toLocaleString()} KiB skipped to keep up; the run's log has every byte]\n`,
          'system'
        );
        const to = Number(data.to);
        if (!isNaN(to)) {
          this._offset = to;
          this.node.dataset.offset = String(to);
        }
        this._afterWrite();
        break;
      }
      case 'status':
        this._setRun(data as IRun);
        break;
      case 'progress':
        this._setProgress(data.phase ?? null, data.progress ?? null);
        break;
      case 'end':
        this._end(data.status, data.exit_code ?? null, data.reason ?? null);
        break;
    }
  }

  private _setRun(run: IRun): void {
    this._run = run;
    if (!this._ended) {
      this._setStatus(run.status);
    }
    this._setProgress(run.phase, run.progress);
    this._renderMeta();
  }

  private _renderMeta(extra?: string): void {
    const run = this._run;
    if (!run) {
      return;
    }
    const after = (run.upstream ?? []).map(u => `${u.job ?? u.job_id} ${u.status.replace('_', ' ')}`);
    const bits = [
      `trigger ${run.trigger}`,
      after.length ? `after ${after.join(', ')}` : '',
      run.trigger === 'backfill' && run.logical_time ? `slot ${formatTime(run.logical_time)}` : '',
      run.attempt > 1 ? `attempt ${run.attempt}` : '',
      run.started_at ? `started ${formatTime(run.started_at)}` : `queued ${formatTime(run.queued_at)}`,
      run.finished_at ? `took ${duration(run.duration)}` : '',
      run.exit_code !== null && run.exit_code !== undefined ? `exit ${run.exit_code}` : '',
      run.host && run.pid ? `pid ${run.pid} on ${run.host}` : '',
      extra ?? '',
      this.hasClass('jp-mod-compact') ? run.id : ''
    ].filter(Boolean);
    this._meta.textContent = bits.join(' · ');
    const alert = alertBadge(run.alerts);
    this._alert.hidden = !alert;
    this._alert.textContent = alert?.label ?? '';
    this._alert.title = alert?.title ?? '';
    if (run.job_name) {
      this._title.textContent = `${run.job_name} · ${run.id}`;
    }
    this._renderRevision();
  }

  /** The job changed (its version): say again whether the run ran an older revision. */
  refreshRevision(): void {
    this._renderRevision();
  }

  /** The revision the run ran, its file's short sha256, and "older revision" when the
   * job has changed since. */
  private _renderRevision(): void {
    const run = this._run;
    const version = run?.job_version ?? null;
    const sha = run?.file_sha256 ?? null;
    if (!run || (version === null && !sha)) {
      this._rev.hidden = true;
      return;
    }
    let current = this.options.jobVersion?.() ?? null;
    if (current === null && version !== null && !this.options.jobVersion) {
      current = this._currentVersion;
      if (!this._versionAsked) {
        this._versionAsked = true;
        this.api
          .getJob(run.job_id)
          .then(job => {
            this._currentVersion = job.version;
            if (!this.isDisposed) {
              this._renderRevision();
            }
          })
          .catch(() => undefined);
      }
    }
    const parts: HTMLElement[] = [];
    if (version !== null) {
      const rev = document.createElement('span');
      rev.dataset.role = 'run-rev';
      rev.textContent = `rev ${version}`;
      rev.title = `the job's revision this run ran`;
      parts.push(rev);
    }
    if (sha) {
      const hash = document.createElement('span');
      hash.dataset.role = 'run-sha';
      hash.className = 'jp-HermesCron-mono';
      hash.textContent = `sha256 ${sha.slice(0, 8)}…`;
      hash.title = `sha256 of the file it ran: ${sha}`;
      parts.push(hash);
    }
    if (version !== null && current !== null && current > version) {
      const older = document.createElement('span');
      older.dataset.role = 'run-older';
      older.className = 'jp-HermesCron-olderRevision';
      older.textContent = 'older revision';
      older.title = `the job is at rev ${current} now`;
      parts.push(older);
    }
    const items: (HTMLElement | string)[] = [];
    parts.forEach((p, i) => items.push(...(i ? [' · ', p] : [p])));
    this._rev.replaceChildren(...items);
    this._rev.hidden = false;
    this.node.dataset.jobVersion = version !== null ? String(version) : '';
  }

  private _setStatus(status: RunStatus | string): void {
    const { label, tone } = badgeFor(status);
    this._badge.textContent = label;
    this._badge.dataset.tone = tone;
    this.node.dataset.status = status;
    this._cancel.hidden = !(status === 'running' || status === 'queued') || this._ended;
  }

  private _setProgress(phase: string | null, progress: number | null): void {
    this._phase.textContent = phase ?? '';
    if (progress === null || progress === undefined) {
      this._bar.hidden = true;
    } else {
      this._bar.hidden = false;
      const pct = Math.max(0, Math.min(1, progress)) * 100;
      this._barFill.style.width = `${pct}%`;
      this._bar.title = `${pct.toFixed(0)}%`;
    }
  }

  private _end(status: string, exitCode: number | null, reason: string | null): void {
    this._ended = true;
    this._stream?.close();
    this._stream = null;
    this._setStatus(status);
    this._cancel.hidden = true;
    this._conn.textContent = '';
    if (this._run) {
      this._run = { ...this._run, status: status as RunStatus, exit_code: exitCode, reason };
    }
    this._renderMeta(reason ? reason : undefined);
    if (status === 'succeeded') {
      this._setProgress(this._phase.textContent || null, this._bar.hidden ? null : 1);
    }
    this.node.dataset.ended = 'true';
    this._maybeReveal();
    // the alert rules are checked as the run ends: read them once it has
    this.api
      .getRun(this.runId)
      .then(run => {
        if (!this.isDisposed) {
          this._run = run;
          this._renderMeta(reason ? reason : undefined);
        }
      })
      .catch(() => undefined);
  }

  private _afterWrite(): void {
    if (this._follow) {
      this._scrollToEnd();
    }
    this._maybeReveal();
    if (this._pauseAt !== null && !this._paused && this._at === null && this._term.total >= this._pauseAt) {
      this._pause();
    }
  }

  /** Scroll to the line holding byte *offset* of the log and mark it (now, or once it
   * has arrived). */
  revealOffset(offset: number): void {
    // shown (or coming next): scroll to it; else read the log again from a little before it
    const shown = offset >= this._start && !this._term.dropped && this._term.lineAt(offset) !== null;
    if (shown && (offset < this._offset || (!this._paused && !this._ended))) {
      this._at = offset;
      this._follow = false;
      this._maybeReveal();
      return;
    }
    void this._openAt(offset);
  }

  private _maybeReveal(): void {
    const at = this._at;
    if (at === null) {
      return;
    }
    // the line is whole once the next one has started (or the run's output ended)
    if (!this._ended && !(this._offset > at && this._term.lineAt(this._offset) !== this._term.lineAt(at))) {
      return;
    }
    const line = this._term.lineAt(at);
    if (!line) {
      return;
    }
    this._at = null;
    for (const old of Array.from(this._term.node.querySelectorAll('.jp-mod-target'))) {
      old.classList.remove('jp-mod-target');
    }
    line.classList.add('jp-mod-target');
    line.dataset.role = 'target-line';
    this.node.dataset.target = String(at);
    this._follow = false;
    this._jump.hidden = false;
    this.node.dataset.follow = 'false';
    const s = this._scroller;
    const delta = line.getBoundingClientRect().top - s.getBoundingClientRect().top;
    s.scrollTop += delta - s.clientHeight / 3;
  }

  private _scrollToEnd(): void {
    this._scroller.scrollTop = this._scroller.scrollHeight;
  }

  private _onScroll(): void {
    const s = this._scroller;
    const atEnd = s.scrollTop + s.clientHeight >= s.scrollHeight - 4;
    this._follow = atEnd;
    this._jump.hidden = atEnd;
    this.node.dataset.follow = atEnd ? 'true' : 'false';
  }

  protected onAfterShow(): void {
    if (this._follow) {
      this._scrollToEnd();
    }
  }
}
