/**
 * Shared client state: the status and one live `/events` connection.
 *
 * Nothing here polls the jobs: every change reaches the panel through the
 * `/events` feed (job.*, run.*, ticker.*), which is resumed by sequence number
 * after a dropped connection. The one timer is the ticker-liveness check:
 * a ticker that dies without a word (kill -9, a closed laptop) emits no event,
 * so `/status` is read again when the freshest heartbeat would go stale.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { CronAPI, IEvent, IStatus } from './api';
import { SSEStream } from './sse';

export class CronModel {
  readonly api = new CronAPI();
  private _status: IStatus | null = null;
  private _statusError: string | null = null;
  private _events: SSEStream | null = null;
  private _statusTimer: number | null = null;
  private _statusDebounce: number | null = null;
  private _connected = false;
  private _opened = 0;
  private _statusChanged = new Signal<this, IStatus | null>(this);
  private _event = new Signal<this, IEvent>(this);
  private _connection = new Signal<this, { connected: boolean; first: boolean }>(this);
  private _disposed = false;

  /** `/status` changed (or failed: then `status` is null and `statusError` says why). */
  get statusChanged(): ISignal<this, IStatus | null> {
    return this._statusChanged;
  }

  /** Every event of the `/events` feed. */
  get event(): ISignal<this, IEvent> {
    return this._event;
  }

  /** The `/events` connection opened (first or again) or dropped. */
  get connection(): ISignal<this, { connected: boolean; first: boolean }> {
    return this._connection;
  }

  get status(): IStatus | null {
    return this._status;
  }

  get statusError(): string | null {
    return this._statusError;
  }

  get connected(): boolean {
    return this._connected;
  }

  /** Open the feed (idempotent). */
  start(): void {
    if (this._events || this._disposed) {
      return;
    }
    this._events = new SSEStream({
      url: this.api.url('events'),
      settings: this.api.settings,
      fatal: status => status === 401 || status === 403 || status === 404,
      onOpen: () => {
        this._connected = true;
        this._opened++;
        this._connection.emit({ connected: true, first: this._opened === 1 });
        void this.refreshStatus();
      },
      onMessage: msg => {
        let event: IEvent;
        try {
          event = JSON.parse(msg.data);
        } catch {
          return;
        }
        if (event.type.startsWith('ticker.') || event.type === 'job.created' || event.type === 'job.deleted' ||
            event.type === 'job.paused' || event.type === 'job.resumed' || event.type === 'job.blocked') {
          this.refreshStatusSoon();
        }
        this._event.emit(event);
      },
      onError: (err, willRetry, status) => {
        const was = this._connected;
        this._connected = false;
        if (was || !willRetry) {
          this._connection.emit({ connected: false, first: false });
        }
        if (!willRetry) {
          this._statusError = `live updates unavailable (HTTP ${status ?? '?'}): is the hermes_cron_ext server extension enabled?`;
          this._statusChanged.emit(this._status);
        }
      }
    });
  }

  dispose(): void {
    this._disposed = true;
    this._events?.close();
    if (this._statusTimer !== null) {
      window.clearTimeout(this._statusTimer);
    }
    if (this._statusDebounce !== null) {
      window.clearTimeout(this._statusDebounce);
    }
    Signal.clearData(this);
  }

  refreshStatusSoon(): void {
    if (this._statusDebounce !== null) {
      return;
    }
    this._statusDebounce = window.setTimeout(() => {
      this._statusDebounce = null;
      void this.refreshStatus();
    }, 250);
  }

  async refreshStatus(): Promise<IStatus | null> {
    if (this._statusTimer !== null) {
      window.clearTimeout(this._statusTimer);
      this._statusTimer = null;
    }
    try {
      this._status = await this.api.status();
      this._statusError = null;
    } catch (err: any) {
      this._status = null;
      this._statusError = `cannot read the scheduler status: ${err?.message ?? err}`;
    }
    this._statusChanged.emit(this._status);
    this._scheduleLivenessCheck();
    return this._status;
  }

  private _scheduleLivenessCheck(): void {
    if (this._disposed) {
      return;
    }
    let next = -Infinity;
    const now = Date.now();
    for (const t of this._status?.tickers ?? []) {
      if (!t.alive) {
        continue;
      }
      const stale = Date.parse(t.heartbeat_at) + (t.kind === 'tick' ? 150 : 15) * 1000;
      next = Math.max(next, stale); // the last one to go quiet
    }
    // with no ticker alive, a ticker.started event is what changes things
    const delay = Number.isFinite(next) ? Math.max(2000, next - now + 1000) : 30000;
    this._statusTimer = window.setTimeout(() => void this.refreshStatus(), delay);
  }
}
