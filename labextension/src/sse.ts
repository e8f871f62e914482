/**
 * A Server-Sent-Events reader over fetch + ReadableStream.
 *
 * Unlike EventSource it goes through ServerConnection (so token auth in a header
 * works as well as the cookie), and it reconnects on its own with
 * `Last-Event-ID` set to the last id seen, so a dropped connection loses and
 * repeats nothing: for a run stream the id is the byte offset of the log, for
 * `/events` the event sequence number.
 */
import { ServerConnection } from '@jupyterlab/services';

export interface ISSEMessage {
  event: string;
  data: string;
  id: string | null;
}

export interface ISSEOptions {
  url: string;
  settings: ServerConnection.ISettings;
  /** Resume after this id (sent as `Last-Event-ID`). */
  lastEventId?: string | null;
  onMessage: (msg: ISSEMessage) => void;
  /** Called on every (re)connection once the response headers are in. */
  onOpen?: () => void;
  /** Called when a connection drops; `willRetry` says whether it will try again. */
  onError?: (error: unknown, willRetry: boolean, status: number | null) => void;
  /** Give up on these HTTP statuses (e.g. 404 for a deleted run). Default: any 4xx. */
  fatal?: (status: number) => boolean;
}

export class SSEStream {
  private _controller: AbortController | null = null;
  private _closed = false;
  private _attempt = 0;
  private _timer: number | null = null;
  lastEventId: string | null;
  connected = false;

  constructor(private readonly options: ISSEOptions) {
    this.lastEventId = options.lastEventId ?? null;
    void this._connect();
  }

  get closed(): boolean {
    return this._closed;
  }

  /** Stop for good (the stream ended or nobody is watching). */
  close(): void {
    this._closed = true;
    this.connected = false;
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
    this._controller?.abort();
    this._controller = null;
  }

  /** Drop the current connection now and reconnect (resuming after lastEventId). */
  reconnect(): void {
    if (this._closed) {
      return;
    }
    this._controller?.abort();
    this._attempt = 0;
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
    void this._connect();
  }

  private _retry(error: unknown, status: number | null): void {
    this.connected = false;
    if (this._closed) {
      return;
    }
    this.options.onError?.(error, true, status);
    const delay = Math.min(5000, 250 * 2 ** this._attempt++);
    this._timer = window.setTimeout(() => {
      this._timer = null;
      void this._connect();
    }, delay);
  }

  private async _connect(): Promise<void> {
    if (this._closed) {
      return;
    }
    const controller = new AbortController();
    this._controller = controller;
    const headers: { [key: string]: string } = { Accept: 'text/event-stream' };
    if (this.lastEventId !== null) {
      headers['Last-Event-ID'] = this.lastEventId;
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        this.options.url,
        { method: 'GET', headers, signal: controller.signal, cache: 'no-store' },
        this.options.settings
      );
    } catch (err) {
      if (controller.signal.aborted) {
        return;
      }
      this._retry(err, null);
      return;
    }
    if (!response.ok || !response.body) {
      const fatal = this.options.fatal ?? ((s: number) => s >= 400 && s < 500 && s !== 408);
      if (fatal(response.status)) {
        this._closed = true;
        this.options.onError?.(new Error(`HTTP ${response.status}`), false, response.status);
        return;
      }
      this._retry(new Error(`HTTP ${response.status}`), response.status);
      return;
    }
    this.connected = true;
    this._attempt = 0;
    this.options.onOpen?.();
    const reader = response.body.getReader();
    const decoder = new TextDecoder('utf-8');
    let buffer = '';
    let event = '';
    let data: string[] = [];
    let id: string | null = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        buffer += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          // a lone \r at the very end might be the first half of \r\n: wait for more
          if (buffer[nl] === '\r' && nl === buffer.length - 1) {
            break;
          }
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? nl + 2 : nl + 1);
          if (line === '') {
            if (data.length) {
              if (id !== null) {
                this.lastEventId = id;
              }
              const msg = { event: event || 'message', data: data.join('\n'), id };
              try {
                this.options.onMessage(msg);
              } catch (err) {
                console.error('hermes-cron: event handler failed', err);
              }
              if (this._closed) {
                controller.abort();
                return;
              }
            }
            event = '';
            data = [];
            id = null;
            continue;
          }
          if (line.startsWith(':')) {
            continue; // comment / keep-alive
          }
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) {
            val = val.slice(1);
          }
          if (field === 'event') {
            event = val;
          } else if (field === 'data') {
            data.push(val);
          } else if (field === 'id') {
            id = val;
          }
        }
      }
    } catch (err) {
      if (controller.signal.aborted) {
        return;
      }
      this._retry(err, null);
      return;
    }
    // the server closed the stream without us asking: reconnect and resume
    this._retry(new Error('stream closed by the server'), null);
  }
}
